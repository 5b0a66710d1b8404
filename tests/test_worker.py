"""The worker's check-and-record round against the sandbox over real HTTP."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from casewatch.accounts.firms import default_firm
from casewatch.cases.models import Case, Observation, StatusEvent
from casewatch.core.clock import ManualClock
from casewatch.monitor.checks import FETCHERS, PollReport, claim, poll_due
from casewatch.monitor.schedule import AdaptivePolicy, Budget
from casewatch.uscis.client import OfficialClient
from casewatch.uscis.sandbox.app import Limits, SandboxApp
from casewatch.uscis.sandbox.server import serve_in_thread
from casewatch.uscis.sandbox.world import SyntheticWorld, synthetic_case
from tests.conftest import client_for, start_sandbox

pytestmark = pytest.mark.django_db

BUDGET = Budget(calls_per_day=10_000, min_interval=timedelta(hours=1))


def poll(client: OfficialClient, now: datetime, *, spent: int = 5_000) -> PollReport:
    """One worker round at `now`, with half the day gone and `spent` calls used today."""
    return poll_due(
        client,
        policy=AdaptivePolicy(BUDGET),
        now=lambda: now,
        may_send=lambda: True,
        used_today=lambda: spent,
        day_start=lambda moment: moment - timedelta(hours=12),
    )


def _cases(*receipts: str) -> list[Case]:
    firm = default_firm()
    return [Case.objects.create(firm=firm, receipt_number=r) for r in receipts]


def test_a_round_reads_every_due_case_and_records_its_status(
    client: OfficialClient, clock: ManualClock
) -> None:
    _cases("EAC9999103403", "LIN9999106498", "EAC2490012345")
    report = poll(client, clock.now())
    assert report.checked == 3 and report.changes == 3 and report.faults == 0
    approved = Case.objects.get(receipt_number="EAC9999103403")
    assert (approved.title_en, approved.category) == ("Case Was Approved", "approved")
    assert approved.source == "sandbox"
    assert approved.next_check_at is not None and approved.next_check_at > clock.now()


def test_nothing_is_checked_before_it_is_due_again(
    client: OfficialClient, clock: ManualClock
) -> None:
    _cases("EAC2490012345")
    poll(client, clock.now())
    again = poll(client, clock.now())
    assert again.checked == 0
    due = Case.objects.get().next_check_at
    assert due is not None and due >= clock.now() + BUDGET.min_interval
    assert poll(client, due - timedelta(seconds=1)).checked == 0
    assert poll(client, due).checked == 1


def _a_case_still_moving(after: datetime) -> str:
    """A receipt whose synthetic case has a step after `after`, and one before it."""
    for serial in range(10_000, 20_000):
        receipt = f"EAC26080{serial:05d}"
        steps = synthetic_case(receipt).steps
        if steps[0].at < after < steps[-1].at:
            return receipt
    raise AssertionError("no moving case found")


def test_a_case_that_moved_at_uscis_gets_one_new_event(clock: ManualClock) -> None:
    (case,) = _cases(_a_case_still_moving(clock.now()))
    _, server = start_sandbox(clock)
    with server, client_for(server) as client:
        first_at = clock.now()
        poll(client, first_at)
        first = Case.objects.get(pk=case.pk).status
        for _ in range(60):  # the synthetic case moves along its path over months
            clock.advance(timedelta(days=7))
            poll(client, clock.now())
            if Case.objects.get(pk=case.pk).status != first:
                break
    events = list(StatusEvent.objects.filter(case=case).order_by("pk"))
    assert len(events) >= 2
    assert events[1].previous_status == events[0].status != events[1].status


def test_an_unknown_receipt_is_a_fault_not_a_change(
    client: OfficialClient, clock: ManualClock
) -> None:
    (case,) = _cases("EAC2490010404")  # the sandbox answers 404 to serial 0404
    report = poll(client, clock.now())
    assert report.faults == 1 and report.changes == 0
    case.refresh_from_db()
    assert case.status == "" and "does not recognize" in case.last_problem


def test_claimed_cases_are_not_claimed_again_until_their_lease_ends(clock: ManualClock) -> None:
    _cases("EAC2490012345", "EAC2490012346")
    first = claim(clock.now(), 10, worker="one")
    assert len(first) == 2
    assert claim(clock.now(), 10, worker="two") == []
    assert len(claim(clock.now() + timedelta(minutes=11), 10, worker="two")) == 2


def test_when_the_day_is_behind_its_pace_cases_are_checked_early(
    client: OfficialClient, clock: ManualClock
) -> None:
    _cases("EAC2490012345")
    poll(client, clock.now())
    assert poll(client, clock.now(), spent=100).checked == 0, "it has not rested yet"
    rested = clock.now() + BUDGET.min_interval
    assert poll(client, rested, spent=5_000).checked == 0, "on pace: only due cases"
    assert poll(client, rested, spent=100).checked == 1, "behind pace: checked early"


# --- the worker's round: back-offs, and what it tells the circuit breaker ------------------


@pytest.fixture
def fresh_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker process with no policy learned yet, asking as fast as its limiter allows."""
    from casewatch.monitor import tasks

    monkeypatch.setenv("CASEWATCH_USCIS_RATE", "1000")
    monkeypatch.setenv("CASEWATCH_USCIS_DAILY_BUDGET", "10000")
    monkeypatch.setenv("CASEWATCH_CHECK_INTERVAL_SECONDS", "0.001")
    monkeypatch.setattr(tasks, "_policy", None)
    monkeypatch.setattr(tasks, "_learned_at", None)
    monkeypatch.setattr(tasks, "_resume_at", 0.0)


