"""The router: each change reaches exactly the people its rule names, on their channels.

The defaults (notify/data/routing.toml) are the seed's: RFE, NOID, interview, denial and
transfer to the responsible attorney and paralegal at once; approval to the paralegal;
card mailed or delivered to the client; administrative notices recorded only; a USCIS
outage to the operations lead. Clients hear only on channels they consented to, in their
language, never in quiet hours; every notification has an idempotency key, so routing
twice sends nothing twice.
"""

from __future__ import annotations

import json
import re
import threading
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection, connections

from casewatch.audit.chain import verify
from casewatch.audit.models import AuditEntry
from casewatch.cases.models import Reminder, StatusEvent
from casewatch.core.statuses import CATEGORIES, URGENCIES
from casewatch.monitor.models import OperationalEvent
from casewatch.notify.messages import render
from casewatch.notify.models import (
    MessagingPolicy,
    Notification,
    RoutingRule,
    WebhookEndpoint,
)
from casewatch.notify.route import (
    RouteReport,
    idempotency_key,
    pending_batch,
    route_batch,
    route_pending,
)
from casewatch.notify.rules import (
    RoutingError,
    defaults,
    firm_rule,
    load_defaults,
    matching_rule,
)
from tests.routing_world import (
    CLIENT_EMAIL,
    CLIENT_NAME,
    CLIENT_PHONE,
    NOW,
    Office,
    another_case,
    change,
    contact,
    give_consent,
    heard,
    make_client,
    make_office,
    plan,
)

pytestmark = pytest.mark.django_db

STAFF_AT_ONCE = {
    ("alma", "in_app"),
    ("alma", "email"),
    ("pablo", "in_app"),
    ("pablo", "email"),
}
CLIENT_ON_WHATSAPP = {("client", "whatsapp")}


@pytest.fixture
def office() -> Office:
    return make_office()


# --- the defaults, rule by rule -------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        # The seed's list: the responsible attorney and paralegal at once, and the client.
        ("rfe_sent", STAFF_AT_ONCE | CLIENT_ON_WHATSAPP),
        ("initial_evidence_requested", STAFF_AT_ONCE | CLIENT_ON_WHATSAPP),
        ("noid_sent", STAFF_AT_ONCE | CLIENT_ON_WHATSAPP),
        ("interview_scheduled", STAFF_AT_ONCE | CLIENT_ON_WHATSAPP),
        ("denied", STAFF_AT_ONCE | CLIENT_ON_WHATSAPP),
        ("transferred_new_office", STAFF_AT_ONCE | CLIENT_ON_WHATSAPP),
        # Approval: the paralegal, and the client.
        ("approved", {("pablo", "in_app"), ("pablo", "email")} | CLIENT_ON_WHATSAPP),
        # Card mailed or delivered: the client only (staff read it in their digest).
        ("card_mailed", CLIENT_ON_WHATSAPP),
        ("card_picked_up_by_usps", CLIENT_ON_WHATSAPP),
        ("card_delivered", CLIENT_ON_WHATSAPP),
        # Administrative notices: recorded only.
        ("name_updated", set()),
        ("duplicate_notice_mailed", set()),
        # Other action changes: as the seed's list.
        ("card_returned", STAFF_AT_ONCE | CLIENT_ON_WHATSAPP),
        ("rejected_incorrect_fee", STAFF_AT_ONCE | CLIENT_ON_WHATSAPP),
        ("appeal_dismissed", STAFF_AT_ONCE | CLIENT_ON_WHATSAPP),
        # A biometrics appointment: the paralegal makes sure the client goes.
        ("biometrics_scheduled", {("pablo", "in_app"), ("pablo", "email")} | CLIENT_ON_WHATSAPP),
        # Progress: the client; staff in their digest.
        ("actively_reviewed", CLIENT_ON_WHATSAPP),
        ("fingerprints_taken", CLIENT_ON_WHATSAPP),
        ("rfe_response_received", CLIENT_ON_WHATSAPP),
        # A title casewatch could not read: the paralegal looks; the client is not told.
        ("unknown", {("pablo", "in_app"), ("pablo", "email")}),
    ],
)
def test_each_default_rule_reaches_exactly_its_people_on_their_channels(
    office: Office, status: str, expected: set[tuple[str, str]]
) -> None:
    event = change(office.case, status)
    report = route_pending(NOW)
    assert report.status_events == 1
    assert heard(event=event) == expected
    event.refresh_from_db()
    assert event.routed_at == NOW


