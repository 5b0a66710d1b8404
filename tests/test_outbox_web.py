"""The outbox page, one notification's delivery, a case's notifications and each member's
in-app inbox: always within the member's firm, never showing a client's phone or e-mail."""

from __future__ import annotations

import itertools
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client as Browser
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django.utils.html import escape

from casewatch.accounts.models import Firm, Role
from casewatch.cases.models import Case, Client
from casewatch.notify.messages import explanation
from casewatch.notify.models import (
    AttemptOutcome,
    DeliveryAttempt,
    DeliveryReceipt,
    Notification,
    NotificationStatus,
)
from casewatch.notify.portal_links import issue_link, record_visit
from tests.environment import sign_in
from tests.test_i18n import SPANISH, _english_left
from tests.test_web import _member

pytestmark = pytest.mark.django_db

PHONE = "+15550100142"
_keys = itertools.count(1)


@pytest.fixture
def firm() -> Firm:
    return Firm.objects.create(name="Example Immigration Law", slug="example")


@pytest.fixture
def paula(firm: Firm) -> User:
    user = _member(firm, "paula", Role.PARALEGAL)
    user.first_name, user.last_name = "Paula", "Prueba"
    user.save()
    return user


def _browser(user: User) -> Browser:
    browser = Browser()
    sign_in(browser, user)
    return browser


@pytest.fixture
def client(firm: Firm) -> Client:
    return Client.objects.create(
        firm=firm,
        personal={"name": "Test Client", "phone": PHONE, "email": "test.client@example.test"},
        language="es",
    )


@pytest.fixture
def case(firm: Firm, client: Client) -> Case:
    return Case.objects.create(
        firm=firm, receipt_number="EAC2490012345", form_type="I-485", client=client
    )


def _notification(case: Case | None, **fields: Any) -> Notification:
    firm_id = fields.pop("firm_id", case.firm_id if case else None)
    values: dict[str, Any] = {
        "firm_id": firm_id,
        "case": case,
        "kind": "status_change",
        "recipient_kind": "client",
        "channel": "whatsapp",
        "language": "es",
        "message": {
            "key": "status_change",
            "params": {
                "receipt": case.receipt_number if case else "",
                "status": "interview_scheduled",
                "category": "interview_scheduled",
                "uscis_title": "Interview Was Scheduled",
            },
        },
        "status": NotificationStatus.DELIVERED,
        "idempotency_key": f"test-{next(_keys)}",
        "created_at": timezone.now(),
    }
    values.update(fields)
    if values["recipient_kind"] == "client" and "client" not in fields and case is not None:
        values["client"] = case.client
        values.setdefault("address", PHONE)
    return Notification.objects.create(**values)


def _rows(page: str) -> list[str]:
    return re.findall(r'href="/outbox/(\d+)/"', page)


# --- The outbox ----------------------------------------------------------------------


def test_the_outbox_lists_the_firms_notifications_newest_first_without_any_address(
    firm: Firm, paula: User, case: Case
) -> None:
    now = timezone.now()
    older = _notification(case, created_at=now - timedelta(hours=2), provider_message_id="wamid.A1")
    newer = _notification(
        case,
        recipient_kind="staff",
        user=paula,
        channel="in_app",
        language="en",
        created_at=now - timedelta(hours=1),
    )
    other_firm = Firm.objects.create(name="Other Firm", slug="other")
    theirs = _notification(None, firm_id=other_firm.pk)
    page = _browser(paula).get("/outbox/").content.decode()
    assert _rows(page) == [str(newer.pk), str(older.pk)]
    assert str(theirs.pk) not in _rows(page)
    assert "Paula Prueba" in page and "client by WhatsApp" in page
    assert "wamid.A1" in page and "Delivered" in page and "Spanish" in page
    assert PHONE not in page and "5550100142" not in page and "test.client@" not in page
    assert "Test Client" not in page  # a list says "client", never who


def test_the_outbox_filters_by_status_channel_recipient_and_receipt(
    firm: Firm, paula: User, case: Case
) -> None:
    other_case = Case.objects.create(firm=firm, receipt_number="LIN2490054321")
    failed_sms = _notification(case, channel="sms", status=NotificationStatus.FAILED)
    held = _notification(case, status=NotificationStatus.HELD)
    staff = _notification(
        other_case, recipient_kind="staff", user=paula, channel="email", language="en"
    )
    browser = _browser(paula)
    expectations = [
        ({"status": "failed"}, [failed_sms]),
        ({"status": "held"}, [held]),
        ({"channel": "sms"}, [failed_sms]),
        ({"channel": "email"}, [staff]),
        ({"recipient": "staff"}, [staff]),
        ({"recipient": "client"}, [held, failed_sms]),
        ({"case": "lin-24-900-54321"}, [staff]),
        ({"case": "EAC2490012345", "status": "failed"}, [failed_sms]),
        ({"status": "no-such-status"}, [staff, held, failed_sms]),
    ]
    for query, expected in expectations:
        page = browser.get("/outbox/", query).content.decode()
        assert _rows(page) == [str(n.pk) for n in expected], query


