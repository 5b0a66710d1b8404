"""The trace generator makes traces the sandbox accepts and that look like USCIS at work."""

from __future__ import annotations

import csv
import io
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from casewatch.core.receipts import parse_receipt
from casewatch.core.statuses import classify, default_catalog
from casewatch.uscis.sandbox.world import SandboxCase, TraceWorld, read_trace
from tests import tracegen
from tests.tracegen import (
    DEFAULT_START,
    ROUTES,
    SEGMENTS,
    STAGES,
    generate_trace,
    parse_step,
    write_trace,
)

EASTERN = ZoneInfo("America/New_York")
DATA = Path(__file__).parent / "data"
START = datetime(2025, 3, 3, 5, 0, tzinfo=UTC)
DAYS = 60.0


@pytest.fixture(scope="module")
def text() -> str:
    return generate_trace(500, DAYS, seed=11, start=START)


@pytest.fixture(scope="module")
def cases(text: str) -> dict[str, SandboxCase]:
    return read_trace(text)


def _changes(cases: dict[str, SandboxCase]) -> list[tuple[str, datetime]]:
    return [(step.title, step.at) for case in cases.values() for step in case.steps[1:]]


def _reference_titles() -> set[str]:
    lines = (DATA / "reference_titles.txt").read_text(encoding="utf-8").splitlines()
    return {line for line in lines if line and not line.startswith("#")}


def test_trace_has_the_documented_header_and_parses(
    text: str, cases: dict[str, SandboxCase]
) -> None:
    assert text.splitlines()[0] == "receipt_number,form_type,at,status_en"
    assert len(cases) == 500  # receipts are unique: no two cases merged into one
    world = TraceWorld.from_csv(text)
    assert world.trace_window is not None
    assert START < world.trace_window[0] < START + timedelta(days=DAYS)


def test_every_title_is_a_known_status(cases: dict[str, SandboxCase]) -> None:
    titles = {step.title for case in cases.values() for step in case.steps}
    unknown = sorted(t for t in titles if classify(t).is_unknown)
    assert unknown == []


def test_the_tables_use_real_uscis_wordings_only() -> None:
    """Each title is one USCIS printed (reference data) or the catalog's own title."""
    allowed = _reference_titles() | {s.title_en for s in default_catalog().statuses.values()}
    titles = {title for stage in STAGES.values() for title in stage.titles}
    assert sorted(titles - allowed) == []
    assert all(not classify(title).is_unknown for title in titles)


def test_route_tables_only_name_known_stages_and_segments() -> None:
    assert not set(SEGMENTS) & set(STAGES)  # a name means one thing
    tokens = [t for routes in ROUTES.values() for _, route in routes for t in route]
    tokens += [t for segment in SEGMENTS.values() for t in segment]
    for token in tokens:
        step = parse_step(token)
        assert set(step.options) <= set(STAGES) | set(SEGMENTS) | {"-"}, token
        assert 0 < step.chance <= 1 and not (step.repeat and step.chance >= 1), token


def test_rows_are_in_time_order_and_changes_fall_inside_the_window(text: str) -> None:
    rows = list(csv.DictReader(io.StringIO(text)))
    end = START + timedelta(days=DAYS)
    seen: dict[str, datetime] = {}
    for row in rows:
        at = datetime.fromisoformat(row["at"].replace("Z", "+00:00"))
        assert at.tzinfo is not None
        previous = seen.get(row["receipt_number"])
        if previous is None:
            assert at <= START  # the status the case shows when the window opens
        else:
            assert previous < at
            assert START < at <= end
        seen[row["receipt_number"]] = at


def test_rows_of_a_receipt_are_contiguous(text: str) -> None:
    receipts = [row["receipt_number"] for row in csv.DictReader(io.StringIO(text))]
    blocks = [r for i, r in enumerate(receipts) if i == 0 or r != receipts[i - 1]]
    assert len(blocks) == len(set(blocks))


def test_same_seed_same_trace_other_seed_other_trace() -> None:
    first = generate_trace(200, 30, seed=5, start=START)
    assert generate_trace(200, 30, seed=5, start=START) == first
    assert generate_trace(200, 30, seed=6, start=START) != first


def test_a_mix_of_urgencies_including_actions(cases: dict[str, SandboxCase]) -> None:
    changes = [classify(title) for title, _ in _changes(cases)]
    urgencies = Counter(c.urgency for c in changes)
    assert urgencies["progress"] > urgencies["action"] > urgencies["info"] > 0
    categories = Counter(c.category for c in changes if c.urgency == "action")
    assert categories["evidence_requested"] > 0
    assert categories["interview_scheduled"] > 0
    assert len(categories) >= 4


def test_many_cases_never_change_and_many_do(cases: dict[str, SandboxCase]) -> None:
    still = sum(1 for case in cases.values() if len(case.steps) == 1)
    assert 0.3 < still / len(cases) < 0.85
    busiest = max(len(case.steps) - 1 for case in cases.values())
    assert busiest >= 4  # a case can run through several statuses in two months


def test_changes_are_posted_on_weekdays_in_eastern_working_hours(
    cases: dict[str, SandboxCase],
) -> None:
    local = [at.astimezone(EASTERN) for _, at in _changes(cases)]
    weekdays = sum(1 for t in local if t.weekday() < 5) / len(local)
    working = sum(1 for t in local if 7 <= t.hour < 22) / len(local)
    assert weekdays > 0.9
    assert working > 0.85
    assert sum(1 for t in local if t.second) > len(local) / 2  # real seconds, not rounded


