"""The client portal: a private, expiring, revocable link to the client's own cases in
plain words and in their language; nothing on it for anyone else, nothing leaked by it."""

from __future__ import annotations

import hashlib
import re
from datetime import datetime, timedelta

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client as Browser
from django.utils import timezone
from django.utils.html import escape

from casewatch.accounts.models import Firm, Role
from casewatch.audit.models import AuditEntry
from casewatch.cases.history import record_outcome
from casewatch.cases.models import Case, Client, Deadline
from casewatch.config import ConfigError, portal_link_days
from casewatch.notify.messages import CLIENT_LANGUAGES, explanation, faq, languages
from casewatch.notify.models import PortalLink, PortalVisit
from casewatch.notify.portal_links import issue_link, portal_figure, revoke_link, verify_link
from casewatch.portal.texts import all_texts
from casewatch.uscis.source import CaseStatus, Found
from tests.environment import sign_in
from tests.test_i18n import _readable
from tests.test_web import _member

pytestmark = pytest.mark.django_db

INTERVIEW = "Interview Was Scheduled"
INTERVIEW_ES = "Se Programó una Entrevista"
RFE = "Request for Evidence Was Sent"
RFE_ES = "Se Envió una Solicitud de Evidencia"


@pytest.fixture
def firm() -> Firm:
    return Firm.objects.create(name="Example Immigration Law", slug="example")


@pytest.fixture
def paula(firm: Firm) -> User:
    return _member(firm, "paula", Role.PARALEGAL)


def _said(case: Case, title_en: str, title_es: str, description: str, *, at: datetime) -> None:
    """USCIS (the sandbox) says this about the case at `at`: a status change is recorded."""
    status = CaseStatus(
        receipt_number=str(case.receipt_number),
        form_type=case.form_type or "I-485",
        title_en=title_en,
        title_es=title_es,
        description_en=description,
        description_es="",
        submitted_at=None,
        modified_at=at,
        history=(),
        message="",
        source="sandbox",
    )
    record_outcome(case, Found(status), observed_at=at)


def _long_date(day: datetime) -> str:
    return f"{day:%B} {day.day}, {day.year}"


@pytest.fixture
def maria(firm: Firm) -> Client:
    """A Spanish-speaking client with an interview coming up and an earlier RFE."""
    client = Client.objects.create(
        firm=firm,
        personal={
            "name": "María Test-Client Apellido",
            "phone": "+15550100142",
            "email": "maria.test@example.test",
        },
        language="es",
        time_zone="America/Chicago",
    )
    now = timezone.now()
    rfe_case = Case.objects.create(
        firm=firm, receipt_number="EAC2490012345", form_type="I-485", client=client
    )
    _said(
        rfe_case,
        RFE,
        RFE_ES,
        f"On {_long_date(now - timedelta(days=20))}, we sent a request for evidence for your "
        "Form I-485, Receipt Number EAC2490012345. The request for evidence explains what "
        "we need from you.",
        at=now - timedelta(days=20),
    )
    interview_case = Case.objects.create(
        firm=firm, receipt_number="IOE0912345678", form_type="N-400", client=client
    )
    interview_on = now + timedelta(days=40)
    _said(
        interview_case,
        INTERVIEW,
        INTERVIEW_ES,
        f"On {_long_date(now - timedelta(days=3))}, we scheduled an interview for your Form "
        "N-400, Application for Naturalization, Receipt Number IOE0912345678, on "
        f"{_long_date(interview_on)}, at 10:00 AM.",
        at=now - timedelta(days=3),
    )
    assert Deadline.objects.filter(case=interview_case, kind="interview").exists()
    return client


@pytest.fixture
def other_client(firm: Firm) -> Client:
    client = Client.objects.create(firm=firm, personal={"name": "Other Test Person"})
    Case.objects.create(
        firm=firm,
        receipt_number="LIN2490099999",
        form_type="I-130",
        client=client,
        status="case_was_approved",
        category="approved",
        title_en="Case Was Approved",
        status_since=timezone.now(),
    )
    return client


def _open(token: str, browser: Browser | None = None, **query: str) -> tuple[int, str]:
    response = (browser or Browser()).get(f"/portal/{token}/", query)
    return response.status_code, response.content.decode()


# --- The link ----------------------------------------------------------------------------


def test_a_link_opens_its_clients_page_and_only_its_hash_is_kept(
    maria: Client, paula: User
) -> None:
    link, token = issue_link(maria, by_user_id=paula.pk, at=timezone.now())
    assert len(token) >= 43  # 32 random bytes
    assert link.token_hash == hashlib.sha256(token.encode()).hexdigest()
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM notify_portallink")
        stored = " ".join(str(value) for row in cursor.fetchall() for value in row)
    assert token not in stored
    status, page = _open(token)
    assert status == 200 and "EAC2490012345" in page and "IOE0912345678" in page