def test_the_outbox_shows_a_page_at_a_time_like_the_case_list(
    firm: Firm, paula: User, case: Case
) -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    Notification.objects.bulk_create(
        Notification(
            firm=firm,
            case=case,
            kind="status_change",
            recipient_kind="client",
            channel="sms",
            status=NotificationStatus.SENT,
            idempotency_key=f"page-{n}",
            created_at=start + timedelta(minutes=n),
        )
        for n in range(120)
    )
    browser = _browser(paula)
    first = browser.get("/outbox/").content.decode()
    assert len(_rows(first)) == 50
    assert "Notifications 1–50 of 120" in first and "Page 1 of 3" in first
    last = browser.get("/outbox/", {"channel": "sms", "page": "3"}).content.decode()
    assert len(_rows(last)) == 20 and "Notifications 101–120 of 120" in last
    assert 'rel="next"' not in last and "channel=sms&amp;page=2" in last


def test_a_notifications_page_shows_its_attempts_and_receipts_in_order(
    firm: Firm, paula: User, case: Case
) -> None:
    now = timezone.now()
    notification = _notification(
        case, channel="sms", provider_message_id="SM0123", attempts=2, status="delivered"
    )
    DeliveryAttempt.objects.create(
        notification=notification,
        started_at=now - timedelta(minutes=5),
        duration_ms=412,
        outcome=AttemptOutcome.TRANSIENT,
        http_status=503,
        error_code="30003",
        response='{"code": 30003, "message": "Unreachable destination handset"}',
    )
    DeliveryAttempt.objects.create(
        notification=notification,
        started_at=now - timedelta(minutes=1),
        duration_ms=87,
        outcome=AttemptOutcome.SENT,
        provider_message_id="SM0123",
        http_status=201,
    )
    # The provider's "delivered" overtook its "sent": the page shows them as they came.
    for status, minutes in (("delivered", 0), ("sent", 1)):
        DeliveryReceipt.objects.create(
            notification=notification,
            channel="sms",
            provider_message_id="SM0123",
            status=status,
            provider_timestamp=now - timedelta(seconds=30 - minutes * 10),
            received_at=now - timedelta(seconds=20 - minutes * 10),
        )
    page = _browser(paula).get(f"/outbox/{notification.pk}/").content.decode()
    assert page.index("412 ms") < page.index("87 ms")
    assert "Failed; will retry" in page and "Accepted by the provider" in page
    assert "30003" in page and "Unreachable destination handset" in page and "503" in page
    assert page.index("<code>delivered</code>") < page.index("<code>sent</code>")
    assert "… 0142" in page and PHONE not in page
    other = Firm.objects.create(name="Other Firm", slug="other")
    theirs = _notification(None, firm_id=other.pk)
    assert _browser(paula).get(f"/outbox/{theirs.pk}/").status_code == 404


def test_a_notifications_page_shows_the_message_as_the_client_read_it(
    firm: Firm, paula: User, case: Case
) -> None:
    notification = _notification(case, language="es")
    page = _browser(paula).get(f"/outbox/{notification.pk}/").content.decode()
    meaning = explanation("interview_scheduled", "interview_scheduled", "es")
    assert 'class="message-text" lang="es"' in page and "EAC2490012345" in page
    assert escape(meaning.happened) in page


def test_the_case_page_lists_the_cases_notifications(firm: Firm, paula: User, case: Case) -> None:
    mine = _notification(case, channel="email", status=NotificationStatus.SUPPRESSED)
    other_case = Case.objects.create(firm=firm, receipt_number="LIN2490054321")
    elsewhere = _notification(other_case)
    page = _browser(paula).get(f"/cases/{case.pk}/").content.decode()
    assert "Notifications" in page and f'href="/outbox/{mine.pk}/"' in page
    assert f'href="/outbox/{elsewhere.pk}/"' not in page
    assert "Not sent: no consent" in page and "client by E-mail" in page
    assert f'href="/clients/{case.client_id}/contact/"' in page


def test_the_outbox_header_counts_portal_visits_and_messages_read_by_clients(
    firm: Firm, paula: User, case: Case, client: Client
) -> None:
    now = timezone.now()
    link, _token = issue_link(client, by_user_id=paula.pk, at=now - timedelta(days=40))
    record_visit(link, at=now - timedelta(days=35))  # too long ago to count
    record_visit(link, at=now - timedelta(days=2))
    record_visit(link, at=now - timedelta(hours=1))
    _notification(case, status=NotificationStatus.READ, read_at=now - timedelta(days=1))
    _notification(case, status=NotificationStatus.READ, read_at=now - timedelta(days=45))
    _notification(
        case, recipient_kind="staff", user=paula, channel="in_app", status="read", read_at=now
    )  # staff reading their alerts is not a client reading
    page = _browser(paula).get("/outbox/").content.decode()
    assert "2</strong> client portal visits in the last 30 days" in page
    assert "1</strong> message read by a client in the last 30 days" in page


