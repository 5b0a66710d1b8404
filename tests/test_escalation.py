"""Follow-ups: an unacknowledged action change climbs the rule's ladder, a card that never
arrived is checked on once, and each member gets one digest a day of their cases' progress.

Each follow-up is a plain function of the time, run as often as the worker likes: a
second run at the same moment, or a later one, never repeats what was done.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Literal

import pytest

from casewatch.audit.chain import verify
from casewatch.audit.models import AuditEntry
from casewatch.cases.follow_ups import acknowledge
from casewatch.cases.models import StatusEvent
from casewatch.notify.escalation import check_card_delivery, escalate_unacknowledged, send_digests
from casewatch.notify.models import MessagingPolicy, Notification, RoutingRule
from casewatch.notify.route import route_pending
from tests.routing_world import (
    CLIENT_NAME,
    NOW,
    Office,
    another_case,
    change,
    contact,
    heard,
    make_office,
)

pytestmark = pytest.mark.django_db

HOUR = timedelta(hours=1)


@pytest.fixture
def office() -> Office:
    return make_office()


def routed_rfe(office: Office) -> StatusEvent:
    rfe = change(office.case, "rfe_sent")
    route_pending(NOW)
    rfe.refresh_from_db()
    return rfe


# --- escalation ------------------------------------------------------------------------


def test_an_unacknowledged_rfe_goes_to_the_next_level_after_n_hours_then_the_one_after(
    office: Office,
) -> None:
    rfe = routed_rfe(office)
    assert escalate_unacknowledged(NOW + 4 * HOUR - timedelta(seconds=1)) == 0
    assert escalate_unacknowledged(NOW + 4 * HOUR) == 2
    assert heard(event=rfe, kind="escalation") == {("olu", "in_app"), ("olu", "email")}
    assert escalate_unacknowledged(NOW + 5 * HOUR) == 0
    assert escalate_unacknowledged(NOW + 8 * HOUR) == 2
    assert heard(event=rfe, kind="escalation") == {
        ("olu", "in_app"),
        ("olu", "email"),
        ("ada", "in_app"),
        ("ada", "email"),
    }
    # The ladder has two rungs: nobody else hears, however long it waits.
    assert escalate_unacknowledged(NOW + 40 * HOUR) == 0
    entries = AuditEntry.objects.filter(action="status_event.escalated", object_id=str(rfe.pk))
    assert [json.loads(e.details_json)["level"] for e in entries.order_by("seq")] == [1, 2]
    assert verify().ok


def test_the_escalation_says_what_waits_and_how_long(office: Office) -> None:
    rfe = routed_rfe(office)
    escalate_unacknowledged(NOW + 4 * HOUR)
    row = Notification.objects.get(event=rfe, kind="escalation", channel="email")
    assert row.status == "pending" and row.urgency == "action"
    params = row.message["params"]
    assert params["receipt"] == office.case.receipt_number
    assert params["hours"] == "4" and params["level"] == "1"
    assert params["case_url"] == f"/cases/{office.case.pk}/"
    assert CLIENT_NAME not in json.dumps(row.message)


def test_an_acknowledged_change_is_not_escalated(office: Office) -> None:
    rfe = routed_rfe(office)
    acknowledge(rfe, by=office.paralegal.user, at=NOW + HOUR)
    assert escalate_unacknowledged(NOW + 9 * HOUR) == 0
    assert not Notification.objects.filter(kind="escalation").exists()


def test_acknowledging_after_the_first_level_stops_the_climb(office: Office) -> None:
    rfe = routed_rfe(office)
    escalate_unacknowledged(NOW + 4 * HOUR)
    acknowledge(rfe, by=office.operations.user, at=NOW + 5 * HOUR)
    assert escalate_unacknowledged(NOW + 8 * HOUR) == 0
    assert {who for who, _ in heard(kind="escalation")} == {"olu"}


def test_a_worker_that_was_away_catches_up_every_level_due_once(office: Office) -> None:
    routed_rfe(office)
    assert escalate_unacknowledged(NOW + 9 * HOUR) == 4
    assert escalate_unacknowledged(NOW + 9 * HOUR) == 0


def test_progress_changes_and_first_statuses_are_never_escalated(office: Office) -> None:
    change(office.case, "approved")
    change(another_case(office, 1), "rfe_sent", initial=True)
    route_pending(NOW)
    assert escalate_unacknowledged(NOW + 24 * HOUR) == 0


def test_the_firms_own_wait_and_ladder_are_followed(office: Office) -> None:
    MessagingPolicy.objects.create(firm=office.firm, escalate_after_hours=2)
    RoutingRule.objects.create(
        firm=office.firm,
        category="denied",
        staff=["responsible_paralegal"],
        staff_channels=["in_app"],
        escalate_to=["responsible_attorney"],
    )
    denial = change(office.case, "denied")
    route_pending(NOW)
    assert escalate_unacknowledged(NOW + 2 * HOUR) == 2
    assert heard(event=denial, kind="escalation") == {("alma", "in_app"), ("alma", "email")}


def test_a_firm_that_set_the_wait_to_zero_does_not_escalate(office: Office) -> None:
    MessagingPolicy.objects.create(firm=office.firm, escalate_after_hours=0)
    routed_rfe(office)
    assert escalate_unacknowledged(NOW + 30 * HOUR) == 0


def test_a_level_nobody_fills_goes_to_the_admins_and_nobody_hears_twice() -> None:
    office = make_office("no-ops", with_operations=False)
    rfe = routed_rfe(office)
    assert escalate_unacknowledged(NOW + 4 * HOUR) == 2  # no operations lead: the admin
    assert escalate_unacknowledged(NOW + 8 * HOUR) == 0  # level 2 is the admin, who knows
    assert heard(event=rfe, kind="escalation") == {("ada", "in_app"), ("ada", "email")}


# --- card delivery -----------------------------------------------------------------------


def test_a_card_mailed_and_not_delivered_after_n_days_prompts_the_paralegal_once(
    office: Office,
) -> None:
    mailed = change(office.case, "card_mailed", at=NOW)
    route_pending(NOW)
    mailed_at = mailed.uscis_date
    assert mailed_at is not None
    assert check_card_delivery(mailed_at + timedelta(days=10) - HOUR) == 0
    assert check_card_delivery(mailed_at + timedelta(days=10)) == 1
    (row,) = Notification.objects.filter(kind="card_delivery_check")
    assert (row.user_id, row.channel, row.status) == (
        office.paralegal.user_id,
        "in_app",
        "delivered",
    )
    assert row.message["params"]["receipt"] == office.case.receipt_number
    assert row.message["params"]["days"] == "10"
    assert check_card_delivery(mailed_at + timedelta(days=11)) == 0
    assert check_card_delivery(mailed_at + timedelta(days=30)) == 0


def test_the_usps_pickup_after_the_mailing_is_the_same_mailing(office: Office) -> None:
    mailed = change(office.case, "card_mailed", at=NOW)
    change(office.case, "card_picked_up_by_usps", at=NOW + timedelta(days=2))
    assert mailed.uscis_date is not None
    assert check_card_delivery(mailed.uscis_date + timedelta(days=10)) == 1
    assert check_card_delivery(mailed.uscis_date + timedelta(days=13)) == 0


def test_a_delivered_card_or_an_archived_case_is_not_checked(office: Office) -> None:
    change(office.case, "card_mailed", at=NOW)
    change(office.case, "card_delivered", at=NOW + timedelta(days=3))
    archived = another_case(office, 2, archived_at=NOW)
    change(archived, "card_mailed", at=NOW)
    assert check_card_delivery(NOW + timedelta(days=20)) == 0


def test_the_firms_own_number_of_days_is_followed(office: Office) -> None:
    MessagingPolicy.objects.create(firm=office.firm, card_delivery_days=3)
    mailed = change(office.case, "card_mailed", at=NOW)
    assert mailed.uscis_date is not None
    assert check_card_delivery(mailed.uscis_date + timedelta(days=3)) == 1


# --- daily digest ------------------------------------------------------------------------

# 07:05 in New York on Tuesday 3 March (EST): the default digest hour.
DIGEST_TIME = datetime(2026, 3, 3, 12, 5, tzinfo=UTC)


def test_each_member_gets_one_digest_a_day_of_their_own_cases_progress(office: Office) -> None:
    mine = [
        change(office.case, "actively_reviewed", at=DIGEST_TIME - 10 * HOUR),
        change(another_case(office, 3), "fingerprints_taken", at=DIGEST_TIME - 5 * HOUR),
    ]
    change(another_case(office, 4), "rfe_sent", at=DIGEST_TIME - 4 * HOUR)  # action: alerted
    change(another_case(office, 5), "case_received", at=DIGEST_TIME - HOUR, initial=True)
    theirs = another_case(office, 6, paralegal=office.operations.user, attorney=None)
    change(theirs, "actively_reviewed", at=DIGEST_TIME - 3 * HOUR)

    assert send_digests(DIGEST_TIME - timedelta(minutes=10)) == 0  # 06:55
    assert send_digests(DIGEST_TIME) == 3  # alma and pablo (both on mine), olu (theirs)
    pablo = Notification.objects.get(kind="digest", user=office.paralegal.user)
    assert (pablo.channel, pablo.status, pablo.language) == ("email", "pending", "es")
    params = pablo.message["params"]
    assert params["count"] == "2" and params["date"] == "2026-03-03"
    assert [c["receipt"] for c in params["changes"]] == [e.case.receipt_number for e in mine]
    assert params["dashboard_url"] == "/"
    olu = Notification.objects.get(kind="digest", user=office.operations.user)
    assert olu.message["params"]["count"] == "1"
    assert not Notification.objects.filter(kind="digest", user=office.admin.user).exists()
    # Later the same morning, and later the same day: nothing more.
    assert send_digests(DIGEST_TIME + timedelta(minutes=30)) == 0
    assert send_digests(DIGEST_TIME + 10 * HOUR) == 0


def test_the_next_digest_lists_only_what_came_after_the_last(office: Office) -> None:
    change(office.case, "actively_reviewed", at=DIGEST_TIME - 2 * HOUR)
    send_digests(DIGEST_TIME)
    tomorrow = DIGEST_TIME + timedelta(days=1)
    assert send_digests(tomorrow) == 0  # nothing new: no digest at all
    later = change(another_case(office, 7), "interview_completed", at=tomorrow + 3 * HOUR)
    day_after = DIGEST_TIME + timedelta(days=2)
    assert send_digests(day_after) == 2
    newest = Notification.objects.filter(kind="digest", user=office.paralegal.user).latest(
        "created_at"
    )
    assert newest.message["params"]["count"] == "1"
    assert [c["status"] for c in newest.message["params"]["changes"]] == [later.status]


def test_a_member_who_takes_no_email_gets_the_digest_in_the_app(office: Office) -> None:
    contact(office.paralegal, "in_app")
    change(office.case, "actively_reviewed", at=DIGEST_TIME - 2 * HOUR)
    send_digests(DIGEST_TIME)
    row = Notification.objects.get(kind="digest", user=office.paralegal.user)
    assert (row.channel, row.status) == ("in_app", "delivered")


def test_the_digest_comes_at_the_firms_hour_on_the_members_own_clock(office: Office) -> None:
    MessagingPolicy.objects.create(firm=office.firm, digest_hour=9)
    office.attorney.time_zone = "America/Los_Angeles"
    office.attorney.save()
    change(office.case, "actively_reviewed", at=DIGEST_TIME - 2 * HOUR)
    assert send_digests(DIGEST_TIME) == 0  # 07:05 in New York
    assert send_digests(DIGEST_TIME + 2 * HOUR) == 1  # 09:05 in New York: pablo
    assert send_digests(DIGEST_TIME + 5 * HOUR) == 1  # 09:05 in Los Angeles: alma
    assert {n.user_id for n in Notification.objects.filter(kind="digest")} == {
        office.paralegal.user_id,
        office.attorney.user_id,
    }


# --- everything together -----------------------------------------------------------------


def test_everything_routed_or_followed_up_renders_in_its_language_without_personal_data(
    office: Office,
) -> None:
    """The router stores a message key and parameters; messages.render must accept each."""
    from casewatch.cases.models import Reminder
    from casewatch.monitor.models import OperationalEvent
    from casewatch.notify.messages import render
    from tests.routing_world import CLIENT_EMAIL, CLIENT_PHONE

    statuses = ["rfe_sent", "approved", "card_mailed", "denied", "unknown", "actively_reviewed"]
    for n, status in enumerate(statuses):
        change(another_case(office, 60 + n), status, at=NOW - 2 * HOUR)
    OperationalEvent.objects.create(kind="uscis_unreadable", occurred_at=NOW, message="down")
    OperationalEvent.objects.create(kind="uscis_recovered", occurred_at=NOW, message="up")
    Reminder.objects.create(
        firm=office.firm,
        case=another_case(office, 70, receipt_number=None),
        kind="receipt_pending",
        message="No receipt yet.",
    )
    route_pending(NOW)
    escalate_unacknowledged(NOW + 9 * HOUR)
    check_card_delivery(NOW + timedelta(days=12))
    send_digests(DIGEST_TIME)
    rows = list(Notification.objects.all())
    assert {n.kind for n in rows} == {
        "status_change",
        "uscis_outage",
        "uscis_recovered",
        "receipt_pending",
        "escalation",
        "card_delivery_check",
        "digest",
    }
    for row in rows:
        audience: Literal["client", "staff"] = (
            "client" if row.recipient_kind == "client" else "staff"
        )
        rendered = render(row.message, row.language, audience=audience)
        assert rendered.text and rendered.subject
        stored = json.dumps(row.message)
        assert CLIENT_NAME not in stored and CLIENT_EMAIL not in stored
        assert CLIENT_PHONE not in stored and "5555550123" not in stored
