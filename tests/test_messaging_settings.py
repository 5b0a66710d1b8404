"""Messaging settings: a firm's admin sets quiet hours, follow-ups and the firm's own routing
rules; only rules the router reads exactly as written are saved; every change is audited
without personal data; nobody else may look, and another firm's rule is a 404."""

from __future__ import annotations

import json
from datetime import time
from typing import Any

import pytest
from django.test import Client as Browser

from casewatch.audit.chain import verify
from casewatch.audit.models import AuditEntry
from casewatch.notify.models import MessagingPolicy, RoutingRule
from casewatch.notify.route import route_pending
from casewatch.notify.rules import firm_rule, rules_for
from tests.environment import sign_in
from tests.routing_world import NOW, Office, change, heard, make_office

pytestmark = pytest.mark.django_db

PAGE = "/settings/messaging/"
ADD = "/settings/messaging/rules/new/"


@pytest.fixture
def office() -> Office:
    return make_office()


def _browser(office: Office, who: str = "admin") -> Browser:
    browser = Browser(headers={"accept-language": "en"})
    sign_in(browser, getattr(office, who).user)
    return browser


def _policy(**fields: Any) -> dict[str, Any]:
    values = {
        "quiet_hours": "on",
        "quiet_from": "21:00",
        "quiet_until": "08:00",
        "escalate_after_hours": "4",
        "card_delivery_days": "10",
        "digest_hour": "7",
        **fields,
    }
    return {f"policy-{k}": v for k, v in values.items() if v is not None}


def _rule(**fields: Any) -> dict[str, Any]:
    values: dict[str, Any] = {"kind": "status_change", **fields}
    return {k: v for k, v in values.items() if v is not None}


def _entries(prefix: str) -> list[AuditEntry]:
    return list(AuditEntry.objects.filter(action__startswith=prefix).order_by("seq"))


# --- who may ----------------------------------------------------------------------------


def test_admins_see_a_messaging_link_and_others_neither_the_link_nor_the_page(
    office: Office,
) -> None:
    page = _browser(office).get("/account/").content.decode()
    assert f'<a href="{PAGE}">Messaging</a>' in page
    for who in ("attorney", "paralegal", "operations"):
        browser = _browser(office, who)
        assert f'href="{PAGE}"' not in browser.get("/account/").content.decode()
        assert browser.get(PAGE).status_code == 403
        assert browser.post(PAGE, _policy(quiet_hours=None)).status_code == 403
        assert browser.post(ADD, _rule(category="approved")).status_code == 403
    assert not MessagingPolicy.objects.exists()
    assert not RoutingRule.objects.exists()


def test_another_firms_rule_is_a_404_to_look_at_change_move_or_delete(office: Office) -> None:
    other = make_office("other")
    theirs = RoutingRule.objects.create(firm=other.firm, position=1, category="approved")
    browser = _browser(office)
    base = f"/settings/messaging/rules/{theirs.pk}/"
    assert browser.get(base).status_code == 404
    assert browser.post(base, _rule(category="denied")).status_code == 404
    assert browser.post(base + "move/", {"direction": "up"}).status_code == 404
    assert browser.post(base + "delete/").status_code == 404
    theirs.refresh_from_db()
    assert theirs.category == "approved"


# --- the policy -------------------------------------------------------------------------


def test_the_policy_is_made_with_the_defaults_on_first_look(office: Office) -> None:
    response = _browser(office).get(PAGE)
    assert response.status_code == 200
    policy = MessagingPolicy.objects.get(firm=office.firm)
    assert (policy.quiet_hours, policy.quiet_from, policy.quiet_until) == (
        True,
        time(21),
        time(8),
    )
    html = response.content.decode()
    assert 'value="21:00"' in html and 'name="policy-digest_hour"' in html