def test_a_wrong_an_expired_and_a_revoked_link_get_the_same_plain_404(
    maria: Client, paula: User
) -> None:
    now = timezone.now()
    _live, live_token = issue_link(maria, by_user_id=paula.pk, at=now)
    _old, expired_token = issue_link(maria, by_user_id=paula.pk, at=now - timedelta(days=91))
    revoked, revoked_token = issue_link(maria, by_user_id=paula.pk, at=now)
    revoke_link(revoked, by_user_id=paula.pk, at=now)
    answers = [
        Browser().get(f"/portal/{token}/")
        for token in (expired_token, revoked_token, live_token[:-1] + "x", "nothing-here")
    ]
    assert {answer.status_code for answer in answers} == {404}
    assert len({answer.content for answer in answers}) == 1
    assert len({tuple(sorted(answer.headers.items())) for answer in answers}) == 1
    page = answers[0].content.decode()
    for secret in ("María", "EAC2490012345", "Example Immigration Law", "/cases/", "Log in"):
        assert secret not in page
    assert "This link does not work" in page and "Este enlace no funciona" in page
    assert answers[0]["Referrer-Policy"] == "no-referrer"
    assert not PortalVisit.objects.exists()


def test_a_link_works_for_the_configured_number_of_days(
    maria: Client, paula: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = timezone.now()
    assert portal_link_days() == 90
    monkeypatch.setenv("CASEWATCH_PORTAL_LINK_DAYS", "3")
    link, token = issue_link(maria, by_user_id=paula.pk, at=now)
    assert link.expires_at == now + timedelta(days=3)
    assert verify_link(token, at=now + timedelta(days=3) - timedelta(seconds=1)) == link
    assert verify_link(token, at=now + timedelta(days=3)) is None
    monkeypatch.setenv("CASEWATCH_PORTAL_LINK_DAYS", "ninety")
    with pytest.raises(ConfigError, match="CASEWATCH_PORTAL_LINK_DAYS must be a whole number"):
        portal_link_days()


def test_revoking_stops_the_link_at_once_and_is_recorded_once(maria: Client, paula: User) -> None:
    now = timezone.now()
    link, token = issue_link(maria, by_user_id=paula.pk, at=now)
    assert _open(token)[0] == 200
    assert revoke_link(link, by_user_id=paula.pk, at=now) is True
    assert revoke_link(link, by_user_id=paula.pk, at=now) is False
    assert _open(token)[0] == 404
    assert AuditEntry.objects.filter(action="portal_link.revoked").count() == 1


# --- The page ----------------------------------------------------------------------------


def _english_texts(statuses: list[tuple[str, str]]) -> list[str]:
    """Every English sentence the portal could show: its own words, what the statuses
    shown mean, their FAQ, and the English month names."""
    words = [str(v) for v in all_texts()["en"].words.values()]
    for status, category in statuses:
        meaning = explanation(status, category, "en")
        answer = faq(status, category, "en")
        words += [meaning.title, meaning.happened, meaning.next_step, answer.answer]
    fragments = []
    for text in words:
        for fragment in re.split(r"\{\w+\}", text):
            fragment = fragment.strip(" .,:;?()“”")
            if len(fragment) >= 4:
                fragments.append(fragment)
    return fragments + list(languages()["en"].months)


def _english_left(html: str, language: str, statuses: list[tuple[str, str]]) -> list[str]:
    text = _readable(html, language)
    return [
        fragment
        for fragment in _english_texts(statuses)
        if re.search(rf"(?<!\w){re.escape(fragment)}(?!\w)", text)
    ]


def _statuses(client: Client) -> list[tuple[str, str]]:
    return list(Case.objects.filter(client=client).values_list("status", "category"))


def test_the_page_speaks_the_clients_language_with_no_english_left(
    maria: Client, paula: User
) -> None:
    _link, token = issue_link(maria, by_user_id=paula.pk, at=timezone.now())
    status, page = _open(token)
    assert status == 200 and '<html lang="es" dir="ltr">' in page
    assert _english_left(page, "es", _statuses(maria)) == []
    interview = explanation("interview_scheduled", "interview_scheduled", "es")
    assert escape(interview.title) in page and escape(interview.happened) in page
    assert escape(faq("interview_scheduled", "interview_scheduled", "es").question) in page
    # USCIS's own words stay as USCIS wrote them, marked as such.
    assert f'<q lang="en" dir="ltr">{INTERVIEW}</q>' in page and INTERVIEW_ES in page


def test_the_arabic_page_reads_right_to_left_with_no_english_left(
    maria: Client, paula: User
) -> None:
    _link, token = issue_link(maria, by_user_id=paula.pk, at=timezone.now())
    response = Browser().get(f"/portal/{token}/", {"lang": "ar"})
    page = response.content.decode()
    assert response.status_code == 200 and '<html lang="ar" dir="rtl">' in page
    assert response["Content-Language"] == "ar"
    assert _english_left(page, "ar", _statuses(maria)) == []
    assert escape(explanation("evidence_requested", "evidence_requested", "ar").title) in page


def test_the_language_chosen_on_the_page_is_remembered_for_that_browser_only(
    maria: Client, paula: User
) -> None:
    _link, token = issue_link(maria, by_user_id=paula.pk, at=timezone.now())
    browser = Browser()
    assert '<html lang="fr"' in _open(token, browser, lang="fr")[1]
    assert '<html lang="fr"' in _open(token, browser)[1]
    assert '<html lang="es"' in _open(token)[1]  # another browser: the client's own
    assert '<html lang="fr"' in _open(token, browser, lang="tlh")[1]  # not one of ours: ignored
    maria.refresh_from_db()
    assert maria.language == "es"  # the firm's record is not changed by the page
    page = _open(token, browser)[1]
    for code in CLIENT_LANGUAGES:
        assert f'lang="{code}"' in page  # every language offered, each named in itself


def test_the_page_shows_the_upcoming_interview_in_plain_words(maria: Client, paula: User) -> None:
    _link, token = issue_link(maria, by_user_id=paula.pk, at=timezone.now())
    deadline = Deadline.objects.get(case__client=maria, kind="interview")
    months = languages()["es"].months
    day = f"{deadline.due_on.day} de {months[deadline.due_on.month - 1]} de {deadline.due_on.year}"
    page = _open(token)[1]
    assert f"Su entrevista en USCIS: {day} a las 10:00." in page


def test_another_clients_cases_never_appear(
    firm: Firm, maria: Client, other_client: Client, paula: User
) -> None:
    elsewhere = Firm.objects.create(name="Other Firm", slug="other")
    stranger = Client.objects.create(firm=elsewhere, personal={"name": "Far Away"})
    Case.objects.create(firm=elsewhere, receipt_number="WAC2490000001", client=stranger)
    _link, token = issue_link(maria, by_user_id=paula.pk, at=timezone.now())
    page = _open(token)[1]
    for theirs in ("LIN2490099999", "Other Test Person", "WAC2490000001", "Far Away", "Other Firm"):
        assert theirs not in page
    _theirs, their_token = issue_link(other_client, by_user_id=paula.pk, at=timezone.now())
    theirs_page = _open(their_token)[1]
    assert "LIN2490099999" in theirs_page and "EAC2490012345" not in theirs_page


def test_the_page_names_the_client_by_first_name_only_and_escapes_everything(
    firm: Firm, paula: User
) -> None:
    firm.name = "Smith & <b>Sons</b> Law"
    firm.save()
    client = Client.objects.create(
        firm=firm, personal={"name": "<script>x</script> Lastname"}, language="en"
    )
    Case.objects.create(
        firm=firm, receipt_number="EAC2490000777", form_type="<i>I-90</i>", client=client
    )
    _link, token = issue_link(client, by_user_id=paula.pk, at=timezone.now())
    page = _open(token)[1]
    assert "<script>" not in page and "&lt;script&gt;x&lt;/script&gt;" in page
    assert "<b>Sons</b>" not in page and "Smith &amp; &lt;b&gt;Sons&lt;/b&gt; Law" in page
    assert "<i>I-90</i>" not in page
    assert "Lastname" not in page


def test_sandbox_data_says_so_in_the_clients_language(maria: Client, paula: User) -> None:
    _link, token = issue_link(maria, by_user_id=paula.pk, at=timezone.now())
    page = _open(token)[1]
    assert "Datos de prueba: no vienen de USCIS" in page
    Case.objects.filter(client=maria).update(source="uscis")
    assert "Datos de prueba" not in _open(token)[1]


def test_every_visit_is_counted_for_the_firm(maria: Client, paula: User) -> None:
    link, token = issue_link(maria, by_user_id=paula.pk, at=timezone.now())
    for _ in range(3):
        _open(token)
    _open("not-a-link")
    assert Browser().head(f"/portal/{token}/").status_code == 200  # a link checker, not a reader
    link.refresh_from_db()
    assert PortalVisit.objects.filter(firm=maria.firm, link=link).count() == 3
    assert link.last_visit_at is not None
    assert portal_figure(maria.firm_id, at=timezone.now()).visits == 3


def test_the_page_keeps_its_secret_address_to_itself(maria: Client, paula: User) -> None:
    _link, token = issue_link(maria, by_user_id=paula.pk, at=timezone.now())
    response = Browser().get(f"/portal/{token}/")
    assert response["Referrer-Policy"] == "no-referrer"
    assert "noindex" in response["X-Robots-Tag"]
    assert "no-store" in response["Cache-Control"] and "private" in response["Cache-Control"]
    assert "script-src" not in response["Content-Security-Policy"]
    assert "default-src 'none'" in response["Content-Security-Policy"]
    page = response.content.decode()
    assert '<meta name="robots" content="noindex, nofollow">' in page
    assert "<script" not in page and "<form" not in page
    assert 'href="/cases/' not in page and "Log out" not in page  # no staff navigation
    assert Browser().post(f"/portal/{token}/").status_code == 405


def test_every_client_language_has_all_the_portal_words() -> None:
    texts = all_texts()
    assert list(texts) == list(CLIENT_LANGUAGES)
    english = texts["en"].words
    for code, language in texts.items():
        assert set(language.words) == set(english), code
        if code != "en":
            same = [k for k, v in language.words.items() if v == english[k]]
            assert same == [], (code, same)
    assert texts["ar"].direction == "rtl" and texts["es"].direction == "ltr"


# --- Staff: create, see and revoke a client's links ----------------------------------------


def test_staff_create_a_link_that_is_shown_once_and_audited_without_the_secret(
    maria: Client, paula: User
) -> None:
    browser = Browser()
    sign_in(browser, paula)
    response = browser.post(f"/clients/{maria.pk}/portal-links/")
    assert response.status_code == 200 and response["Cache-Control"] == "no-store"
    page = response.content.decode()
    url = re.search(r'id="portal-url" class="secret" value="([^"]+)"', page)
    assert url is not None
    token = url.group(1).rstrip("/").rsplit("/", 1)[-1]
    assert _open(token)[0] == 200
    again = browser.get(f"/clients/{maria.pk}/contact/").content.decode()
    assert token not in again and "not opened yet" not in again  # opened once above
    entry = AuditEntry.objects.get(action="portal_link.created")
    assert entry.actor == f"user:{paula.pk}"
    assert token not in str(entry.details) and "María" not in str(entry.details)
    link = PortalLink.objects.get()
    assert link.created_by == paula and link.firm_id == maria.firm_id


def test_staff_revoke_a_link_from_the_contact_page(maria: Client, paula: User) -> None:
    link, token = issue_link(maria, by_user_id=paula.pk, at=timezone.now())
    browser = Browser()
    sign_in(browser, paula)
    page = browser.get(f"/clients/{maria.pk}/contact/").content.decode()
    assert f'action="/portal-links/{link.pk}/revoke/"' in page
    browser.post(f"/portal-links/{link.pk}/revoke/")
    assert _open(token)[0] == 404
    entry = AuditEntry.objects.get(action="portal_link.revoked")
    assert entry.actor == f"user:{paula.pk}" and entry.object_id == str(link.pk)
    assert (
        f"/portal-links/{link.pk}/revoke/"
        not in browser.get(f"/clients/{maria.pk}/contact/").content.decode()
    )


def test_front_desk_sees_the_links_but_may_not_create_or_revoke_them(
    firm: Firm, maria: Client, paula: User
) -> None:
    link, token = issue_link(maria, by_user_id=paula.pk, at=timezone.now())
    desk = Browser()
    sign_in(desk, _member(firm, "frank", Role.FRONT_DESK))
    page = desk.get(f"/clients/{maria.pk}/contact/").content.decode()
    assert "Create a portal link" not in page and "/revoke/" not in page
    assert desk.post(f"/clients/{maria.pk}/portal-links/").status_code == 403
    assert desk.post(f"/portal-links/{link.pk}/revoke/").status_code == 403
    assert _open(token)[0] == 200 and PortalLink.objects.count() == 1


def test_another_firms_link_cannot_be_revoked(maria: Client, paula: User) -> None:
    link, token = issue_link(maria, by_user_id=paula.pk, at=timezone.now())
    elsewhere = Firm.objects.create(name="Other Firm", slug="other")
    theirs = Browser()
    sign_in(theirs, _member(elsewhere, "olga", Role.ADMIN))
    assert theirs.post(f"/portal-links/{link.pk}/revoke/").status_code == 404
    assert theirs.get(f"/clients/{maria.pk}/contact/").status_code == 404
    assert _open(token)[0] == 200