def test_the_client_is_told_of_every_category_but_admin_notices_and_unreadable_titles() -> None:
    told = {
        category
        for category in CATEGORIES
        for urgency in URGENCIES
        if (rule := matching_rule(defaults().rules, "status_change", category, urgency))
        and rule.tell_client
    }
    assert told == set(CATEGORIES) - {"admin", "unknown"}


def test_staff_sms_goes_only_to_members_who_chose_it_and_only_for_action_changes(
    office: Office,
) -> None:
    contact(office.attorney, "in_app", "email", "sms", phone="+15555550177")
    contact(office.paralegal, "in_app", "email")  # no phone, no SMS
    rfe = change(office.case, "rfe_sent")
    approval = change(another_case(office, 1), "approved")
    route_pending(NOW)
    assert ("alma", "sms") in heard(event=rfe)
    assert ("pablo", "sms") not in heard(event=rfe)
    assert {ch for who, ch in heard(event=approval) if who != "client"} == {"in_app", "email"}
    sms = Notification.objects.get(event=rfe, channel="sms")
    assert sms.address == "+15555550177" and sms.status == "pending"


def test_a_member_who_left_email_out_of_their_channels_hears_in_the_app_only(
    office: Office,
) -> None:
    contact(office.paralegal, "in_app")
    rfe = change(office.case, "rfe_sent")
    route_pending(NOW)
    assert {ch for who, ch in heard(event=rfe) if who == "pablo"} == {"in_app"}


def test_in_app_notifications_are_delivered_when_stored_and_others_wait_for_the_dispatcher(
    office: Office,
) -> None:
    rfe = change(office.case, "rfe_sent")
    route_pending(NOW)
    for notification in Notification.objects.filter(event=rfe):
        if notification.channel == "in_app":
            assert notification.status == "delivered" and notification.delivered_at == NOW
            assert notification.address == ""
        else:
            assert notification.status == "pending" and notification.next_attempt_at == NOW
        assert notification.kind == "status_change" and notification.urgency == "action"
        assert notification.created_at == NOW and notification.case_id == office.case.pk


def test_a_case_without_its_own_people_alerts_the_admins_so_nothing_goes_to_nobody(
    office: Office,
) -> None:
    lone = another_case(office, 2, attorney=None, paralegal=None)
    rfe = change(lone, "rfe_sent")
    route_pending(NOW)
    assert heard(event=rfe) == {("ada", "in_app"), ("ada", "email")} | CLIENT_ON_WHATSAPP


def test_members_who_left_the_firm_hear_nothing(office: Office) -> None:
    office.attorney.user.is_active = False
    office.attorney.user.save()
    rfe = change(office.case, "rfe_sent")
    route_pending(NOW)
    assert {who for who, _ in heard(event=rfe)} == {"pablo", "client"}


def test_one_person_named_twice_hears_once_per_channel(office: Office) -> None:
    both = another_case(office, 3, attorney=office.paralegal.user)
    rfe = change(both, "rfe_sent")
    route_pending(NOW)
    rows = Notification.objects.filter(event=rfe, recipient_kind="staff")
    assert sorted(n.channel for n in rows) == ["email", "in_app"]


def test_staff_and_clients_are_written_to_in_their_own_language(office: Office) -> None:
    rfe = change(office.case, "rfe_sent")
    route_pending(NOW)
    languages = {
        (n.recipient_kind, n.user.first_name if n.user else "", n.language)
        for n in Notification.objects.filter(event=rfe).select_related("user")
    }
    assert languages == {
        ("staff", "Alma", "en"),
        ("staff", "Pablo", "es"),
        ("client", "", "es"),
    }


def test_a_clients_language_outside_the_ten_is_english(office: Office) -> None:
    german = make_client(office.firm, reference="C-0007", language="de")
    portuguese = make_client(office.firm, reference="C-0008", language="pt")
    first = change(another_case(office, 18, client=german), "approved")
    second = change(another_case(office, 19, client=portuguese), "approved")
    route_pending(NOW)
    assert Notification.objects.get(event=first, recipient_kind="client").language == "en"
    assert Notification.objects.get(event=second, recipient_kind="client").language == "pt"


