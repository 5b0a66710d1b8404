"""The worker's check-and-record round against the sandbox over real HTTP."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from casewatch.accounts.firms import default_firm
from casewatch.cases.models import Case, StatusEvent
from casewatch.core.clock import ManualClock
from casewatch.monitor.checks import Cadence, claim_due, poll_due
from casewatch.monitor.pacing import Pacer
from casewatch.uscis.client import OfficialClient
from casewatch.uscis.sandbox.world import synthetic_case
from tests.conftest import client_for, start_sandbox

pytestmark = pytest.mark.django_db

CADENCE = Cadence(minimum=timedelta(hours=1), daily_budget=10_000)


def _cases(*receipts: str) -> list[Case]:
    firm = default_firm()
    return [Case.objects.create(firm=firm, receipt_number=r) for r in receipts]


def test_a_round_reads_every_due_case_and_records_its_status(
    client: OfficialClient, clock: ManualClock
) -> None:
    _cases("EAC9999103403", "LIN9999106498", "EAC2490012345")
    report = poll_due(client, pacer=Pacer(None), cadence=CADENCE, now=clock.now())
    assert report.checked == 3 and report.changes == 3 and report.faults == 0
    approved = Case.objects.get(receipt_number="EAC9999103403")
    assert (approved.title_en, approved.category) == ("Case Was Approved", "approved")
    assert approved.source == "sandbox"
    assert approved.next_check_at is not None and approved.next_check_at > clock.now()


def test_nothing_is_checked_before_it_is_due_again(
    client: OfficialClient, clock: ManualClock
) -> None:
    _cases("EAC2490012345")
    poll_due(client, pacer=Pacer(None), cadence=CADENCE, now=clock.now())
    again = poll_due(client, pacer=Pacer(None), cadence=CADENCE, now=clock.now())
    assert again.checked == 0
    later = clock.now() + timedelta(hours=2)
    assert poll_due(client, pacer=Pacer(None), cadence=CADENCE, now=later).checked == 1


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
        poll_due(client, pacer=Pacer(None), cadence=CADENCE, now=first_at)
        first = Case.objects.get(pk=case.pk).status
        for _ in range(60):  # the synthetic case moves along its path over months
            clock.advance(timedelta(days=7))
            poll_due(client, pacer=Pacer(None), cadence=CADENCE, now=clock.now())
            if Case.objects.get(pk=case.pk).status != first:
                break
    events = list(StatusEvent.objects.filter(case=case).order_by("pk"))
    assert len(events) >= 2
    assert events[1].previous_status == events[0].status != events[1].status


def test_an_unknown_receipt_is_a_fault_not_a_change(
    client: OfficialClient, clock: ManualClock
) -> None:
    (case,) = _cases("EAC2490010404")  # the sandbox answers 404 to serial 0404
    report = poll_due(client, pacer=Pacer(None), cadence=CADENCE, now=clock.now())
    assert report.faults == 1 and report.changes == 0
    case.refresh_from_db()
    assert case.status == "" and "does not recognize" in case.last_problem


def test_claimed_cases_are_not_claimed_again_until_their_lease_ends(clock: ManualClock) -> None:
    _cases("EAC2490012345", "EAC2490012346")
    first = claim_due(clock.now(), 10)
    assert len(first) == 2
    assert claim_due(clock.now(), 10) == []
    assert len(claim_due(clock.now() + timedelta(minutes=11), 10)) == 2


def test_the_cadence_spreads_the_caseload_over_the_daily_budget() -> None:
    cadence = Cadence(minimum=timedelta(hours=1), daily_budget=10_000)
    assert cadence.interval(100) == timedelta(hours=1)
    assert cadence.interval(20_000) == timedelta(days=2)
