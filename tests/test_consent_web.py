"""A client's contact and consent page: channels in the client's order, the consent ledger
per channel, recording consent given or withdrawn; front desk looks, another firm's client
is not found."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client as Browser
from django.utils import timezone

from casewatch.accounts.models import Firm, Role
from casewatch.audit.chain import verify
from casewatch.audit.models import AuditEntry
from casewatch.cases.models import Case, Client
from casewatch.notify.consent import has_consent, record_consent
from casewatch.notify.messages import CLIENT_LANGUAGES
from casewatch.notify.models import CLIENT_CHANNELS, ConsentRecord, ContactPlan
from casewatch.web.client_contact import channel_order, opt_in_wording, reordered
from tests.environment import sign_in
from tests.test_i18n import SPANISH, _english_left
from tests.test_web import _member

pytestmark = pytest.mark.django_db


@pytest.fixture
def firm() -> Firm:
    return Firm.objects.create(name="Example Immigration Law", slug="example")


@pytest.fixture
def paula(firm: Firm) -> User:
    user = _member(firm, "paula", Role.PARALEGAL)
    user.first_name, user.last_name = "Paula", "Prueba"
    user.save()
    return user


@pytest.fixture
def client(firm: Firm) -> Client:
    client = Client.objects.create(
        firm=firm,
        personal={"name": "Test Client", "phone": "+15550100142"},
        language="es",
    )
    Case.objects.create(firm=firm, receipt_number="EAC2490012345", client=client)
    return client


def _browser(user: User) -> Browser:
    browser = Browser()
    sign_in(browser, user)
    return browser


def _page(browser: Browser, client: Client, **query: str) -> str:
    response = browser.get(f"/clients/{client.pk}/contact/", query)
    assert response.status_code == 200
    return response.content.decode()


def _consent(browser: Browser, client: Client, **fields: str) -> int:
    data = {"channel": "whatsapp", "granted": "1", "method": "form", "language": "es"}
    data["wording"] = opt_in_wording(client.firm.name, data["channel"], "es")
    data.update(fields)
    return browser.post(f"/clients/{client.pk}/consent/", data).status_code


# --- What the page shows ---------------------------------------------------------------


def test_the_case_page_leads_to_the_clients_contact_page(
    firm: Firm, paula: User, client: Client
) -> None:
    case = Case.objects.get(client=client)
    page = _browser(paula).get(f"/cases/{case.pk}/").content.decode()
    assert f'href="/clients/{client.pk}/contact/"' in page


def test_the_page_lists_the_channels_in_the_clients_order_with_consent_and_history(
    firm: Firm, paula: User, client: Client
) -> None:
    ContactPlan.objects.create(client=client, channels=["sms", "whatsapp"])
    when = timezone.now()
    record_consent(
        client,
        "sms",
        granted=True,
        at=when,
        actor=f"user:{paula.pk}",
        method="form",
        wording="I agree to texts from the firm.",
        language="en",
    )
    record_consent(
        client,
        "whatsapp",
        granted=True,
        at=when,
        actor="client",
        method="portal",
        wording="Acepto.",
        language="es",
    )
    record_consent(client, "whatsapp", granted=False, at=when, actor="client", method="reply")
    page = _page(_browser(paula), client)
    assert page.index('id="channel-sms"') < page.index('id="channel-whatsapp"')
    assert page.index('id="channel-whatsapp"') < page.index('id="channel-email"')
    sms = page[page.index('id="channel-sms"') : page.index('id="channel-whatsapp"')]
    whatsapp = page[page.index('id="channel-whatsapp"') : page.index('id="channel-email"')]
    email = page[page.index('id="channel-email"') :]
    assert "consent given" in sms and "Paula Prueba" in sms and "Signed form" in sms
    assert "I agree to texts from the firm." in sms and "English" in sms
    assert "consent withdrawn" in whatsapp and "Replied to a message (STOP or START)" in whatsapp
    assert "History: 2 entries" in whatsapp and "The client" in whatsapp
    assert "no consent recorded" in email and "not in the client's order" in email
    assert "no e-mail address on file" in email and "+15550100142" not in page


def test_the_consent_wording_offered_names_the_firm_in_the_clients_language(
    firm: Firm, paula: User, client: Client
) -> None:
    page = _page(_browser(paula), client)
    assert "Acepto que Example Immigration Law me envíe mensajes por WhatsApp" in page
    assert "mensaje de texto (SMS)" in page and "correo electrónico" in page
    french = _page(_browser(paula), client, wording="fr")
    assert "J&#x27;accepte que Example Immigration Law m&#x27;envoie" in french


def test_every_client_language_has_an_opt_in_wording_naming_the_firm_and_the_channel() -> None:
    english = {channel: opt_in_wording("Firm X", channel, "en") for channel in CLIENT_CHANNELS}
    for code in CLIENT_LANGUAGES:
        for channel in CLIENT_CHANNELS:
            text = opt_in_wording("Firm X", channel, code)
            assert "Firm X" in text and "STOP" in text, (code, channel)
            assert code == "en" or text != english[channel], (code, channel)
    assert len({opt_in_wording("Firm X", c, "es") for c in CLIENT_CHANNELS}) == 3


# --- Recording consent -------------------------------------------------------------------


def test_consent_recorded_on_the_page_lands_in_the_ledger_and_the_audit_chain(
    firm: Firm, paula: User, client: Client
) -> None:
    browser = _browser(paula)
    assert not has_consent(client, "whatsapp")
    assert _consent(browser, client, method="verbal") == 302
    entry = ConsentRecord.objects.get(client=client)
    assert entry.granted and entry.channel == "whatsapp" and entry.method == "verbal"
    assert entry.actor == f"user:{paula.pk}" and entry.language == "es"
    assert entry.wording.startswith("Acepto que Example Immigration Law")
    assert has_consent(client, "whatsapp")
    audit = AuditEntry.objects.get(action="consent.granted")
    assert audit.actor == f"user:{paula.pk}" and audit.object_id == str(client.pk)
    assert "Test Client" not in str(audit.details) and "Acepto" not in str(audit.details)
    assert verify().ok
    page = _page(browser, client)
    assert "Consent on WhatsApp recorded." in page and "Said so in person or by phone" in page


def test_a_withdrawal_is_appended_and_consent_ends(firm: Firm, paula: User, client: Client) -> None:
    browser = _browser(paula)
    _consent(browser, client, channel="sms")
    assert has_consent(client, "sms")
    assert (
        _consent(browser, client, channel="sms", granted="0", wording="Asked by phone to stop.")
        == 302
    )
    assert not has_consent(client, "sms")
    assert list(
        ConsentRecord.objects.filter(client=client).order_by("pk").values_list("granted", flat=True)
    ) == [True, False]
    assert AuditEntry.objects.filter(action="consent.withdrawn").count() == 1


def test_consent_without_the_words_the_client_agreed_to_is_refused_and_nothing_is_kept(
    firm: Firm, paula: User, client: Client
) -> None:
    browser = _browser(paula)
    response = browser.post(
        f"/clients/{client.pk}/consent/",
        {"channel": "email", "granted": "1", "method": "form", "wording": "  "},
    )
    assert response.status_code == 400
    page = response.content.decode()
    assert "Nothing was recorded: correct the form below." in page
    assert "Write the words the client agreed to: the ledger keeps them." in page
    assert not ConsentRecord.objects.exists()
    assert (
        browser.post(
            f"/clients/{client.pk}/consent/",
            {"channel": "pigeon", "granted": "1", "method": "form", "wording": "Yes"},
        ).status_code
        == 400
    )
    assert not ConsentRecord.objects.exists()


# --- The order of channels ------------------------------------------------------------


@pytest.mark.parametrize(
    ("order", "channel", "move", "expected"),
    [
        (["whatsapp", "sms", "email"], "sms", "up", ["sms", "whatsapp", "email"]),
        (["whatsapp", "sms", "email"], "sms", "down", ["whatsapp", "email", "sms"]),
        (["whatsapp", "sms", "email"], "whatsapp", "up", ["whatsapp", "sms", "email"]),
        (["whatsapp", "sms", "email"], "email", "down", ["whatsapp", "sms", "email"]),
        (["whatsapp", "sms", "email"], "sms", "remove", ["whatsapp", "email"]),
        (["whatsapp", "email"], "sms", "add", ["whatsapp", "email", "sms"]),
        (["whatsapp", "email"], "sms", "up", ["whatsapp", "email"]),
    ],
)
def test_a_channel_moves_one_place_at_a_time(
    order: list[str], channel: str, move: str, expected: list[str]
) -> None:
    assert reordered(order, channel, move) == expected


def test_staff_reorder_the_clients_channels_with_buttons(
    firm: Firm, paula: User, client: Client
) -> None:
    browser = _browser(paula)
    assert channel_order(client) == (["whatsapp", "sms", "email"], False)
    browser.post(f"/clients/{client.pk}/channels/", {"channel": "email", "move": "up"})
    assert channel_order(client) == (["whatsapp", "email", "sms"], True)
    browser.post(f"/clients/{client.pk}/channels/", {"channel": "whatsapp", "move": "remove"})
    assert ContactPlan.objects.get(client=client).channels == ["email", "sms"]
    page = _page(browser, client)
    assert page.index('id="channel-email"') < page.index('id="channel-sms"')
    assert page.index('id="channel-sms"') < page.index('id="channel-whatsapp"')
    changes = AuditEntry.objects.filter(action="contact_plan.changed").order_by("seq")
    assert [e.details["channels"] for e in changes] == [
        ["whatsapp", "email", "sms"],
        ["email", "sms"],
    ]


# --- Who may ---------------------------------------------------------------------------


def test_front_desk_may_look_but_not_record_or_reorder(firm: Firm, client: Client) -> None:
    desk = _browser(_member(firm, "frank", Role.FRONT_DESK))
    page = _page(desk, client)
    assert "consent-form" not in page and 'name="move"' not in page
    assert _consent(desk, client) == 403
    assert (
        desk.post(f"/clients/{client.pk}/channels/", {"channel": "sms", "move": "up"}).status_code
        == 403
    )
    assert not ConsentRecord.objects.exists() and not ContactPlan.objects.exists()


def test_another_firms_client_is_not_found(firm: Firm, client: Client) -> None:
    other = Firm.objects.create(name="Other Firm", slug="other")
    theirs = _browser(_member(other, "olga", Role.ADMIN))
    assert theirs.get(f"/clients/{client.pk}/contact/").status_code == 404
    assert _consent(theirs, client) == 404
    assert (
        theirs.post(f"/clients/{client.pk}/channels/", {"channel": "sms", "move": "up"}).status_code
        == 404
    )
    assert not ConsentRecord.objects.exists()


def test_the_spanish_contact_page_has_no_english_left(
    firm: Firm, paula: User, client: Client
) -> None:
    record_consent(
        client,
        "sms",
        granted=True,
        at=timezone.now(),
        actor=f"user:{paula.pk}",
        method="form",
        wording="Acepto.",
        language="es",
    )
    browser = _browser(paula)
    html = browser.get(
        f"/clients/{client.pk}/contact/", headers={"accept-language": SPANISH}
    ).content.decode()
    assert _english_left(html) == []
    created = browser.post(
        f"/clients/{client.pk}/portal-links/", headers={"accept-language": SPANISH}
    ).content.decode()
    assert _english_left(created) == []
