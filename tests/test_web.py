"""The staff pages at this stage: log in, the case list, a case page; always firm-scoped."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.contrib.auth.models import User
from django.test import Client as Browser

from casewatch.accounts.models import Firm, Membership, Role
from casewatch.cases.history import record_outcome
from casewatch.cases.models import Case, Client
from casewatch.uscis.source import CaseStatus, Found
from tests.environment import authenticator_app, sign_in, totp_code

pytestmark = pytest.mark.django_db

RFE = (
    "On March 2, 2026, we sent a request for evidence for your Form I-485, Receipt Number "
    "EAC2490012345. The request for evidence explains what we need from you."
)


def _member(firm: Firm, username: str, role: str = Role.PARALEGAL) -> User:
    user = User.objects.create_user(username=username, password="correct horse battery")
    Membership.objects.create(firm=firm, user=user, role=role)
    return user


@pytest.fixture
def firm() -> Firm:
    return Firm.objects.create(name="Example Immigration Law", slug="example")


@pytest.fixture
def browser(firm: Firm) -> Browser:
    browser = Browser()
    sign_in(browser, _member(firm, "paula"))
    return browser


def _rfe_case(firm: Firm, receipt: str = "EAC2490012345") -> Case:
    client = Client.objects.create(firm=firm, personal={"name": "Fakey <b>McTestface</b>"})
    case = Case.objects.create(firm=firm, receipt_number=receipt, client=client)
    status = CaseStatus(
        receipt_number=receipt,
        form_type="I-485",
        title_en="Request for Evidence Was Sent",
        title_es="Se Envió una Solicitud de Evidencia",
        description_en=RFE,
        description_es="",
        submitted_at=None,
        modified_at=datetime(2026, 3, 2, 14, 0, tzinfo=UTC),
        history=(),
        message="",
        source="sandbox",
    )
    record_outcome(case, Found(status), observed_at=datetime(2026, 3, 2, 15, 0, tzinfo=UTC))
    return case


def test_every_page_asks_an_anonymous_visitor_to_log_in(firm: Firm) -> None:
    case = _rfe_case(firm)
    for url in ("/", "/cases/", f"/cases/{case.pk}/"):
        response = Browser().get(url, follow=True)
        assert response.redirect_chain[-1][0].startswith("/login/")
        assert b'name="password"' in response.content


def test_the_case_list_shows_the_firms_cases_with_their_status(
    browser: Browser, firm: Firm
) -> None:
    _rfe_case(firm)
    page = browser.get("/cases/").content.decode()
    assert "EAC2490012345" in page and "Request for Evidence Was Sent" in page
    assert "Fakey &lt;b&gt;McTestface&lt;/b&gt;" in page
    assert "SANDBOX" in page


def test_the_case_list_finds_a_receipt_however_it_is_typed(browser: Browser, firm: Firm) -> None:
    _rfe_case(firm)
    _rfe_case(firm, "LIN2490054321")
    page = browser.get("/cases/", {"q": "eac-24-900-12345"}).content.decode()
    assert "EAC2490012345" in page and "LIN2490054321" not in page


def test_a_case_page_shows_the_timeline_and_the_rfe_deadline(browser: Browser, firm: Firm) -> None:
    case = _rfe_case(firm)
    page = browser.get(f"/cases/{case.pk}/").content.decode()
    assert "Se Envió una Solicitud de Evidencia" in page
    assert "RFE response due" in page and "May 28, 2026" in page


def test_another_firms_case_is_not_found(browser: Browser) -> None:
    other = Firm.objects.create(name="Other Firm", slug="other")
    case = _rfe_case(other)
    assert browser.get(f"/cases/{case.pk}/").status_code == 404
    assert "EAC2490012345" not in browser.get("/cases/").content.decode()


def test_the_case_list_says_how_uscis_is_and_what_the_budget_buys(
    browser: Browser, firm: Firm
) -> None:
    from django.core.cache import cache

    from casewatch.monitor.health import note_outcome

    cache.clear()
    _rfe_case(firm)
    note_outcome(None, datetime(2026, 3, 2, 15, 0, tzinfo=UTC))
    page = browser.get("/cases/").content.decode()
    assert "USCIS is readable." in page
    # On the firm's clock (Firm.time_zone, New York unless set), the zone named.
    assert "Last successful USCIS read: March 2, 2026, 10 a.m. EST" in page
    assert "calls/day, 1 active case: expected detection delay p50" in page


def test_after_logging_in_an_empty_firm_is_told_how_to_add_its_first_cases(firm: Firm) -> None:
    app = authenticator_app(_member(firm, "olga", Role.ADMIN))
    browser = Browser()
    browser.post("/login/", {"username": "olga", "password": "correct horse battery"})
    page = browser.post("/login/code/", {"code": totp_code(app), "next": "/"}, follow=True)
    assert page.redirect_chain[-1][0] == "/welcome/"
    text = page.content.decode()
    assert "Add your first cases" in text
    assert "casewatch import caseload.xlsx --dry-run" in text
    assert 'href="/intake/import/"' in text  # and points at the import from the web page
    assert 'href="/team/"' in text  # an admin is pointed at inviting colleagues
    assert "How to add your first cases" in browser.get("/cases/").content.decode()


def test_front_desk_in_an_empty_firm_is_told_who_brings_the_cases_in(firm: Firm) -> None:
    desk = Browser()
    sign_in(desk, _member(firm, "frank", Role.FRONT_DESK))
    text = desk.get("/", follow=True).content.decode()
    assert "Your firm's admin or a paralegal brings the firm's cases into casewatch." in text
    assert "casewatch import" not in text


def test_a_firm_with_cases_lands_on_the_dashboard(browser: Browser, firm: Firm) -> None:
    _rfe_case(firm)
    page = browser.get("/")
    assert page.status_code == 200 and "Changes since you last looked" in page.content.decode()


@pytest.mark.django_db
def test_the_stylesheets_are_served_from_the_package() -> None:
    response = Browser().get("/static/casewatch/app.css")
    assert response.status_code == 200
    assert b"{" in b"".join(response.streaming_content)  # type: ignore[attr-defined]
