"""Recording what USCIS said: observations always, status events only for real changes."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from casewatch.accounts.firms import default_firm
from casewatch.audit.chain import verify
from casewatch.cases.history import record_outcome
from casewatch.cases.models import Case, Deadline, Observation, StatusEvent
from casewatch.uscis.source import CaseStatus, Found, HistoryEntry, RateLimited, Unavailable

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


def status(
    title: str,
    description: str = "",
    *,
    modified: datetime | None = T0,
    title_es: str = "",
    receipt: str = "EAC2490012345",
    history: tuple[HistoryEntry, ...] = (),
) -> Found:
    return Found(
        CaseStatus(
            receipt_number=receipt,
            form_type="I-485",
            title_en=title,
            title_es=title_es,
            description_en=description,
            description_es="",
            submitted_at=None,
            modified_at=modified,
            history=history,
            message="Query was successful",
            source="sandbox",
        )
    )


@pytest.fixture
def case() -> Case:
    return Case.objects.create(firm=default_firm(), receipt_number="EAC2490012345")


def test_the_first_answer_is_the_initial_event(case: Case) -> None:
    recorded = record_outcome(case, status("Case Was Received"), observed_at=T0)
    assert recorded.event is not None and recorded.event.initial
    case.refresh_from_db()
    assert (case.status, case.category, case.source) == ("case_received", "received", "sandbox")


def test_the_same_status_again_is_an_observation_not_a_change(case: Case) -> None:
    record_outcome(case, status("Case Was Received"), observed_at=T0)
    again = record_outcome(case, status("Case Was Received"), observed_at=T0 + timedelta(hours=1))
    assert again.event is None and not again.observation.changed
    assert StatusEvent.objects.filter(case=case).count() == 1
    assert Observation.objects.filter(case=case).count() == 2


def test_a_rewording_of_the_same_status_is_not_a_change(case: Case) -> None:
    record_outcome(case, status("Case Was Approved"), observed_at=T0)
    reworded = record_outcome(
        case, status("CASE WAS APPROVED."), observed_at=T0 + timedelta(hours=2)
    )
    assert reworded.event is None
    assert StatusEvent.objects.filter(case=case).count() == 1


def test_a_new_status_is_a_change_with_its_previous_status(case: Case) -> None:
    record_outcome(case, status("Case Was Received"), observed_at=T0)
    later = T0 + timedelta(days=30)
    recorded = record_outcome(
        case, status("Case Is Being Actively Reviewed By USCIS", modified=later), observed_at=later
    )
    assert recorded.event is not None
    assert recorded.event.previous_status == "case_received"
    assert recorded.event.category == "in_review" and not recorded.event.initial


def test_the_same_status_dated_later_by_uscis_is_a_new_change(case: Case) -> None:
    record_outcome(case, status("Interview Was Rescheduled"), observed_at=T0)
    later = T0 + timedelta(days=10)
    recorded = record_outcome(
        case, status("Interview Was Rescheduled", modified=later), observed_at=later
    )
    assert recorded.event is not None


@pytest.mark.parametrize(
    "fault",
    [RateLimited("Spike Arrest Violation", retry_after=1.0), Unavailable("USCIS is down")],
)
def test_a_fault_is_never_a_change(case: Case, fault: RateLimited | Unavailable) -> None:
    record_outcome(case, status("Case Was Received"), observed_at=T0)
    recorded = record_outcome(case, fault, observed_at=T0 + timedelta(hours=1))
    assert recorded.event is None
    assert recorded.observation.outcome == fault.error
    case.refresh_from_db()
    assert case.status == "case_received" and case.last_problem == fault.message


def test_an_rfe_creates_its_response_deadline_87_days_after_the_notice(case: Case) -> None:
    description = (
        "On March 2, 2026, we sent a request for evidence for your Form I-485, Application to "
        "Register Permanent Residence or Adjust Status, Receipt Number EAC2490012345."
    )
    recorded = record_outcome(
        case, status("Request for Evidence Was Sent", description), observed_at=T0
    )
    assert [d.kind for d in recorded.deadlines] == ["rfe_response"]
    assert recorded.deadlines[0].due_on == date(2026, 3, 2) + timedelta(days=87)
    assert Deadline.objects.get(case=case).event == recorded.event


def test_an_rfe_without_a_readable_date_still_gets_a_deadline(case: Case) -> None:
    recorded = record_outcome(case, status("Request for Evidence Was Sent"), observed_at=T0)
    assert recorded.deadlines[0].due_on == T0.date() + timedelta(days=87)
    assert "first seen" in recorded.deadlines[0].basis_text


def test_an_unknown_title_is_recorded_for_review(case: Case) -> None:
    record_outcome(case, status("Case Was Received"), observed_at=T0)
    recorded = record_outcome(
        case, status("Something Entirely New Happened"), observed_at=T0 + timedelta(days=1)
    )
    assert recorded.event is not None
    assert (recorded.event.status, recorded.event.urgency) == ("unknown", "review")


def test_every_event_and_deadline_is_in_the_audit_chain(case: Case) -> None:
    record_outcome(case, status("Request for Evidence Was Sent"), observed_at=T0)
    report = verify()
    assert report.ok and report.entries == 2


def test_a_status_event_cannot_be_edited(case: Case) -> None:
    event = record_outcome(case, status("Case Was Received"), observed_at=T0).event
    assert event is not None
    event.title_en = "Case Was Approved"
    with pytest.raises(ValueError, match="never edited"):
        event.save()


def _entry(on: date, text: str) -> HistoryEntry:
    return HistoryEntry(on, text, "")


def test_steps_missed_between_two_checks_are_recovered_from_the_history(case: Case) -> None:
    record_outcome(case, status("Case Was Received", modified=T0), observed_at=T0)
    later = T0 + timedelta(days=9)
    history = (  # USCIS lists the newest step first
        _entry(date(2026, 3, 11), "We scheduled an interview for your Form I-485."),
        _entry(date(2026, 3, 9), "We sent you a request for evidence for your Form I-485."),
        _entry(date(2026, 3, 5), "We received your fingerprint fee for your Form I-485."),
        _entry(date(2026, 3, 2), "We received your Form I-485."),
    )
    recorded = record_outcome(
        case,
        status("Interview Was Scheduled", modified=later, history=history),
        observed_at=later,
    )
    statuses = [(e.status, e.recovered) for e in recorded.events]
    assert statuses == [
        ("fingerprint_fee_received", True),
        ("rfe_sent", True),
        ("interview_scheduled", False),
    ]
    rfe = recorded.events[1]
    assert rfe.previous_status == "fingerprint_fee_received"
    assert rfe.uscis_date is not None and rfe.uscis_date.date() == date(2026, 3, 9)
    deadline = Deadline.objects.get(event=rfe)
    assert deadline.due_on == date(2026, 3, 9) + timedelta(days=87)
    assert verify().ok


def test_history_that_only_repeats_what_was_known_recovers_nothing(case: Case) -> None:
    record_outcome(case, status("Case Was Received", modified=T0), observed_at=T0)
    later = T0 + timedelta(days=3)
    history = (
        _entry(date(2026, 3, 5), "We received your fingerprint fee for your Form I-485."),
        _entry(date(2026, 3, 2), "We received your Form I-485."),
    )
    recorded = record_outcome(
        case,
        status("Fingerprint Fee Was Received", modified=later, history=history),
        observed_at=later,
    )
    assert [(e.status, e.recovered) for e in recorded.events] == [
        ("fingerprint_fee_received", False)
    ]