def test_messages_carry_the_change_and_the_clients_reference_but_never_their_name(
    office: Office,
) -> None:
    rfe = change(office.case, "rfe_sent", source="uscis")
    route_pending(NOW)
    staff = Notification.objects.get(event=rfe, channel="email", user=office.attorney.user)
    assert staff.message == {
        "key": "status_change",
        "params": {
            "receipt": office.case.receipt_number,
            "form_type": "I-485",
            "status": "rfe_sent",
            "category": "evidence_requested",
            "urgency": "action",
            "uscis_title": "Request for Additional Evidence Was Sent",
            "due_on": "",
            "case_url": f"/cases/{office.case.pk}/",
            "client_reference": "C-0001",
        },
    }
    client = Notification.objects.get(event=rfe, recipient_kind="client")
    params = client.message["params"]
    assert client.message["key"] == "status_change"
    assert params["firm_name"] == "Example Immigration Law"
    assert params["uscis_title"] == rfe.title_es  # the client reads Spanish
    assert set(params) == {
        "receipt",
        "form_type",
        "status",
        "category",
        "firm_name",
        "due_on",
        "uscis_title",
    }
    assert client.address == CLIENT_PHONE


def test_the_deadline_an_event_set_is_in_its_messages(office: Office) -> None:
    from casewatch.cases.models import Deadline

    rfe = change(office.case, "rfe_sent")
    Deadline.objects.create(
        firm=office.firm,
        case=office.case,
        event=rfe,
        kind="rfe_response",
        due_on=datetime(2026, 5, 27).date(),
        basis=datetime(2026, 2, 26).date(),
    )
    route_pending(NOW)
    assert {n.message["params"]["due_on"] for n in Notification.objects.filter(event=rfe)} == {
        "2026-05-27"
    }


# --- the client: consent, channel order, addresses -------------------------------------


def test_a_client_who_consented_to_nothing_gets_one_suppressed_notification(
    office: Office,
) -> None:
    silent = make_client(office.firm, reference="C-0002", consent=())
    case = another_case(office, 4, client=silent)
    approval = change(case, "approved")
    route_pending(NOW)
    (row,) = Notification.objects.filter(event=approval, recipient_kind="client")
    assert row.status == "suppressed" and row.channel == "whatsapp"
    assert row.address == "" and "no consent" in row.last_error
    assert row.next_attempt_at is None  # nothing for the dispatcher to do


def test_withdrawn_consent_counts_as_none(office: Office) -> None:
    give_consent(office.client, "whatsapp", granted=False)
    approval = change(office.case, "approved")
    route_pending(NOW)
    assert ("client", "sms") in heard(event=approval)
    assert ("client", "whatsapp") not in heard(event=approval)


def test_a_client_who_consented_to_sms_only_hears_by_sms(office: Office) -> None:
    texter = make_client(office.firm, reference="C-0003", consent=("sms",))
    approval = change(another_case(office, 5, client=texter), "approved")
    route_pending(NOW)
    (row,) = Notification.objects.filter(event=approval, recipient_kind="client")
    assert (row.channel, row.status, row.address) == ("sms", "pending", CLIENT_PHONE)


def test_the_clients_own_order_of_channels_is_respected(office: Office) -> None:
    plan(office.client, "email", "sms", "whatsapp")
    approval = change(office.case, "approved")
    route_pending(NOW)
    (row,) = Notification.objects.filter(event=approval, recipient_kind="client")
    assert (row.channel, row.address) == ("email", CLIENT_EMAIL)


def test_a_channel_without_an_address_is_skipped(office: Office) -> None:
    no_phone = make_client(office.firm, reference="C-0004", phone="")
    approval = change(another_case(office, 6, client=no_phone), "approved")
    route_pending(NOW)
    assert heard(event=approval, recipient_kind="client") == {("client", "email")}


def test_action_changes_go_on_two_channels_when_the_firm_asks(office: Office) -> None:
    MessagingPolicy.objects.create(firm=office.firm, action_on_two_channels=True)
    rfe = change(office.case, "rfe_sent")
    approval = change(another_case(office, 7), "approved")
    route_pending(NOW)
    assert heard(event=rfe, recipient_kind="client") == {("client", "whatsapp"), ("client", "sms")}
    assert heard(event=approval, recipient_kind="client") == {("client", "whatsapp")}


