"""Every page and every e-mail shows what people and USCIS wrote as text, never as markup.

A client named <script>alert(1)</script>, a note, comment, tag, saved view, staff name
and firm name full of HTML, and USCIS texts carrying script, on every page that shows
them: the markup never reaches the browser as markup, and the words still show.
"""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core import mail
from django.core.mail import EmailMultiAlternatives, get_connection
from django.test import Client as Browser
from django.utils import timezone

from casewatch.accounts.models import Firm, Membership, Role
from casewatch.cases.follow_ups import comment
from casewatch.cases.history import record_outcome
from casewatch.cases.models import Case, Client, SavedView, StatusEvent
from casewatch.notify.channels.base import Outgoing
from casewatch.notify.channels.email import EmailTransport, html_from_text
from casewatch.notify.messages import render
from casewatch.notify.models import InboundMessage, Notification, NotificationStatus
from casewatch.notify.portal_links import issue_link
from casewatch.uscis.source import CaseStatus, Found
from tests.environment import sign_in

pytestmark = pytest.mark.django_db

SCRIPT = "<script>alert(1)</script>"
IMG = '"><img src=x onerror=alert(2)>'
BOLD = "<b>urgent</b>"
USCIS_SCRIPT = "<script>alert(3)</script>"
VIEW = "<svg onload=alert(4)>mine"
STAFF = "<i>Paula</i>"
FIRM = "Example <u>Law</u>"
PHONE = "+15550100123"

# Raw markup that must never reach a page: each is a piece of the values above.
RAW = ("<script>alert(", "<img src=x", "<b>urgent", "<svg onload", "<i>Paula", "<u>Law")

RFE = (
    "On March 2, 2026, we sent a request for evidence for your Form I-485, Receipt Number "
    "EAC2490012345. The request for evidence explains what we need from you. " + USCIS_SCRIPT
)


def _shown(text: str) -> str:
    """How a value looks in HTML when shown as text (Django's escaping)."""
    return html.escape(text, quote=True)


