"""The cases the sandbox knows: staging receipts, synthetic cases and replayed traces.

A synthetic case is fully determined by its receipt number (it seeds the
form, the path and every dwell time), so any two sandboxes agree on what a
receipt shows at a given moment, and the case moves along as time passes.
"""

from __future__ import annotations

import csv
import hashlib
import io
import random
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from casewatch.core.receipts import OFFICES, RECEIPT_PATTERN, parse_receipt


def _expand(spec: str) -> list[str]:
    numbers: list[str] = []
    for part in spec.split():
        head, _, tail = part.partition("-")
        if not tail:
            numbers.append(head)
            continue
        start, end = int(head[-2:]), int(tail)
        numbers += [f"{head[:-2]}{n:02d}" for n in range(start, end + 1)]
    return numbers


# Staging receipts of the real USCIS sandbox (uscis-api.md).
STAGING_WITH_HISTORY = frozenset(
    _expand(
        "EAC9999103403-05 EAC9999103410 EAC9999103411 EAC9999103416 EAC9999103419 "
        "LIN9999106498 LIN9999106499 LIN9999106504-06 SRC9999102777-87 SRC9999132710 "
        "SRC9999132719"
    )
)
STAGING_WITHOUT_HISTORY = frozenset(
    _expand(
        "EAC9999103400 EAC9999103402 EAC9999103406-09 EAC9999103412-15 EAC9999103420 "
        "EAC9999103421 EAC9999103424-26 EAC9999103428 EAC9999103429 EAC9999103431 "
        "EAC9999103432 LIN9999106501 LIN9999106507 SRC9999132694 SRC9999132695 "
        "SRC9999132706 SRC9999132707"
    )
)
STAGING_RECEIPTS = STAGING_WITH_HISTORY | STAGING_WITHOUT_HISTORY
# The moment staging cases are frozen at: the official example's modifiedDate.
STAGING_AS_OF = datetime(2023, 9, 5, 18, 28, 46, tzinfo=UTC)