def test_a_case_without_a_client_tells_only_staff(office: Office) -> None:
    rfe = change(another_case(office, 8, client=None), "rfe_sent")
    route_pending(NOW)
    assert heard(event=rfe) == STAFF_AT_ONCE
    assert (
        Notification.objects.get(event=rfe, channel="email", user=office.attorney.user).message[
            "params"
        ]["client_reference"]
        == ""
    )


# --- quiet hours -------------------------------------------------------------------------


def test_client_messages_wait_out_quiet_hours_but_staff_action_alerts_do_not(
    office: Office,
) -> None:
    west = make_client(office.firm, reference="C-0005", time_zone="America/Los_Angeles")
    rfe = change(another_case(office, 9, client=west), "rfe_sent")
    late = datetime(2026, 3, 3, 7, 0, tzinfo=UTC)  # 23:00 in Los Angeles, 02:00 in New York
    route_pending(late)
    client = Notification.objects.get(event=rfe, recipient_kind="client")
    assert client.status == "held"
    assert client.next_attempt_at == datetime(2026, 3, 3, 16, 0, tzinfo=UTC)  # 08:00 PST
    staff = Notification.objects.filter(event=rfe, recipient_kind="staff")
    assert {n.status for n in staff if n.channel != "in_app"} == {"pending"}
    assert all(n.next_attempt_at == late for n in staff if n.channel != "in_app")


def test_a_client_without_a_zone_keeps_the_firms_quiet_hours(office: Office) -> None:
    approval = change(office.case, "approved")
    route_pending(datetime(2026, 3, 3, 2, 30, tzinfo=UTC))  # 21:30 in New York
    client = Notification.objects.get(event=approval, recipient_kind="client")
    assert client.status == "held"
    assert client.next_attempt_at == datetime(2026, 3, 3, 13, 0, tzinfo=UTC)  # 08:00 EST


def test_a_misspelled_client_zone_falls_back_to_the_firms(office: Office) -> None:
    office.firm.time_zone = "Europe/Madrid"
    office.firm.save()
    odd = make_client(office.firm, reference="C-0006", time_zone="Mars/Olympus_Mons")
    approval = change(another_case(office, 10, client=odd), "approved")
    route_pending(datetime(2026, 3, 2, 22, 0, tzinfo=UTC))  # 23:00 in Madrid, 17:00 in NY
    client = Notification.objects.get(event=approval, recipient_kind="client")
    assert client.status == "held"
    assert client.next_attempt_at == datetime(2026, 3, 3, 7, 0, tzinfo=UTC)  # 08:00 CET


def test_a_firm_with_quiet_hours_off_tells_clients_at_any_hour(office: Office) -> None:
    MessagingPolicy.objects.create(firm=office.firm, quiet_hours=False)
    approval = change(office.case, "approved")
    route_pending(datetime(2026, 3, 3, 7, 0, tzinfo=UTC))  # 02:00 in New York
    assert Notification.objects.get(event=approval, recipient_kind="client").status == "pending"


# --- the first status, archived cases, firm rules ----------------------------------------


def test_the_first_status_casewatch_saw_is_routed_without_a_notification(office: Office) -> None:
    first = change(office.case, "actively_reviewed", initial=True)
    report = route_pending(NOW)
    first.refresh_from_db()
    assert first.routed_at == NOW
    assert not Notification.objects.filter(event=first).exists()
    assert report.initial_events == 1 and report.status_events == 0
    (entry,) = AuditEntry.objects.filter(action="status_event.routed", object_id=str(first.pk))
    assert json.loads(entry.details_json)["initial"] is True


def test_changes_of_archived_cases_are_routed_like_any_other(office: Office) -> None:
    archived = another_case(office, 11, archived_at=NOW - timedelta(days=1))
    rfe = change(archived, "rfe_sent")
    route_pending(NOW)
    assert heard(event=rfe) == STAFF_AT_ONCE | CLIENT_ON_WHATSAPP