class _ActiveMarkup(HTMLParser):
    """What in a page could run: event handlers, javascript: links, scripts that alert."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._in_script = tag == "script"
        for name, value in attrs:
            if name.startswith("on"):
                self.found.append(f"<{tag} {name}=...>")
            if name in ("href", "src", "action", "formaction") and (
                value or ""
            ).strip().lower().startswith("javascript:"):
                self.found.append(f"<{tag} {name}=javascript:...>")

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and "alert" in data:
            self.found.append(f"<script>{data[:40]}")


def active_markup(page: str) -> list[str]:
    """Every piece of the page a browser would run that no casewatch template wrote."""
    parser = _ActiveMarkup()
    parser.feed(page)
    parser.close()
    return parser.found


def _assert_no_markup_from_data(page: str, where: str) -> None:
    for raw in RAW:
        assert raw not in page, f"{where}: {raw!r} reached the page as markup"
    assert active_markup(page) == [], where


@pytest.fixture
def world() -> dict[str, Any]:
    """A firm whose every text is hostile: client, notes, tags, comment, view, USCIS."""
    firm = Firm.objects.create(name=FIRM, slug="example")
    user = User.objects.create_user(username="paula", first_name=STAFF, last_name="Test")
    member = Membership.objects.create(firm=firm, user=user, role=Role.ATTORNEY)
    client = Client.objects.create(
        firm=firm,
        personal={"name": SCRIPT, "email": "script.client@example.com", "phone": PHONE},
        language="es",
        reference=IMG,
    )
    case = Case.objects.create(
        firm=firm,
        receipt_number="EAC2490012345",
        form_type="I-485",
        client=client,
        attorney=user,
        tags=[BOLD, "family"],
        notes=IMG,
    )
    status = CaseStatus(
        receipt_number=case.receipt_number or "",
        form_type="I-485",
        title_en="Request for Evidence Was Sent",
        title_es="Se Envió una Solicitud de Evidencia",
        description_en=RFE,
        description_es=USCIS_SCRIPT,
        submitted_at=None,
        modified_at=datetime(2026, 3, 2, 14, 0, tzinfo=UTC),
        history=(),
        message="",
        source="sandbox",
    )
    received = CaseStatus(
        receipt_number=case.receipt_number or "",
        form_type="I-485",
        title_en="Case Was Received",
        title_es="",
        description_en="We received your Form I-485.",
        description_es="",
        submitted_at=None,
        modified_at=datetime(2026, 1, 2, 14, 0, tzinfo=UTC),
        history=(),
        message="",
        source="sandbox",
    )
    # The first status seen is no change; the RFE, seen just now, is a new one.
    record_outcome(case, Found(received), observed_at=timezone.now() - timedelta(hours=3))
    record_outcome(case, Found(status), observed_at=timezone.now() - timedelta(hours=2))
    odd = Case.objects.create(firm=firm, receipt_number="LIN2490012346", client=client)
    strange = CaseStatus(
        receipt_number="LIN2490012346",
        form_type="I-130",
        title_en="Case Was Approved " + USCIS_SCRIPT,
        title_es="",
        description_en=IMG,
        description_es="",
        submitted_at=None,
        modified_at=datetime(2026, 3, 3, 14, 0, tzinfo=UTC),
        history=(),
        message="",
        source="sandbox",
    )
    record_outcome(odd, Found(strange), observed_at=timezone.now() - timedelta(hours=1))
    event = StatusEvent.objects.filter(case=case).latest("observed_at")
    comment(event, SCRIPT + " call the client", by=user)
    SavedView.objects.create(firm=firm, owner=user, name=VIEW, query="q=EAC")
    InboundMessage.objects.create(
        firm=firm,
        client=client,
        channel="sms",
        provider_message_id="SM-escaping-1",
        sender=PHONE,
        body=SCRIPT + " is my reply",
        received_at=timezone.now(),
        meaning="reply",
    )
    params = {
        "receipt": case.receipt_number,
        "status": "rfe_sent",
        "category": "evidence_requested",
        "uscis_title": "Request for Evidence Was Sent " + USCIS_SCRIPT,
        "client_reference": IMG,
    }
    for recipient, channel, user_ in (("client", "email", None), ("staff", "in_app", user)):
        Notification.objects.create(
            firm=firm,
            case=case,
            event=event,
            kind="status_change",
            recipient_kind=recipient,
            user=user_,
            client=client if recipient == "client" else None,
            channel=channel,
            address="script.client@example.com" if recipient == "client" else "",
            language="en",
            message={"key": "status_change", "params": params},
            status=NotificationStatus.DELIVERED,
            idempotency_key=f"escaping-{recipient}",
            created_at=timezone.now(),
        )
    _link, token = issue_link(client, by_user_id=user.pk, at=timezone.now())
    browser = Browser()
    sign_in(browser, user)
    return {
        "firm": firm,
        "member": member,
        "client": client,
        "case": case,
        "odd": odd,
        "browser": browser,
        "portal": f"/portal/{token}/",
    }


def _page(browser: Browser, url: str) -> str:
    response = browser.get(url)
    assert response.status_code == 200, f"{url}: {response.status_code}"
    return response.content.decode()


# What each page shows of the hostile data, as text: (url, values that must show escaped).
def _pages(world: dict[str, Any]) -> list[tuple[str, tuple[str, ...]]]:
    case, odd, client = world["case"], world["odd"], world["client"]
    return [
        ("/cases/", (SCRIPT, BOLD, VIEW)),
        (f"/cases/{case.pk}/", (SCRIPT, BOLD, STAFF, SCRIPT + " call the client")),
        (f"/cases/{odd.pk}/", (SCRIPT, "Case Was Approved " + USCIS_SCRIPT)),
        ("/", (SCRIPT, FIRM)),
        ("/deadlines/", (SCRIPT, STAFF)),
        ("/outbox/", (STAFF, FIRM)),
        ("/inbox/", (IMG, USCIS_SCRIPT)),
        (f"/clients/{client.pk}/contact/", (SCRIPT, STAFF, FIRM)),
    ]


def test_every_staff_page_shows_hostile_text_as_text(world: dict[str, Any]) -> None:
    browser = world["browser"]
    for url, shown in _pages(world):
        page = _page(browser, url)
        _assert_no_markup_from_data(page, url)
        for value in shown:
            assert _shown(value) in page, f"{url}: {value!r} is not shown as text"


def test_the_changes_on_the_dashboard_show_comments_and_names_as_text(
    world: dict[str, Any],
) -> None:
    page = _page(world["browser"], "/")
    assert _shown(SCRIPT + " call the client") in page
    assert _shown(STAFF) in page


def test_the_outbox_and_a_notification_show_uscis_texts_as_text(world: dict[str, Any]) -> None:
    browser = world["browser"]
    ids = re.findall(r'href="/outbox/(\d+)/"', _page(browser, "/outbox/"))
    assert ids, "the outbox lists the notifications"
    for pk in ids:
        _assert_no_markup_from_data(_page(browser, f"/outbox/{pk}/"), f"/outbox/{pk}/")
    inbox = _page(browser, "/inbox/")
    opened = re.findall(r'href="(/inbox/\d+/)"', inbox)
    for url in opened:
        response = browser.get(url)
        assert response.status_code in (200, 302)
        _assert_no_markup_from_data(response.content.decode(), url)


def test_the_client_reply_on_the_case_page_is_text(world: dict[str, Any]) -> None:
    page = _page(world["browser"], f"/cases/{world['case'].pk}/")
    assert _shown(SCRIPT + " is my reply") in page


def test_uscis_descriptions_lose_their_markup_and_keep_their_words(world: dict[str, Any]) -> None:
    page = _page(world["browser"], f"/cases/{world['case'].pk}/")
    assert "The request for evidence explains what we need from you. alert(3)" in page


def test_the_client_portal_shows_the_clients_name_and_uscis_texts_as_text(
    world: dict[str, Any],
) -> None:
    page = _page(Browser(), world["portal"])
    _assert_no_markup_from_data(page, "portal")
    assert _shown(SCRIPT) in page  # the first name in the greeting
    assert _shown(USCIS_SCRIPT) in page  # what USCIS wrote, in the client's language


def test_a_search_for_markup_is_echoed_as_text(world: dict[str, Any]) -> None:
    page = _page(world["browser"], "/cases/?q=" + SCRIPT)
    _assert_no_markup_from_data(page, "search")
    assert _shown(SCRIPT) in page


# -- e-mail ---------------------------------------------------------------------------------


def _sent_html(rendered: Any) -> str:
    connection = get_connection("django.core.mail.backends.locmem.EmailBackend")
    transport = EmailTransport(from_address="casewatch@example.com", connection=connection)
    outgoing = Outgoing(
        notification_id=1,
        idempotency_key="escaping-mail",
        address="script.client@example.com",
        language="en",
        rendered=rendered,
    )
    mail.outbox = []
    result = transport.send(outgoing)
    assert result.outcome == "sent", result
    (message,) = mail.outbox
    assert isinstance(message, EmailMultiAlternatives)
    (part, kind) = message.alternatives[0]
    assert kind == "text/html"
    return str(part)


def test_a_staff_e_mail_shows_uscis_texts_and_references_as_text() -> None:
    params = {
        "receipt": "EAC2490012345",
        "status": "rfe_sent",
        "category": "evidence_requested",
        "uscis_title": "Request for Evidence Was Sent " + USCIS_SCRIPT,
        "client_reference": IMG,
        "case_url": 'https://casewatch.example/cases/1/"><script>alert(5)</script>',
    }
    rendered = render({"key": "status_change", "params": params}, "en", audience="staff")
    part = _sent_html(rendered)
    _assert_no_markup_from_data(part, "staff e-mail")
    assert _shown(USCIS_SCRIPT) in part and _shown(IMG) in part


def test_a_uscis_outage_e_mail_shows_what_uscis_answered_as_text() -> None:
    message = {"key": "uscis_outage", "params": {"message": SCRIPT, "since": "2026-03-02"}}
    part = _sent_html(render(message, "es", audience="staff"))
    _assert_no_markup_from_data(part, "outage e-mail")
    assert _shown(SCRIPT) in part


def test_a_client_e_mail_shows_the_firm_name_and_links_as_text() -> None:
    params = {
        "receipt": "EAC2490012345",
        "status": "rfe_sent",
        "category": "evidence_requested",
        "firm_name": FIRM + " " + SCRIPT,
        "portal_url": 'https://casewatch.example/portal/x/"><script>alert(6)</script>',
    }
    for language in ("en", "es", "ar"):
        rendered = render({"key": "status_change", "params": params}, language, audience="client")
        part = _sent_html(rendered)
        _assert_no_markup_from_data(part, f"client e-mail ({language})")
        assert _shown(SCRIPT) in part


def test_an_e_mail_rendered_as_text_only_is_escaped_in_its_html_part() -> None:
    part = html_from_text(f"Hello {SCRIPT}\n\n{IMG}")
    _assert_no_markup_from_data(part, "text-only e-mail")
    assert _shown(SCRIPT) in part


def test_a_member_named_with_markup_is_text_in_the_assign_menu(world: dict[str, Any]) -> None:
    other = User.objects.create_user(username="<b>x</b>", first_name='"><script>alert(7)</script>')
    Membership.objects.create(firm=world["firm"], user=other, role=Role.PARALEGAL)
    page = _page(world["browser"], "/")
    _assert_no_markup_from_data(page, "dashboard with a hostile member")
    assert "&quot;&gt;&lt;script&gt;alert(7)&lt;/script&gt;" in page