def _lookups(app: SandboxApp) -> list[dict[str, Any]]:
    assert isinstance(app.request_log, io.StringIO)
    return [json.loads(line) for line in app.request_log.getvalue().splitlines()]


def test_after_a_429_the_worker_asks_again_as_soon_as_retry_after_is_over(
    fresh_worker: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """USCIS's spike arrest refuses quick requests with Retry-After: 1 (the worker asks faster).

    The round waits each second out and goes on, rather than ending until the next
    minute's round; nothing but requests already on their way arrives before
    Retry-After allows.
    """
    from casewatch.monitor import tasks

    monkeypatch.setenv("CASEWATCH_CHECK_INTERVAL_SECONDS", "600")  # each case asked once
    monkeypatch.setattr(tasks, "ROUND_SECONDS", 4.0)
    _cases(*[f"EAC24900123{n:02d}" for n in range(8)])
    app = SandboxApp(
        SyntheticWorld(),
        ManualClock(datetime(2026, 3, 2, 15, 0, tzinfo=UTC)),
        limits=Limits(rate=2),
        request_log=io.StringIO(),
    )
    with serve_in_thread(app) as server, client_for(server) as client:
        monkeypatch.setattr(tasks, "_reader", lambda: client)
        tasks.poll_round()

    lookups = _lookups(app)
    refused = [lookup["at"] for lookup in lookups if lookup["status"] == 429]
    read = [lookup["at"] for lookup in lookups if lookup["status"] == 200]
    assert refused, "the sandbox never said 429: the test proves nothing"
    assert any(at >= refused[0] + 1.0 for at in read), "the round ended at the first 429"
    for no in refused:
        soon = [at for at in read + refused if no < at < no + 1.0]
        assert len(soon) < FETCHERS, "asked again before Retry-After"


def test_a_back_off_longer_than_the_round_is_resumed_by_a_poll_scheduled_for_its_end(
    fresh_worker: None, monkeypatch: pytest.MonkeyPatch, client: OfficialClient
) -> None:
    from huey.contrib.djhuey import HUEY

    from casewatch.monitor import tasks

    monkeypatch.setattr(tasks, "_reader", lambda: client)
    _cases("EAC2490012345")
    HUEY.flush()
    bucket = tasks.quota()
    bucket.back_off(120.0)  # a 503 with Retry-After: 120, seen by any worker
    ends = datetime.now(UTC) + timedelta(seconds=120)

    assert tasks.poll_round() == 0
    resumes = [task for task in HUEY.pending() if task.name.endswith("poll_now")]
    assert len(resumes) == 1
    (resume,) = resumes
    assert resume.eta is not None
    assert abs(resume.eta.replace(tzinfo=UTC) - ends) < timedelta(seconds=5)
    # The next minute's round, still inside the back-off, leaves that one poll as it is.
    assert tasks.poll_round() == 0
    assert len([task for task in HUEY.pending() if task.name.endswith("poll_now")]) == 1
    HUEY.flush()


def test_reads_in_a_row_are_noted_together_and_a_failure_after_them_counts_from_the_last(
    fresh_worker: None,
) -> None:
    """The circuit breaker hears a run of good reads as one (the latest), noted before the
    failure that ends the run: one write for the run, one failure in a row, the last read known."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from casewatch.monitor import tasks
    from casewatch.monitor.health import health_snapshot, note_outcome
    from casewatch.monitor.limiter import DatabaseQuota
    from casewatch.monitor.models import UscisHealth
    from casewatch.uscis.source import Malformed, Outcome
    from tests.test_recording_batches import Scripted, found

    clock = ManualClock(datetime(2026, 3, 2, 15, 0, tzinfo=UTC))
    cases = _cases(*[f"EAC24900123{n:02d}" for n in range(6)])
    receipts = [str(case.receipt_number) for case in cases]

    def taking(answer: Callable[[], Outcome]) -> Callable[[], Outcome]:
        def answering() -> Outcome:
            clock.advance(timedelta(milliseconds=100))
            return answer()

        return answering

    def received(receipt: str) -> Callable[[], Outcome]:
        return lambda: found("Case Was Received", receipt)

    answers = {r: taking(received(r)) for r in receipts[:-1]}
    answers[receipts[-1]] = taking(lambda: Malformed("not a status"))  # the last one asked
    bucket = DatabaseQuota(None, None, clock=lambda: clock.now().timestamp())
    note_outcome(None, clock.now() - timedelta(minutes=5))  # USCIS was read before
    with CaptureQueriesContext(connection) as queries:
        report = tasks.poll_once(Scripted(answers), bucket, now=clock.now)

    assert report.checked == 6 and report.faults == 1
    last_read = Observation.objects.filter(outcome="found").order_by("-observed_at").first()
    assert last_read is not None
    health = health_snapshot()
    assert health["consecutive_failures"] == 1
    assert health["last_success_at"] == last_read.observed_at.astimezone(UTC).isoformat()
    table = UscisHealth._meta.db_table
    writes = [
        q["sql"]
        for q in queries.captured_queries
        if table in q["sql"] and q["sql"].lstrip().upper().startswith(("UPDATE", "INSERT"))
    ]
    # The first read (it could end an outage), the run of reads before the failure, the failure.
    assert len(writes) == 3, "five reads in half a second are not noted one by one"