def test_a_firms_own_rule_wins_over_the_defaults(office: Office) -> None:
    RoutingRule.objects.create(
        firm=office.firm,
        position=1,
        category="evidence_requested",
        staff=["operations", office.admin.pk],
        staff_channels=["in_app"],
        tell_client=False,
    )
    # A later rule of the firm that would also match does not count: the first one wins.
    RoutingRule.objects.create(
        firm=office.firm, position=2, urgency="action", staff=["attorney"], tell_client=True
    )
    rfe = change(office.case, "rfe_sent")
    denial = change(another_case(office, 12), "denied")
    approval = change(another_case(office, 13), "approved")
    route_pending(NOW)
    assert heard(event=rfe) == {("olu", "in_app"), ("ada", "in_app")}
    assert heard(event=denial) == {("alma", "in_app")} | CLIENT_ON_WHATSAPP
    # What the firm's rules do not match keeps the defaults.
    assert heard(event=approval) == {("pablo", "in_app"), ("pablo", "email")} | CLIENT_ON_WHATSAPP


def test_another_firms_rules_change_nothing_here(office: Office) -> None:
    other = make_office("other")
    RoutingRule.objects.create(firm=other.firm, category="evidence_requested")  # records only
    rfe = change(office.case, "rfe_sent")
    route_pending(NOW)
    assert heard(event=rfe) == STAFF_AT_ONCE | CLIENT_ON_WHATSAPP


def test_a_firm_rule_with_a_typo_keeps_what_is_valid_and_never_stops_routing(
    office: Office, caplog: pytest.LogCaptureFixture
) -> None:
    row = RoutingRule.objects.create(
        firm=office.firm,
        category="evidence_requested",
        staff=["responsible_paralegal", "paralegals", True],
        staff_channels=["in_app", "pager"],
    )
    rule = firm_rule(row)
    assert rule.staff == ("responsible_paralegal",) and rule.staff_channels == ("in_app",)
    assert "paralegals" in caplog.text and "pager" in caplog.text
    rfe = change(office.case, "rfe_sent")
    route_pending(NOW)
    assert heard(event=rfe) == {("pablo", "in_app")}


def test_a_firm_rule_with_an_unknown_category_matches_nothing_rather_than_everything(
    office: Office,
) -> None:
    RoutingRule.objects.create(firm=office.firm, category="rfe", staff=["admin"])
    rfe = change(office.case, "rfe_sent")
    route_pending(NOW)
    assert heard(event=rfe) == STAFF_AT_ONCE | CLIENT_ON_WHATSAPP


def test_the_shipped_rules_are_checked_when_read() -> None:
    with pytest.raises(RoutingError, match=r"rule 1: category 'rfe'"):
        load_defaults({"rule": [{"category": "rfe"}], "follow_ups": {"card_mailed_statuses": []}})
    with pytest.raises(RoutingError, match="card_mailed_statuses"):
        load_defaults({"rule": [{}], "follow_ups": {"card_mailed_statuses": ["card_lost"]}})
    with pytest.raises(RoutingError, match="when_nobody"):
        load_defaults(
            {
                "rule": [{}],
                "when_nobody": ["responsible_attorney"],
                "follow_ups": {"card_mailed_statuses": ["card_mailed"]},
            }
        )


# --- webhooks ---------------------------------------------------------------------------


def test_the_firms_webhook_endpoints_get_the_changes_they_asked_for(office: Office) -> None:
    everything = WebhookEndpoint.objects.create(
        firm=office.firm, url="https://hooks.example.test/all", secret="s3cret"
    )
    approvals = WebhookEndpoint.objects.create(
        firm=office.firm,
        url="https://hooks.example.test/approvals",
        secret="s3cret",
        event_types=["approved"],
    )
    WebhookEndpoint.objects.create(
        firm=office.firm, url="https://hooks.example.test/off", secret="x", active=False
    )
    rfe = change(office.case, "rfe_sent")
    approval = change(another_case(office, 14), "approved")
    notice = change(another_case(office, 15), "name_updated")
    route_pending(NOW)
    hooks = Notification.objects.filter(channel="webhook")
    assert {(n.event_id, n.address) for n in hooks} == {
        (rfe.pk, everything.url),
        (approval.pk, everything.url),
        (approval.pk, approvals.url),
    }
    assert not Notification.objects.filter(event=notice).exists()


# --- operational events and reminders ----------------------------------------------------