def test_an_admin_changes_the_policy_and_it_is_audited_from_and_to(office: Office) -> None:
    browser = _browser(office)
    browser.get(PAGE)
    response = browser.post(
        PAGE,
        _policy(
            quiet_hours=None,
            quiet_from="22:00",
            escalate_after_hours="0",
            card_delivery_days="14",
            action_on_two_channels="on",
            digest_hour="18",
        ),
    )
    assert response.status_code == 302
    policy = MessagingPolicy.objects.get(firm=office.firm)
    assert not policy.quiet_hours and policy.quiet_from == time(22)
    assert policy.escalate_after_hours == 0 and policy.card_delivery_days == 14
    assert policy.action_on_two_channels and policy.digest_hour == 18
    [entry] = _entries("messaging_policy.")
    assert entry.actor == f"user:{office.admin.user_id}"
    assert entry.details["quiet_hours"] == {"from": True, "to": False}
    assert entry.details["quiet_from"] == {"from": "21:00", "to": "22:00"}
    assert set(entry.details) == {
        "quiet_hours",
        "quiet_from",
        "escalate_after_hours",
        "card_delivery_days",
        "action_on_two_channels",
        "digest_hour",
    }
    assert verify().ok


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        ({"quiet_from": "25:00"}, "quiet_from", "Enter a valid time"),
        ({"quiet_from": "07:00", "quiet_until": "07:00"}, "quiet_until", "07:00 was given twice"),
        ({"digest_hour": "24"}, "digest_hour", "less than or equal to 23"),
        ({"escalate_after_hours": "-1"}, "escalate_after_hours", "greater than or equal to 0"),
        ({"card_delivery_days": "soon"}, "card_delivery_days", "Enter a whole number"),
    ],
)
def test_an_invalid_policy_keeps_the_form_with_the_error_where_it_is(
    office: Office, fields: dict[str, str], field: str, words: str
) -> None:
    browser = _browser(office)
    response = browser.post(PAGE, _policy(**fields))
    assert response.status_code == 400
    form = response.context["form"]
    assert any(words in error for error in form.errors[field]), form.errors
    html = response.content.decode()
    for value in fields.values():
        assert f'value="{value}"' in html  # what was typed is kept
    assert not _entries("messaging_policy.")
    assert MessagingPolicy.objects.get(firm=office.firm).digest_hour == 7


# --- rules ------------------------------------------------------------------------------


def test_the_defaults_are_shown_read_only_beside_the_firms_own_rules(office: Office) -> None:
    html = _browser(office).get(PAGE).content.decode()
    assert "The firm has no rules of its own" in html
    assert "Default rules" in html
    assert "The case&#x27;s responsible attorney" in html
    assert "Recorded only: nobody is told" in html  # administrative notices
    assert "/settings/messaging/rules/new/" in html


def test_an_admin_adds_a_rule_that_the_router_then_follows(office: Office) -> None:
    browser = _browser(office)
    response = browser.post(
        ADD,
        _rule(
            category="evidence_requested",
            staff=["operations", str(office.admin.pk)],
            staff_channels=["in_app"],
            escalate_1="responsible_attorney",
            escalate_2="admin",
        ),
    )
    assert response.status_code == 302
    row = RoutingRule.objects.get(firm=office.firm)
    assert row.staff == ["operations", office.admin.pk]
    assert row.escalate_to == ["responsible_attorney", "admin"]
    assert not row.tell_client and row.kind == "status_change" and row.position == 1
    assert firm_rule(row) == rules_for(office.firm.pk)[0]
    # End to end: the RFE now reaches the operations lead and the admin, and not the client.
    rfe = change(office.case, "rfe_sent")
    route_pending(NOW)
    assert heard(event=rfe) == {("olu", "in_app"), ("ada", "in_app")}
    [entry] = _entries("routing_rule.")
    assert entry.action == "routing_rule.created" and entry.object_id == str(row.pk)
    assert entry.details["staff"] == ["operations", office.admin.pk]
    text = json.dumps(entry.details)
    assert "ada" not in text.lower() and "@" not in text