def test_front_desk_may_look_at_the_outbox(firm: Firm, case: Case) -> None:
    notification = _notification(case)
    desk = _browser(_member(firm, "frank", Role.FRONT_DESK))
    assert desk.get("/outbox/").status_code == 200
    assert desk.get(f"/outbox/{notification.pk}/").status_code == 200


# --- The inbox -------------------------------------------------------------------------


def _alert(case: Case, user: User, **fields: Any) -> Notification:
    values: dict[str, Any] = {
        "recipient_kind": "staff",
        "user": user,
        "channel": "in_app",
        "language": "en",
        "status": NotificationStatus.DELIVERED,
    }
    return _notification(case, **{**values, **fields})


def test_opening_an_alert_marks_it_read_and_the_badge_count_drops(
    firm: Firm, paula: User, case: Case
) -> None:
    first = _alert(case, paula)
    _alert(case, paula)
    _alert(case, paula, status=NotificationStatus.READ, read_at=timezone.now())
    _alert(case, paula, channel="email")  # not in the app
    browser = _browser(paula)
    header = browser.get("/cases/").content.decode()
    assert re.search(r'href="/inbox/">Inbox <span class="pill"[^>]*>2</span>', header)
    inbox = browser.get("/inbox/").content.decode()
    assert inbox.count('class="unread"') == 2
    opened = browser.get(f"/inbox/{first.pk}/")
    assert opened.status_code == 200 and "EAC2490012345" in opened.content.decode()
    first.refresh_from_db()
    assert first.status == NotificationStatus.READ and first.read_at is not None
    header = browser.get("/cases/").content.decode()
    assert re.search(r'href="/inbox/">Inbox <span class="pill"[^>]*>1</span>', header)
    read_at = first.read_at
    browser.get(f"/inbox/{first.pk}/")
    first.refresh_from_db()
    assert first.read_at == read_at  # opened again: read once, when first opened


def test_the_inbox_renders_the_alert_in_the_members_words(
    firm: Firm, paula: User, case: Case
) -> None:
    alert = _alert(case, paula)
    page = _browser(paula).get(f"/inbox/{alert.pk}/").content.decode()
    assert "EAC2490012345" in page and "Interview Was Scheduled" in page


def test_another_members_alert_is_not_found_and_stays_unread(
    firm: Firm, paula: User, case: Case
) -> None:
    olga = _member(firm, "olga", Role.ADMIN)
    theirs = _alert(case, olga)
    assert _browser(paula).get(f"/inbox/{theirs.pk}/").status_code == 404
    assert f"/inbox/{theirs.pk}/" not in _browser(paula).get("/inbox/").content.decode()
    theirs.refresh_from_db()
    assert theirs.status == NotificationStatus.DELIVERED


def test_the_badge_is_one_count_query(firm: Firm, paula: User, case: Case) -> None:
    _alert(case, paula)
    browser = _browser(paula)
    with CaptureQueriesContext(connection) as queries:
        browser.get("/deadlines/")
    touching = [q["sql"] for q in queries if "notify_notification" in q["sql"]]
    assert len(touching) == 1 and "COUNT(" in touching[0].upper()


def test_front_desk_opens_their_own_alerts(firm: Firm, case: Case) -> None:
    frank = _member(firm, "frank", Role.FRONT_DESK)
    alert = _alert(case, frank)
    assert _browser(frank).get(f"/inbox/{alert.pk}/").status_code == 200
    alert.refresh_from_db()
    assert alert.status == NotificationStatus.READ


# --- In Spanish --------------------------------------------------------------------------


def test_the_spanish_outbox_detail_and_inbox_have_no_english_left(
    firm: Firm, paula: User, case: Case
) -> None:
    sent = _notification(case, provider_message_id="wamid.X")
    DeliveryAttempt.objects.create(
        notification=sent,
        started_at=timezone.now(),
        duration_ms=90,
        outcome=AttemptOutcome.SENT,
        provider_message_id="wamid.X",
        http_status=200,
    )
    alert = _alert(case, paula)
    browser = _browser(paula)
    for url in (
        "/outbox/",
        "/outbox/?status=read",
        f"/outbox/{sent.pk}/",
        "/inbox/",
        f"/inbox/{alert.pk}/",
        f"/cases/{case.pk}/",
    ):
        html = browser.get(url, headers={"accept-language": SPANISH}).content.decode()
        assert _english_left(html) == [], url