def test_a_uscis_outage_reaches_each_firms_operations_lead_or_else_its_admins(
    office: Office,
) -> None:
    no_ops = make_office("no-ops", with_operations=False)
    outage = OperationalEvent.objects.create(
        kind="uscis_unreadable",
        occurred_at=NOW - timedelta(minutes=1),
        message="USCIS has been unreadable for 2 hours; last error: unavailable.",
        details={"unreadable_since": "2026-03-02T13:00:00+00:00", "minutes": 120},
    )
    report = route_pending(NOW)
    assert report.operational_events == 1
    assert heard(operational_event=outage, firm=office.firm) == {
        ("olu", "in_app"),
        ("olu", "email"),
    }
    assert heard(operational_event=outage, firm=no_ops.firm) == {
        ("ada", "in_app"),
        ("ada", "email"),
    }
    row = Notification.objects.filter(operational_event=outage).first()
    assert row is not None and row.kind == "uscis_outage"
    assert row.message["params"]["since"] == "2026-03-02T13:00:00+00:00"
    assert row.message["params"]["minutes"] == "120"


def test_an_event_for_one_firm_reaches_only_that_firm(office: Office) -> None:
    other = make_office("other")
    recovered = OperationalEvent.objects.create(
        firm=other.firm, kind="uscis_recovered", occurred_at=NOW, message="USCIS is back."
    )
    route_pending(NOW)
    assert heard(operational_event=recovered) == {("olu", "in_app"), ("olu", "email")}
    assert set(
        Notification.objects.filter(operational_event=recovered).values_list("firm", flat=True)
    ) == {other.firm.pk}


def test_a_pending_receipt_reminder_reaches_the_cases_paralegal(office: Office) -> None:
    waiting = another_case(office, 16, receipt_number=None)
    reminder = Reminder.objects.create(
        firm=office.firm, case=waiting, kind="receipt_pending", message="No receipt yet."
    )
    report = route_pending(NOW)
    assert report.reminders == 1
    rows = Notification.objects.filter(case=waiting, kind="receipt_pending")
    assert {(n.user_id, n.channel) for n in rows} == {
        (office.paralegal.user_id, "in_app"),
        (office.paralegal.user_id, "email"),
    }
    reminder.refresh_from_db()
    assert reminder.routed_at == NOW


# --- once and only once ------------------------------------------------------------------


def test_routing_twice_creates_nothing_new(office: Office) -> None:
    change(office.case, "rfe_sent")
    change(another_case(office, 17), "approved")
    first = route_pending(NOW)
    count = Notification.objects.count()
    second = route_pending(NOW + timedelta(minutes=1))
    assert first.notifications == count > 0
    assert second.routed == 0 and Notification.objects.count() == count


def test_an_event_routed_again_after_a_reset_creates_nothing_new(office: Office) -> None:
    """Even if routed_at were cleared (a restore, an operator's mistake), keys hold."""
    rfe = change(office.case, "rfe_sent")
    route_pending(NOW)
    keys = set(Notification.objects.values_list("idempotency_key", flat=True))
    StatusEvent.objects.filter(pk=rfe.pk).update(routed_at=None)
    route_pending(NOW + timedelta(hours=1))
    assert set(Notification.objects.values_list("idempotency_key", flat=True)) == keys
    assert all(re.fullmatch(r"[0-9a-f]{64}", key) for key in keys)
    assert (
        idempotency_key("status_event", rfe.pk, f"user:{office.attorney.user_id}", "email") in keys
    )


def test_every_routed_event_has_one_audit_entry_without_personal_data(office: Office) -> None:
    rfe = change(office.case, "rfe_sent")
    route_pending(NOW)
    (entry,) = AuditEntry.objects.filter(action="status_event.routed", object_id=str(rfe.pk))
    details = json.loads(entry.details_json)
    assert details["notifications"] == {"email": 2, "in_app": 2, "whatsapp": 1}
    assert details["rule"] == "routing.toml rule 7"
    assert CLIENT_NAME not in entry.details_json and "5550123" not in entry.details_json
    assert verify().ok


def test_the_limit_bounds_one_run_and_the_rest_waits_for_the_next(office: Office) -> None:
    for n in range(5):
        change(another_case(office, 20 + n), "approved")
    assert route_pending(NOW, limit=3).status_events == 3
    assert route_pending(NOW, limit=3).status_events == 2


