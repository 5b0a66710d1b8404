"""Staff read what a client wrote: the in-app notice of a reply shows the client's words to
members of the message's firm (reading it is audited, ids only), and the case page lists
the client's messages, STOP and START words marked, always as text, never as markup."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import User
from django.test import Client as Browser

from casewatch.accounts.models import Firm, Membership, Role
from casewatch.audit.chain import verify
from casewatch.audit.models import AuditEntry
from casewatch.cases.models import Case, Client
from casewatch.notify.consent import has_consent, record_consent
from casewatch.notify.inbound import handle_inbound
from casewatch.notify.models import InboundMessage, MessageKind, Notification
from casewatch.web.case_page import CLIENT_MESSAGES_SHOWN
from tests.environment import sign_in
from tests.test_i18n import SPANISH, _english_left
from tests.test_provider_webhooks import message, post_whatsapp

pytestmark = pytest.mark.django_db

PHONE = "+15550100123"  # the number tests.test_provider_webhooks.message() writes from
AT = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
RECEIPT = "EAC9999103403"


def _member(firm: Firm, username: str, role: str, language: str = "") -> Membership:
    user = User.objects.create_user(username=username)  # logged in by force: no password
    return Membership.objects.create(firm=firm, user=user, role=role, language=language)


def _browser(member: Membership) -> Browser:
    browser = Browser()
    sign_in(browser, member.user)
    return browser


@pytest.fixture
def firm() -> Firm:
    return Firm.objects.create(name="Example Immigration Law", slug="example")


@pytest.fixture
def attorney(firm: Firm) -> Membership:
    return _member(firm, "ana", Role.ATTORNEY)


@pytest.fixture
def paralegal(firm: Firm) -> Membership:
    return _member(firm, "paula", Role.PARALEGAL)


@pytest.fixture
def client(firm: Firm) -> Client:
    person = Client.objects.create(
        firm=firm, personal={"name": "Test Client", "phone": PHONE}, language="es"
    )
    for channel in ("whatsapp", "sms"):
        record_consent(
            person, channel, granted=True, at=AT - timedelta(days=30), actor="import", method="form"
        )
    return person


@pytest.fixture
def case(firm: Firm, client: Client, attorney: Membership, paralegal: Membership) -> Case:
    return Case.objects.create(
        firm=firm,
        receipt_number=RECEIPT,
        form_type="I-485",
        client=client,
        attorney=attorney.user,
        paralegal=paralegal.user,
    )


def _notice(member: Membership, inbound: InboundMessage) -> Notification:
    return Notification.objects.get(
        kind=MessageKind.CLIENT_REPLY,
        user_id=member.user_id,
        message__params__inbound_message_id=inbound.pk,
    )


def _write(text: str, n: int, channel: str = "whatsapp", phone: str = PHONE) -> InboundMessage:
    return handle_inbound(channel, phone, text, f"wamid.REPLY-{n}", AT + timedelta(minutes=n))


def _messages_section(page: str) -> str:
    start = page.index('id="client-messages"')
    return page[start : page.index("</h2>", page.index("Status history", start))]


# --- The notice in the inbox ---------------------------------------------------------


def test_opening_a_signed_whatsapp_reply_shows_the_words_when_and_channel_and_the_case(
    case: Case, paralegal: Membership
) -> None:
    text = "¿Cuándo es mi entrevista? Gracias"
    assert post_whatsapp(message(text, wamid="wamid.SIGNED-1")).status_code == 200
    inbound = InboundMessage.objects.get()
    notice = _notice(paralegal, inbound)
    assert text not in json.dumps(notice.message)  # the notice itself carries no words
    page = _browser(paralegal).get(f"/inbox/{notice.pk}/").content.decode()
    assert "What the client wrote" in page
    assert text in page
    assert "by WhatsApp" in page and ">Reply</span>" in page
    assert f'href="/cases/{case.pk}/"' in page and RECEIPT in page
    assert PHONE not in page and "5550100123" not in page
    notice.refresh_from_db()
    assert notice.status == "read" and notice.read_at is not None


def test_reading_a_reply_is_audited_with_ids_and_never_the_words_or_the_number(
    case: Case, attorney: Membership
) -> None:
    inbound = _write("Mi dirección nueva es 12 Calle Falsa", 1)
    notice = _notice(attorney, inbound)
    browser = _browser(attorney)
    browser.get(f"/inbox/{notice.pk}/")
    browser.get(f"/inbox/{notice.pk}/")  # every reading is recorded, not only the first
    entries = AuditEntry.objects.filter(action="inbound.viewed").order_by("seq")
    assert entries.count() == 2
    for entry in entries:
        assert entry.actor == f"user:{attorney.user_id}"
        assert (entry.object_type, entry.object_id) == ("inbound_message", str(inbound.pk))
        assert entry.firm_id == case.firm_id
        kept = json.dumps(entry.details)
        assert "Calle Falsa" not in kept and "5550100123" not in kept
    assert verify().ok


def test_an_ordinary_alert_records_no_reading_of_a_client_message(
    case: Case, attorney: Membership
) -> None:
    inbound = _write("Hola", 1)
    notice = _notice(attorney, inbound)
    Notification.objects.filter(pk=notice.pk).update(kind=MessageKind.DIGEST)
    page = _browser(attorney).get(f"/inbox/{notice.pk}/").content.decode()
    assert "What the client wrote" not in page
    assert not AuditEntry.objects.filter(action="inbound.viewed").exists()


def test_a_reply_from_a_client_with_several_open_cases_links_to_their_contact_page(
    firm: Firm, case: Case, client: Client, attorney: Membership
) -> None:
    Case.objects.create(firm=firm, receipt_number="LIN2490054321", client=client)
    inbound = _write("¿Y el otro caso?", 1)
    notice = _notice(attorney, inbound)
    assert notice.case is None
    page = _browser(attorney).get(f"/inbox/{notice.pk}/").content.decode()
    assert "¿Y el otro caso?" in page
    assert f'href="/clients/{client.pk}/contact/"' in page
    assert "Open the client's contact page" in page


def test_another_firms_member_finds_neither_the_notice_nor_the_case(
    case: Case, attorney: Membership
) -> None:
    inbound = _write("Privado", 1)
    notice = _notice(attorney, inbound)
    other = Firm.objects.create(name="Other Firm", slug="other")
    outsider = _member(other, "otto", Role.ADMIN)
    browser = _browser(outsider)
    assert browser.get(f"/inbox/{notice.pk}/").status_code == 404
    assert browser.get(f"/cases/{case.pk}/").status_code == 404
    assert not AuditEntry.objects.filter(action="inbound.viewed").exists()
    notice.refresh_from_db()
    assert notice.status == "delivered"


def test_a_notice_naming_another_firms_message_never_shows_its_words(
    case: Case, client: Client, attorney: Membership
) -> None:
    # The same number is a client of two firms: the message is kept with the first firm's
    # client; the second firm's people are told, but the words stay with the first firm.
    other = Firm.objects.create(name="Other Firm", slug="other")
    otto = _member(other, "otto", Role.ATTORNEY)
    twin = Client.objects.create(firm=other, personal={"name": "Test Client", "phone": PHONE})
    Case.objects.create(firm=other, receipt_number="WAC2490000001", client=twin, attorney=otto.user)
    inbound = _write("Solo para mi abogada", 1)
    assert inbound.firm_id == client.firm_id
    theirs = _notice(otto, inbound)
    page = _browser(otto).get(f"/inbox/{theirs.pk}/")
    assert page.status_code == 200
    assert "Solo para mi abogada" not in page.content.decode()
    assert not AuditEntry.objects.filter(action="inbound.viewed").exists()


# --- The case page ---------------------------------------------------------------------


def test_the_case_page_lists_the_clients_messages_newest_first_twenty_at_a_time(
    case: Case, paralegal: Membership
) -> None:
    written = [_write(f"Mensaje número {n}", n) for n in range(CLIENT_MESSAGES_SHOWN + 1)]
    browser = _browser(paralegal)
    first = _messages_section(browser.get(f"/cases/{case.pk}/").content.decode())
    shown = [int(n) for n in re.findall(r"Mensaje número (\d+)", first)]
    assert shown == list(range(CLIENT_MESSAGES_SHOWN, 0, -1))  # newest first, the oldest waits
    assert 'href="?messages=2#client-messages"' in first
    second = _messages_section(browser.get(f"/cases/{case.pk}/?messages=2").content.decode())
    assert re.findall(r"Mensaje número (\d+)", second) == ["0"]
    assert 'href="?messages=1#client-messages"' in second and "messages=3" not in second
    assert len(written) == InboundMessage.objects.filter(client=case.client).count()


def test_a_message_with_markup_shows_as_text_everywhere(case: Case, attorney: Membership) -> None:
    inbound = _write('<script>alert("x")</script><b>hola</b>', 1)
    browser = _browser(attorney)
    for url in (f"/cases/{case.pk}/", f"/inbox/{_notice(attorney, inbound).pk}/"):
        page = browser.get(url).content.decode()
        assert "<script>alert" not in page and "<b>hola</b>" not in page, url
        assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&lt;b&gt;hola&lt;/b&gt;" in page


def test_an_opt_out_is_on_the_case_page_marked_so_staff_know_why_whatsapp_stopped(
    case: Case, client: Client, paralegal: Membership
) -> None:
    _write("BAJA", 1)
    assert not has_consent(client, "whatsapp")
    section = _messages_section(_browser(paralegal).get(f"/cases/{case.pk}/").content.decode())
    assert "Opt-out" in section and "BAJA" in section
    assert "The client asked to stop messages by WhatsApp" in section
    _write("ALTA", 2)
    assert has_consent(client, "whatsapp")
    section = _messages_section(_browser(paralegal).get(f"/cases/{case.pk}/").content.decode())
    assert section.index("Opt-in") < section.index("Opt-out")  # newest first
    assert "The client asked to receive messages by WhatsApp again." in section
    assert Notification.objects.filter(kind=MessageKind.CLIENT_REPLY).count() == 0


def test_front_desk_reads_the_clients_messages_on_the_case_page(firm: Firm, case: Case) -> None:
    _write("Llamaré mañana", 1, channel="sms")
    frank = _member(firm, "frank", Role.FRONT_DESK)
    section = _messages_section(_browser(frank).get(f"/cases/{case.pk}/").content.decode())
    assert "Llamaré mañana" in section and "by SMS" in section and "Reply" in section


def test_only_this_clients_messages_from_this_firm_are_on_the_case_page(
    firm: Firm, case: Case, paralegal: Membership
) -> None:
    _write("Del cliente", 1)
    neighbour = Client.objects.create(
        firm=firm, personal={"name": "Other Test Client", "phone": "+15550100177"}
    )
    Case.objects.create(firm=firm, receipt_number="LIN2490054321", client=neighbour)
    _write("De otro cliente", 2, phone="+15550100177")
    _write("De nadie", 3, phone="+15550100199")  # no client has this number
    section = _messages_section(_browser(paralegal).get(f"/cases/{case.pk}/").content.decode())
    assert "Del cliente" in section
    assert "De otro cliente" not in section and "De nadie" not in section


def test_a_client_who_never_wrote_is_said_so(case: Case, paralegal: Membership) -> None:
    section = _messages_section(_browser(paralegal).get(f"/cases/{case.pk}/").content.decode())
    assert "The client has not written to the firm by WhatsApp or SMS." in section


def test_the_spanish_pages_have_no_english_left(
    firm: Firm, case: Case, client: Client, attorney: Membership
) -> None:
    inbound = _write("Quiero saber de mi caso", 1)
    _write("BAJA", 2)
    notice = _notice(attorney, inbound)
    browser = _browser(attorney)
    for url in (f"/inbox/{notice.pk}/", f"/cases/{case.pk}/"):
        html = browser.get(url, headers={"accept-language": SPANISH}).content.decode()
        assert _english_left(html) == [], url
        assert "Quiero saber de mi caso" in html