# Receipts whose last four digits are these answer with a documented error,
# so that clients can be tried against every answer (see docs/sandbox.md).
ERROR_SERIALS: Mapping[str, int] = {"0404": 404, "0422": 422, "0429": 429, "0503": 503}
_EPOCH = datetime(2026, 6, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Step:
    """One status a case entered, and when."""

    title: str
    at: datetime
    description_en: str | None = None


@dataclass(frozen=True)
class SandboxCase:
    receipt_number: str
    form_type: str
    steps: tuple[Step, ...]
    history_style: str = "list"  # "list", "empty", "null" or "absent"
    location: str = "National Benefits Center"

    def steps_at(self, moment: datetime) -> tuple[Step, ...]:
        """The steps USCIS would show at `moment`; a case always shows its first step."""
        shown = tuple(step for step in self.steps if step.at <= moment)
        return shown or self.steps[:1]


@dataclass(frozen=True)
class Refusal:
    """An error the sandbox gives for a receipt instead of a case."""

    status: int
    message: str


NOT_FOUND = Refusal(
    404,
    "Case Status Online does not recognize the receipt number entered. Please check that "
    "your receipt number is correct. If you have further questions, please contact the "
    "USCIS Contact Center.",
)
BAD_FORMAT = Refusal(422, "The receipt number entered is not formatted correctly.")


@dataclass(frozen=True)
class PathStep:
    title: str
    min_days: int
    max_days: int


@dataclass(frozen=True)
class CasePath:
    name: str
    forms: tuple[str, ...]
    weight: float
    steps: tuple[PathStep, ...]


@dataclass(frozen=True)
class PathBook:
    forms_by_prefix: Mapping[str, tuple[str, ...]]
    paths: tuple[CasePath, ...]

    def paths_for(self, form_type: str) -> list[CasePath]:
        chosen = [p for p in self.paths if form_type in p.forms]
        return chosen or [p for p in self.paths if "*" in p.forms]


@cache
def path_book() -> PathBook:
    source = resources.files("casewatch.uscis.sandbox").joinpath("data", "paths.toml")
    data: dict[str, Any] = tomllib.loads(source.read_text(encoding="utf-8"))
    paths = tuple(
        CasePath(
            name=p["name"],
            forms=tuple(p["forms"]),
            weight=float(p["weight"]),
            steps=tuple(PathStep(s["title"], s["days"][0], s["days"][1]) for s in p["steps"]),
        )
        for p in data["path"]
    )
    forms = {prefix: tuple(names) for prefix, names in data["forms_by_prefix"].items()}
    return PathBook(forms_by_prefix=forms, paths=paths)


def seeded_random(*parts: str) -> random.Random:
    digest = hashlib.sha256("|".join(parts).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def _posting_time(day: date, rng: random.Random) -> datetime:
    """USCIS posts on weekdays, in US business hours (roughly 10:00–23:00 UTC)."""
    while day.weekday() >= 5:
        day += timedelta(days=1)
    seconds = rng.randint(10 * 3600, 23 * 3600)
    return datetime.combine(day, time(tzinfo=UTC)) + timedelta(seconds=seconds)


def synthetic_case(
    receipt_number: str,
    *,
    anchor: datetime | None = None,
    history_style: str | None = None,
    locations: Sequence[str] = ("National Benefits Center",),
) -> SandboxCase:
    """The case a receipt number stands for, deterministically."""
    rng = seeded_random("case", receipt_number)
    book = path_book()
    prefix = receipt_number[:3]
    form_type = rng.choice(book.forms_by_prefix.get(prefix) or book.forms_by_prefix["*"])
    candidates = book.paths_for(form_type)
    path = rng.choices(candidates, weights=[p.weight for p in candidates])[0]
    if anchor is None:
        received = parse_receipt(receipt_number).approx_received_on
        if received is not None and date(2010, 1, 1) <= received <= date(2040, 1, 1):
            start = received
        else:
            start = (_EPOCH + timedelta(days=rng.randint(-540, 120))).date()
    else:
        start = anchor.date()
    steps: list[Step] = []
    day = start
    for path_step in path.steps:
        moment = _posting_time(day, rng)
        if steps and moment <= steps[-1].at:
            moment = steps[-1].at + timedelta(minutes=rng.randint(5, 90))
        steps.append(Step(path_step.title, moment))
        day = moment.date() + timedelta(days=rng.randint(path_step.min_days, path_step.max_days))
    style = history_style or rng.choice(("list", "list", "list", "empty", "null", "absent"))
    return SandboxCase(
        receipt_number=receipt_number,
        form_type=form_type,
        steps=tuple(steps),
        history_style=style,
        location=rng.choice(list(locations)),
    )


_PINNED: Mapping[str, SandboxCase] = {
    # The official documentation's example answer.
    "EAC9999103403": SandboxCase(
        receipt_number="EAC9999103403",
        form_type="I-130",
        steps=(
            Step("Case Was Received", datetime(2023, 2, 14, 15, 12, 5, tzinfo=UTC)),
            Step("Case Was Approved", datetime(2023, 9, 5, 18, 28, 46, tzinfo=UTC)),
        ),
    ),
}


class SyntheticWorld:
    """Every well-formed receipt is a case; a few serials are documented errors."""

    trace_window: tuple[datetime, datetime] | None = None

    def __init__(self, locations: Sequence[str] = ("National Benefits Center",)) -> None:
        self.locations = tuple(locations)

    def case(self, receipt_number: str, moment: datetime) -> tuple[SandboxCase, datetime] | Refusal:
        """The case and the moment it is shown at (staging cases stand still)."""
        if not RECEIPT_PATTERN.match(receipt_number) or receipt_number[:3] not in OFFICES:
            return BAD_FORMAT
        if receipt_number in STAGING_RECEIPTS:
            return self._staging(receipt_number), STAGING_AS_OF
        refusal = ERROR_SERIALS.get(receipt_number[-4:])
        if refusal == 404:
            return NOT_FOUND
        if refusal is not None:
            return Refusal(refusal, "")
        return synthetic_case(receipt_number, locations=self.locations), moment

    def _staging(self, receipt_number: str) -> SandboxCase:
        pinned = _PINNED.get(receipt_number)
        if pinned is not None:
            return pinned
        rng = seeded_random("staging", receipt_number)
        anchor = STAGING_AS_OF - timedelta(days=rng.randint(60, 900))
        style = "list" if receipt_number in STAGING_WITH_HISTORY else rng.choice(("empty", "null"))
        return synthetic_case(
            receipt_number, anchor=anchor, history_style=style, locations=self.locations
        )


class TraceError(ValueError):
    """A trace file breaks trace-format.md; the message names the line."""


class TraceWorld:
    """Replays a trace: each receipt shows its latest row at the sandbox's moment."""

    def __init__(self, cases: Mapping[str, SandboxCase]) -> None:
        self.cases = dict(cases)
        changes = [s.at for c in self.cases.values() for s in c.steps[1:]]
        firsts = [c.steps[0].at for c in self.cases.values()]
        start = min(changes) if changes else max(firsts, default=datetime.now(UTC))
        end = max(changes or firsts, default=start) + timedelta(days=1)
        self.trace_window: tuple[datetime, datetime] | None = (start, end)

    def case(self, receipt_number: str, moment: datetime) -> tuple[SandboxCase, datetime] | Refusal:
        if not RECEIPT_PATTERN.match(receipt_number):
            return BAD_FORMAT
        found = self.cases.get(receipt_number)
        if found is None:
            return NOT_FOUND
        return found, moment

    @classmethod
    def from_csv(cls, text: str) -> TraceWorld:
        return cls(read_trace(text))

    @classmethod
    def from_file(cls, path: Path) -> TraceWorld:
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise TraceError(f"cannot read trace {path}: {exc.strerror}") from exc
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise TraceError(f"trace {path} is not UTF-8 (byte {exc.start})") from exc
        return cls.from_csv(text)


def _parse_at(value: str, line: int) -> datetime:
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise TraceError(f"line {line}: 'at' is not an ISO 8601 time: {value!r}") from exc
    if moment.tzinfo is None:
        raise TraceError(f"line {line}: 'at' has no time zone: {value!r}")
    return moment.astimezone(UTC)


def read_trace(text: str) -> dict[str, SandboxCase]:
    """Parse a trace CSV (trace-format.md) into cases, checking every row."""
    reader = csv.DictReader(io.StringIO(text))
    needed = {"receipt_number", "form_type", "at", "status_en"}
    fields = {f.strip() for f in reader.fieldnames or []}
    if not needed <= fields:
        missing = ", ".join(sorted(needed - fields))
        raise TraceError(f"trace header lacks {missing}")
    rows: dict[str, list[Step]] = {}
    forms: dict[str, str] = {}
    for row in reader:
        line = reader.line_num
        row = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
        receipt = row["receipt_number"].upper()
        if not RECEIPT_PATTERN.match(receipt):
            raise TraceError(f"line {line}: invalid receipt number {row['receipt_number']!r}")
        if not row["status_en"]:
            raise TraceError(f"line {line}: empty status_en")
        step = Step(row["status_en"], _parse_at(row["at"], line), row.get("description_en") or None)
        steps = rows.setdefault(receipt, [])
        if steps and step.at < steps[-1].at:
            raise TraceError(f"line {line}: rows of {receipt} are not in time order")
        steps.append(step)
        forms.setdefault(receipt, row["form_type"])
    return {
        receipt: SandboxCase(
            receipt_number=receipt,
            form_type=forms[receipt],
            steps=tuple(steps),
        )
        for receipt, steps in rows.items()
    }