def test_some_changes_come_in_same_day_bursts(cases: dict[str, SandboxCase]) -> None:
    bursts = sum(
        1
        for case in cases.values()
        for a, b in pairwise(case.steps[1:])
        if b.at - a.at < timedelta(hours=12)
    )
    assert bursts >= 10


def test_dwell_times_depend_on_the_status(cases: dict[str, SandboxCase]) -> None:
    """Cards move in days once produced; fingerprints-taken cases wait for months."""
    waits: dict[str, list[float]] = {}
    for case in cases.values():
        for a, b in pairwise(case.steps):
            waits.setdefault(classify(a.title).status, []).append((b.at - a.at).days)
    card = sorted(waits["card_mailed"] + waits["card_being_produced"])
    fingerprints = sorted(waits["fingerprints_taken"])
    assert card[len(card) // 2] <= 7
    assert fingerprints[len(fingerprints) // 2] >= 30


def test_first_rows_reach_far_back(cases: dict[str, SandboxCase]) -> None:
    ages = [(START - case.steps[0].at).days for case in cases.values()]
    assert max(ages) > 365
    assert min(ages) >= 0


def test_final_statuses_stay(cases: dict[str, SandboxCase]) -> None:
    catalog = default_catalog()
    for case in cases.values():
        finals = [catalog.get(classify(s.title).status).final for s in case.steps]
        assert not any(finals[:-1]), case.receipt_number


def test_no_change_repeats_the_title_it_replaces(cases: dict[str, SandboxCase]) -> None:
    for case in cases.values():
        titles = [s.title for s in case.steps]
        assert all(a != b for a, b in pairwise(titles))


def test_at_is_written_with_z_and_with_offsets(text: str) -> None:
    stamps = [row["at"] for row in csv.DictReader(io.StringIO(text))]
    assert any(s.endswith("Z") for s in stamps)
    assert any(s.endswith(("-05:00", "-04:00")) for s in stamps)
    assert any(s.endswith("+00:00") for s in stamps)


def test_receipts_are_valid_and_dated_like_real_ones(cases: dict[str, SandboxCase]) -> None:
    for number, case in cases.items():
        receipt = parse_receipt(number)
        assert receipt.office is not None and not receipt.warnings
        if receipt.is_elis:
            continue
        received = receipt.approx_received_on
        assert received is not None  # fiscal year and workday make sense
        assert received <= case.steps[0].at.astimezone(EASTERN).date() + timedelta(days=3)


def test_ioe_share_is_honoured() -> None:
    cases = read_trace(generate_trace(1000, 10, seed=3, ioe_share=0.3))
    share = sum(1 for r in cases if r.startswith("IOE")) / len(cases)
    assert 0.25 < share < 0.35
    none = read_trace(generate_trace(200, 10, seed=3, ioe_share=0.0))
    assert not any(r.startswith("IOE") for r in none)


def test_the_form_mix_is_varied(cases: dict[str, SandboxCase]) -> None:
    forms = Counter(case.form_type for case in cases.values())
    assert len(forms) >= 10
    assert max(forms.values()) < 0.3 * len(cases)


@pytest.mark.parametrize(
    ("form", "title"),
    [
        ("N-400", "Oath Ceremony Notice Was Mailed"),
        ("I-129", "Case Was Approved And My Decision Was Emailed"),
        ("I-130", "Case Was Sent To The Department of State"),
        ("I-485", "Interview Was Scheduled"),
        ("I-765", "New Card Is Being Produced"),
    ],
)
def test_forms_follow_their_own_paths(form: str, title: str) -> None:
    cases = read_trace(generate_trace(300, 120, seed=2, forms=[form]))
    assert {case.form_type for case in cases.values()} == {form}
    assert any(step.title == title for case in cases.values() for step in case.steps)


def test_work_permits_often_go_straight_to_card_production() -> None:
    cases = read_trace(generate_trace(600, 180, seed=4, forms={"I-765": 1}))
    before_card = Counter(
        classify(a.title).category
        for case in cases.values()
        for a, b in pairwise(case.steps)
        if b.title == "New Card Is Being Produced"
    )
    assert before_card["approved"] > 0
    assert sum(before_card.values()) > 2 * before_card["approved"]


def test_unknown_forms_follow_generic_paths() -> None:
    cases = read_trace(generate_trace(50, 30, seed=1, forms={"I-918": 1.0}))
    assert {case.form_type for case in cases.values()} == {"I-918"}


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="time zone"):
        generate_trace(1, 1, seed=1, start=datetime(2025, 1, 1))
    with pytest.raises(ValueError, match="days"):
        generate_trace(1, 0, seed=1)
    with pytest.raises(ValueError, match="ioe_share"):
        generate_trace(1, 1, seed=1, ioe_share=2)
    assert generate_trace(0, 1, seed=1) == "receipt_number,form_type,at,status_en\n"


def test_write_trace_and_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    written = write_trace(tmp_path / "trace.csv", 20, 14, seed=9)
    expected = generate_trace(20, 14, seed=9)
    assert written.read_text(encoding="utf-8") == expected
    assert tracegen.main(["--cases", "20", "--days", "14", "--seed", "9"]) == 0
    assert capsys.readouterr().out == expected
    out = tmp_path / "cli.csv"
    tracegen.main(["--cases", "20", "--days", "14", "--seed", "9", "--out", str(out)])
    assert out.read_text(encoding="utf-8") == expected
    start = DEFAULT_START.isoformat()
    tracegen.main(["--cases", "20", "--days", "14", "--seed", "9", "--start", start])
    assert capsys.readouterr().out == expected


def test_large_traces_are_quick() -> None:
    began = time.perf_counter()
    text = generate_trace(5000, 90, seed=1)
    assert time.perf_counter() - began < 5
    assert len(read_trace(text)) == 5000
