"""The monitor's side of a chaos run: the truth it is judged against, and the judgement.

A chaos run (`casewatch bench chaos`, docs/chaos.md) replays a trace — the truth
about what changed at USCIS — to workers through faults. These plain functions
make such a trace and count, from what the workers wrote, the status changes
they got wrong: false ones (an event that is not a true change, or one twice)
and lost ones (a true change with no event). They also measure recovery from
the sandbox's request log: from a fault's end to the next successful read.
"""

from __future__ import annotations

import bisect
import random
import statistics
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from casewatch.core.statuses import classify

# One path through USCIS, every status on it different: where a case stands on it
# says which changes it went through.
PATH = (
    "Case Was Received",
    "Fingerprint Fee Was Received",
    "Biometrics Appointment Was Scheduled",
    "Case Was Updated To Show Fingerprints Were Taken",
    "Request for Additional Evidence Was Sent",
    "Response To USCIS' Request For Evidence Was Received",
    "Case is Ready to Be Scheduled for An Interview",
    "Interview Was Scheduled",
    "Interview Was Completed And My Case Must Be Reviewed",
    "Case Was Approved",
    "New Card Is Being Produced",
    "Card Was Mailed To Me",
    "Card Was Picked Up By The United States Postal Service",
    "Card Was Delivered To Me By The Post Office",
)
# A Monday in April: no daylight-saving change in the window (USCIS dates are Eastern).
WINDOW_START = datetime(2025, 4, 7, 12, 0, tzinfo=UTC)
# How many changes a case goes through in the window, and how often: most cases sit still.
CHANGES_PER_CASE = {0: 0.55, 1: 0.35, 2: 0.10}


@dataclass(frozen=True)
class Trace:
    """Cases moving along PATH: the CSV the sandbox replays, and each case's steps."""

    steps: dict[str, list[tuple[datetime, str]]]
    start: datetime
    end: datetime  # after the last change

    @property
    def receipts(self) -> list[str]:
        return sorted(self.steps)

    def csv(self) -> str:
        lines = ["receipt_number,form_type,at,status_en"]
        for receipt in self.receipts:
            for at, title in self.steps[receipt]:
                lines.append(f'{receipt},I-485,{at.strftime("%Y-%m-%dT%H:%M:%SZ")},"{title}"')
        return "\n".join(lines) + "\n"

    def statuses(self, receipt: str) -> list[str]:
        return [classify(title).status for _, title in self.steps[receipt]]

    def changed_at(self, receipt: str, status: str) -> datetime:
        """When USCIS moved the case to `status` (the date its answers carry)."""
        return next(at for at, title in self.steps[receipt] if classify(title).status == status)

    def changes(self) -> int:
        return sum(len(rows) - 1 for rows in self.steps.values())


def make_trace(cases: int, *, days: float, seed: int = 7) -> Trace:
    """`cases` I-485s at some early step of PATH, some moving on once or twice in `days`."""
    rng = random.Random(seed)
    counts, weights = zip(*CHANGES_PER_CASE.items(), strict=True)
    end = WINDOW_START + timedelta(days=days)
    steps: dict[str, list[tuple[datetime, str]]] = {}
    for number in range(1, cases + 1):
        receipt = f"EAC259{number:07d}"
        first = rng.randrange(0, 4)
        entered = WINDOW_START - timedelta(days=rng.randint(40, 200))
        moves = rng.choices(counts, weights)[0]
        moments = sorted(
            WINDOW_START + timedelta(days=rng.uniform(0.05, 0.85) * days) for _ in range(moves)
        )
        rows = [(entered, PATH[first])]
        rows += [(m.replace(microsecond=0), PATH[first + i + 1]) for i, m in enumerate(moments)]
        steps[receipt] = rows
    return Trace(steps, WINDOW_START, end)


# --- what the workers wrote, as plain rows ---------------------------------------------


@dataclass(frozen=True)
class Seen:
    """One observation: what asking USCIS about a case gave."""

    receipt: str
    outcome: str
    status: str
    pk: int


@dataclass(frozen=True)
class Event:
    receipt: str
    status: str
    previous_status: str
    initial: bool
    observation: int | None
    pk: int = 0


@dataclass(frozen=True)
class Verdict:
    """Status changes the workers got wrong, case by case, with examples to look at."""

    false_changes: int
    lost_changes: int
    true_changes: int
    examples: list[str]


