"""One-click unsubscribe (RFC 8058): the link in every client e-mail withdraws e-mail consent
on POST, asks first on GET, speaks the client's language, and gives nothing to a forger."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.test import Client as Browser

from casewatch.accounts.models import Firm
from casewatch.cases.models import Client
from casewatch.notify.consent import has_consent, record_consent
from casewatch.notify.models import ConsentRecord
from casewatch.notify.unsubscribe import PATH, unsubscribe_headers, unsubscribe_token

pytestmark = pytest.mark.django_db

AT = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)


@pytest.fixture
def client_who_agreed() -> Client:
    firm = Firm.objects.create(name="Example Immigration Law", slug="example")
    person = Client.objects.create(firm=firm, personal={"name": "Test Client"}, language="es")
    record_consent(person, "email", granted=True, at=AT, actor="user:1", method="form")
    return person


def _link(person: Client, channel: str = "email") -> str:
    return f"{PATH}{unsubscribe_token(person.pk, channel)}"


def test_the_email_header_points_at_the_link_and_offers_one_click(client_who_agreed) -> None:
    headers = unsubscribe_headers(
        "https://cases.example.com", client_who_agreed.pk, "email", "Firm <firm@example.com>"
    )
    assert f"<https://cases.example.com{_link(client_who_agreed)}>" in headers["List-Unsubscribe"]
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_opening_the_link_only_asks_in_the_clients_language(client_who_agreed) -> None:
    page = Browser().get(_link(client_who_agreed))
    assert page.status_code == 200 and page["Content-Language"] == "es"
    assert "¿Quiere dejar de recibir correos" in page.content.decode()
    assert has_consent(client_who_agreed, "email")
    assert page["Referrer-Policy"] == "no-referrer"


def test_a_one_click_post_withdraws_email_consent_once(client_who_agreed) -> None:
    browser = Browser(enforce_csrf_checks=True)  # a mail provider's button sends no CSRF token
    for _ in range(2):
        answer = browser.post(_link(client_who_agreed), {"List-Unsubscribe": "One-Click"})
        assert answer.status_code == 200
    assert not has_consent(client_who_agreed, "email")
    withdrawn = ConsentRecord.objects.filter(client=client_who_agreed, granted=False)
    assert [(r.method, r.actor) for r in withdrawn] == [("unsubscribe_link", "client")]


def test_a_forged_or_altered_link_is_not_found_and_changes_nothing(client_who_agreed) -> None:
    browser = Browser()
    assert browser.post(f"{PATH}forged-token").status_code == 404
    assert browser.post(_link(client_who_agreed) + "x").status_code == 404
    # A token made for another channel does not unsubscribe from e-mail.
    assert browser.post(_link(client_who_agreed, "sms")).status_code == 404
    assert has_consent(client_who_agreed, "email")