def test_no_message_ever_holds_a_clients_name_phone_or_email(office: Office) -> None:
    MessagingPolicy.objects.create(firm=office.firm, action_on_two_channels=True)
    contact(office.attorney, "in_app", "email", "sms", phone="+15555550177")
    WebhookEndpoint.objects.create(firm=office.firm, url="https://hooks.example.test", secret="s")
    statuses = ["rfe_sent", "approved", "card_mailed", "denied", "unknown", "biometrics_scheduled"]
    for n, status in enumerate(statuses):
        change(another_case(office, 30 + n), status)
    OperationalEvent.objects.create(kind="uscis_unreadable", occurred_at=NOW, message="down")
    Reminder.objects.create(
        firm=office.firm,
        case=another_case(office, 40, receipt_number=None),
        kind="receipt_pending",
        message="x",
    )
    route_pending(NOW)
    messages = [json.dumps(m) for m in Notification.objects.values_list("message", flat=True)]
    assert len(messages) > 20
    for text in messages:
        assert CLIENT_NAME not in text
        assert "5555550123" not in text and "555-0123" not in text
        assert CLIENT_EMAIL not in text and "example.test" not in text


# --- two routers at once -----------------------------------------------------------------


def in_threads(work: Callable[[], object], count: int) -> None:
    errors: list[BaseException] = []
    start = threading.Barrier(count)

    def run() -> None:
        try:
            start.wait()
            work()
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    if errors:
        raise errors[0]


def busy_firm() -> list[StatusEvent]:
    """A firm with a queue of changes of every sort, and an outage for every firm."""
    office = make_office()
    events = [change(another_case(office, 50 + n), "rfe_sent") for n in range(12)]
    events += [change(another_case(office, 70 + n), "approved") for n in range(12)]
    events += [
        change(another_case(office, 90 + n), "case_received", initial=True) for n in range(6)
    ]
    OperationalEvent.objects.create(kind="uscis_unreadable", occurred_at=NOW, message="down")
    return events


def assert_each_routed_once(events: list[StatusEvent]) -> None:
    per_event = Counter(Notification.objects.values_list("event_id", flat=True))
    assert all(per_event[e.pk] == 5 for e in events[:12])  # 4 staff + 1 client
    assert all(per_event[e.pk] == 3 for e in events[12:24])  # 2 staff + 1 client
    assert all(per_event[e.pk] == 0 for e in events[24:])  # first statuses
    assert Notification.objects.filter(operational_event__isnull=False).count() == 2
    routed = Counter(
        AuditEntry.objects.filter(action="status_event.routed").values_list("object_id", flat=True)
    )
    assert set(routed.values()) == {1} and len(routed) == len(events)
    assert StatusEvent.objects.filter(routed_at__isnull=True).count() == 0
    assert verify().ok


def test_a_router_working_from_a_list_another_has_routed_routes_nothing_again() -> None:
    """The race the guarded claim closes: both read the queue, one routes it first."""
    events = busy_firm()
    first, second = pending_batch(), pending_batch()
    assert first == second and len(first.status_events) == 24
    done = route_batch(first, NOW)
    late = route_batch(second, NOW + timedelta(seconds=1))
    assert done.routed == len(events) + 1 and late.routed == 0
    assert late.notifications == 0
    assert_each_routed_once(events)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_routers_at_once_create_each_notification_once() -> None:
    """Real threads on PostgreSQL (the PG run). SQLite's in-memory test database cannot be
    written by two threads at once; there the routers take turns on the same stale list,
    which is the same race, settled by the same claim."""
    events = busy_firm()
    reports: list[RouteReport] = []
    if connection.vendor == "postgresql":

        def route() -> None:
            reports.append(route_pending(NOW))

        in_threads(route, 2)
    else:
        batches = [pending_batch(), pending_batch()]
        reports += [route_batch(batch, NOW) for batch in batches]
    assert sum(r.routed for r in reports) == len(events) + 1
    assert_each_routed_once(events)


def test_messages_of_a_change_read_from_the_sandbox_say_it_is_test_data(office: Office) -> None:
    sandbox = change(office.case, "rfe_sent", source="sandbox")
    real = change(another_case(office, 21), "rfe_sent", source="uscis")
    route_pending(NOW)
    told = Notification.objects.filter(event=sandbox).exclude(channel="webhook")
    assert {n.recipient_kind for n in told} == {"staff", "client"}
    assert all(n.message["params"]["test_data"] == "1" for n in told)
    assert not any("test_data" in n.message["params"] for n in real.notifications.all())
    client = told.get(recipient_kind="client")
    assert (
        "Datos de prueba: no vienen de USCIS"
        in render(client.message, client.language, audience="client").text
    )