def judge_changes(trace: Trace, observations: Sequence[Seen], events: Sequence[Event]) -> Verdict:
    """Each case's events must be exactly its true changes from its first successful read on.

    The first read gives the initial event; every later step of the trace is one
    event, once, in order. An event the trace does not hold (or holds fewer times),
    one made from an answer that was not a status, or one out of order is false;
    a trace step with no event is lost — also when the case was never read, or not
    read since it changed.
    """
    by_pk = {seen.pk: seen for seen in observations}
    found: dict[str, list[str]] = {}
    for seen in observations:
        if seen.outcome == "found":
            found.setdefault(seen.receipt, []).append(seen.status)
    recorded: dict[str, list[Event]] = {}
    for event in events:
        recorded.setdefault(event.receipt, []).append(event)
    false = lost = 0
    examples: list[str] = []
    for receipt in trace.receipts:
        path = trace.statuses(receipt)
        shown = found.get(receipt, [])
        first = path.index(shown[0]) if shown and shown[0] in path else 0
        expected = [(path[first], "", True)]
        expected += [(path[i], path[i - 1], False) for i in range(first + 1, len(path))]
        actual = [(e.status, e.previous_status, e.initial) for e in recorded.get(receipt, [])]
        if not shown:
            expected = expected[1:]  # never read: no initial event was due, every change is lost
        extra = Counter(actual) - Counter(expected)
        missing = Counter(expected) - Counter(actual)
        wrong_order = not extra and not missing and actual != expected
        not_a_status = [
            e
            for e in recorded.get(receipt, [])
            if e.observation is None
            or by_pk.get(e.observation) is None
            or by_pk[e.observation].outcome != "found"
        ]
        case_false = sum(extra.values()) + int(wrong_order) + len(not_a_status)
        false += case_false
        lost += sum(missing.values())
        if (case_false or missing) and len(examples) < 5:
            examples.append(f"{receipt}: expected {expected}, recorded {actual}")
    for receipt in set(recorded) - set(trace.steps):
        false += len(recorded[receipt])
    return Verdict(false, lost, trace.changes(), examples)


def caught_up(trace: Trace, last_found: dict[str, str]) -> int:
    """How many cases have been read at their final status (the run may end when all have)."""
    return sum(
        1 for receipt in trace.receipts if last_found.get(receipt) == trace.statuses(receipt)[-1]
    )


# --- recovery from USCIS faults, from the sandbox's request log -------------------------


@dataclass(frozen=True)
class Recovery:
    """A disruption and its end: `kind`, when it ended, when work was done again (epoch s)."""

    kind: str
    ended_at: float
    recovered_at: float

    @property
    def seconds(self) -> float:
        return max(0.0, self.recovered_at - self.ended_at)


def uscis_recoveries(lookups: Iterable[dict[str, Any]]) -> tuple[Counter[str], list[Recovery]]:
    """Faults injected, by kind, and a recovery for each: from the faulted answer to the
    answer to the next lookup asked after it that got a status (200, no fault), whichever
    case and worker it was: how long USCIS stayed unread, back-offs and all."""
    injected: Counter[str] = Counter()
    faults: list[tuple[str, float]] = []
    good: list[tuple[float, float]] = []  # (asked, answered), in the order asked
    for lookup in sorted(lookups, key=lambda entry: float(entry["at"])):
        if lookup.get("fault"):
            injected[str(lookup["fault"])] += 1
            faults.append((f"uscis_{lookup['fault']}", float(lookup["done"])))
        elif lookup["status"] == 200:
            good.append((float(lookup["at"]), float(lookup["done"])))
    asked = [at for at, _ in good]
    recoveries = []
    for kind, ended in faults:
        index = bisect.bisect_left(asked, ended)
        if index < len(good):
            recoveries.append(Recovery(kind, ended, good[index][1]))
    return injected, recoveries


def summary(recoveries: Sequence[Recovery]) -> dict[str, Any]:
    """Time to recover, overall and by kind of disruption: count, median and max seconds."""

    def figures(items: Sequence[Recovery]) -> dict[str, Any]:
        seconds = [r.seconds for r in items]
        return {
            "count": len(seconds),
            "median": round(statistics.median(seconds), 3) if seconds else None,
            "max": round(max(seconds), 3) if seconds else None,
        }

    by_kind: dict[str, list[Recovery]] = {}
    for recovery in recoveries:
        by_kind.setdefault(recovery.kind, []).append(recovery)
    return {**figures(recoveries), "by_kind": {k: figures(v) for k, v in sorted(by_kind.items())}}