def test_an_admin_edits_moves_and_deletes_rules_each_audited(office: Office) -> None:
    browser = _browser(office)
    browser.post(ADD, _rule(category="approved", staff=["admin"], staff_channels=["in_app"]))
    browser.post(ADD, _rule(urgency="action", staff=["attorney"], tell_client="on"))
    first, second = RoutingRule.objects.filter(firm=office.firm).order_by("position")
    edit = browser.get(f"/settings/messaging/rules/{first.pk}/").content.decode()
    assert 'value="approved" selected' in edit
    response = browser.post(
        f"/settings/messaging/rules/{first.pk}/",
        _rule(category="approved", staff=["paralegal"], staff_channels=["in_app", "email"]),
    )
    assert response.status_code == 302
    first.refresh_from_db()
    assert first.staff == ["paralegal"] and first.staff_channels == ["in_app", "email"]
    browser.post(f"/settings/messaging/rules/{second.pk}/move/", {"direction": "up"})
    assert list(
        RoutingRule.objects.filter(firm=office.firm)
        .order_by("position")
        .values_list("pk", flat=True)
    ) == [second.pk, first.pk]
    assert [r.urgency for r in rules_for(office.firm.pk)[:2]] == ["action", ""]
    confirm = browser.get(f"/settings/messaging/rules/{first.pk}/delete/")
    assert confirm.status_code == 200 and RoutingRule.objects.filter(pk=first.pk).exists()
    browser.post(f"/settings/messaging/rules/{first.pk}/delete/")
    assert list(RoutingRule.objects.filter(firm=office.firm)) == [second]
    assert [e.action for e in _entries("routing_rule.")] == [
        "routing_rule.created",
        "routing_rule.created",
        "routing_rule.changed",
        "routing_rule.moved",
        "routing_rule.deleted",
    ]
    changed = _entries("routing_rule.changed")[0].details
    assert changed["from"]["staff"] == ["admin"] and changed["to"]["staff"] == ["paralegal"]
    assert verify().ok


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        # Not a category the catalog knows: the router would match nothing.
        ({"category": "rfe"}, "category", "Select a valid choice"),
        ({"staff_channels": ["pager"]}, "staff_channels", "Select a valid choice"),
        ({"staff": ["paralegals"]}, "staff", "Select a valid choice"),
        # Clients hear only about status changes; rules.py would turn it off.
        ({"kind": "uscis_outage", "tell_client": "on"}, "tell_client", "Only status changes"),
        ({"kind": "uscis_outage", "category": "approved"}, "category", "Only status changes"),
        ({"escalate_2": "admin"}, "escalate_1", "in order: level 1 is empty"),
        ({"escalate_1": "admin", "escalate_2": "admin"}, "escalate_1", "named once"),
    ],
)
def test_a_rule_the_router_would_read_otherwise_is_refused_and_the_input_kept(
    office: Office, fields: dict[str, Any], field: str, words: str
) -> None:
    response = _browser(office).post(ADD, _rule(**{"staff": ["responsible_attorney"], **fields}))
    assert response.status_code == 400
    errors = response.context["form"].errors
    assert any(words in error for error in errors[field]), errors
    html = response.content.decode()
    if "staff" not in fields:
        assert 'value="responsible_attorney" id="id_staff_0" checked' in html
    assert not RoutingRule.objects.exists() and not _entries("routing_rule.")


def test_a_member_of_another_firm_cannot_be_named_in_a_rule(office: Office) -> None:
    other = make_office("other")
    response = _browser(office).post(ADD, _rule(staff=[str(other.admin.pk)]))
    assert response.status_code == 400
    assert "Select a valid choice" in str(response.context["form"].errors["staff"])


# --- the notice that quiet hours are off ---------------------------------------------------


def test_the_dashboard_and_outbox_say_when_quiet_hours_are_off(office: Office) -> None:
    notice = "Quiet hours are off for this firm: clients may be messaged at any hour."
    browser = _browser(office, "attorney")
    MessagingPolicy.objects.create(firm=office.firm, quiet_hours=True)
    assert notice not in browser.get("/outbox/").content.decode()
    MessagingPolicy.objects.filter(firm=office.firm).update(quiet_hours=False)
    assert notice in browser.get("/outbox/").content.decode()
    assert notice in browser.get("/").content.decode()
    assert notice not in browser.get("/cases/").content.decode()
    html = _browser(office, "paralegal").get("/outbox/").content.decode()  # reads Spanish
    assert "El horario de descanso está desactivado" in html


def test_the_outbox_marks_notifications_of_sandbox_cases(office: Office) -> None:
    office.case.source = "sandbox"
    office.case.save(update_fields=["source"])
    change(office.case, "rfe_sent")
    route_pending(NOW)
    html = _browser(office, "attorney").get("/outbox/").content.decode()
    assert "sandbox data, not from USCIS" in html
