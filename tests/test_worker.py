"""The worker's check-and-record round against the sandbox over real HTTP."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from casewatch.accounts.firms import default_firm
from casewatch.cases.models import Case, StatusEvent
from casewatch.core.clock import ManualClock
from casewatch.monitor.checks import PollReport, claim, poll_due
from casewatch.monitor.schedule import AdaptivePolicy, Budget
from casewatch.uscis.client import OfficialClient
from casewatch.uscis.sandbox.world import synthetic_case
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
