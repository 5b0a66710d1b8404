"""API tokens in the staff app: a firm's admins create one (its secret shown on that one
page and never again), see when each was last used, and revoke it; every step audited,
nobody else let in, and another firm's token answered as one that does not exist."""

from __future__ import annotations

import json
import re
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth.models import User
from django.test import Client as Browser
from django.urls import reverse

from casewatch.accounts.api_tokens import create_token, secret_hash
from casewatch.accounts.models import ApiToken, Firm, Membership, Role
from casewatch.audit.models import AuditEntry
from casewatch.cases.models import Case, Client
from tests.environment import sign_in
from tests.test_i18n import SPANISH, _english_left

pytestmark = pytest.mark.django_db

TOKENS = reverse("team-api-tokens")
CASES = "/api/v1/cases"
SECRET = re.compile(r'value="(cw_[A-Za-z0-9_-]+)"')


def _member(firm: Firm, username: str, role: str, time_zone: str = "") -> User:
    user = User.objects.create_user(username=username, password="correct horse battery")
    Membership.objects.create(firm=firm, user=user, role=role, time_zone=time_zone)
    return user


def _signed_in(user: User) -> Browser:
    browser = Browser()
    sign_in(browser, user)
    return browser


def _revoke_url(token: ApiToken) -> str:
    return reverse("team-api-token-revoke", args=[token.pk])


def _bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


@pytest.fixture
def firm() -> Firm:
    firm = Firm.objects.create(
        name="Example Immigration Law", slug="example", time_zone="America/New_York"
    )
    client = Client.objects.create(firm=firm, reference="c-1", personal={"name": "Fakey Client"})
    Case.objects.create(firm=firm, receipt_number="EAC2690012345", form_type="I-485", client=client)
    return firm


@pytest.fixture
def admin(firm: Firm) -> User:
    """An admin who reads dates in Pacific time while the firm keeps Eastern."""
    return _member(firm, "olga", Role.ADMIN, time_zone="America/Los_Angeles")


def _create(browser: Browser, name: str, scope: str, **headers: str) -> tuple[Any, str]:
    """The admin fills in the form; returns the page that answered and the secret on it."""
    page = browser.post(TOKENS, {"name": name, "scope": scope}, headers=headers)
    assert page.status_code == 200
    found = SECRET.findall(page.content.decode())
    assert len(found) == 1, "the new secret is on the page, once"
    return page, found[0]


# --- Creating ---------------------------------------------------------------------------


def test_the_team_page_leads_admins_to_the_tokens(firm: Firm, admin: User) -> None:
    team = _signed_in(admin).get(reverse("team"))
    assert f'href="{TOKENS}"' in team.content.decode()


def test_an_admin_creates_a_token_whose_secret_works_and_is_shown_only_on_that_page(
    firm: Firm, admin: User
) -> None:
    browser = _signed_in(admin)

    page, secret = _create(browser, "Docketwise sync", "read")

    assert "Copy it now: it is shown only this once." in page.content.decode()
    assert "no-store" in page["Cache-Control"]
    token = ApiToken.objects.get(firm=firm)
    assert (token.name, token.scope, token.created_by_id) == ("Docketwise sync", "read", admin.pk)
    assert token.secret_hash == secret_hash(secret)
    # Kept nowhere but in that answer: not in the session, not on the page afterwards.
    assert secret not in json.dumps(dict(browser.session.items()), default=str)
    again = browser.get(TOKENS).content.decode()
    assert "Docketwise sync" in again and secret not in again and not SECRET.search(again)

    answer = Browser().get(CASES, headers=_bearer(secret))
    assert answer.status_code == 200
    assert [c["receipt_number"] for c in answer.json()["items"]] == ["EAC2690012345"]


def test_reloading_the_page_that_showed_the_secret_makes_no_second_token(
    firm: Firm, admin: User
) -> None:
    browser = _signed_in(admin)
    form = browser.get(TOKENS).content.decode()
    (once,) = re.findall(r'name="once" value="([^"]+)"', form)
    sent = {"name": "Docketwise sync", "scope": "read", "once": once}
    assert SECRET.search(browser.post(TOKENS, sent).content.decode())

    reloaded = browser.post(TOKENS, sent, follow=True).content.decode()

    assert ApiToken.objects.filter(firm=firm).count() == 1
    assert "This form was already sent" in reloaded and not SECRET.search(reloaded)
    # The next form is a new one: it makes a token.
    (fresh,) = re.findall(r'name="once" value="([^"]+)"', reloaded)
    assert fresh != once
    _create(browser, "Clio export", "read")
    assert ApiToken.objects.filter(firm=firm).count() == 2


def test_a_read_token_made_on_the_page_cannot_write_and_a_write_token_can(
    firm: Firm, admin: User
) -> None:
    browser = _signed_in(admin)
    _, reader = _create(browser, "Reports", "read")
    _, writer = _create(browser, "Docketwise sync", "write")
    body = json.dumps(
        {"receipt_number": "EAC2690054321", "form_type": "I-130", "client_name": "Testa Fakeperson"}
    )

    refused = Browser().post(CASES, body, content_type="application/json", headers=_bearer(reader))
    added = Browser().post(CASES, body, content_type="application/json", headers=_bearer(writer))

    assert (refused.status_code, added.status_code) == (403, 201)


def test_a_token_needs_a_name_and_a_scope(firm: Firm, admin: User) -> None:
    browser = _signed_in(admin)
    for form in ({"name": "", "scope": "read"}, {"name": "Sync", "scope": "admin"}):
        page = browser.post(TOKENS, form)
        assert page.status_code == 200
        assert not SECRET.search(page.content.decode())
    assert not ApiToken.objects.exists()


# --- The list -----------------------------------------------------------------------------


def test_the_list_shows_each_tokens_last_use_in_the_members_time_zone(
    firm: Firm, admin: User
) -> None:
    browser = _signed_in(admin)
    _, secret = _create(browser, "Docketwise sync", "read")
    unused = create_token(firm, "write", name="Nightly export", actor="cli")
    assert "never" in browser.get(TOKENS).content.decode()

    assert Browser().get(CASES, headers=_bearer(secret)).status_code == 200

    token = ApiToken.objects.get(name="Docketwise sync")
    assert token.last_used_at is not None
    pacific = token.last_used_at.astimezone(ZoneInfo("America/Los_Angeles")).isoformat()
    listing = browser.get(TOKENS).content.decode()
    assert f'<time datetime="{pacific}">' in listing
    row = listing[listing.index("Nightly export") :].split("</tr>")[0]
    assert "never" in row and "Read and write" in row and "active" in row
    assert unused.token.last_used_at is None


# --- Revoking -----------------------------------------------------------------------------


def test_an_admin_revokes_a_token_after_confirming_and_the_api_refuses_it(
    firm: Firm, admin: User
) -> None:
    browser = _signed_in(admin)
    _, secret = _create(browser, "Docketwise sync", "read")
    token = ApiToken.objects.get(firm=firm)

    confirm = browser.get(_revoke_url(token))
    assert confirm.status_code == 200 and "Revoke the token" in confirm.content.decode()
    assert Browser().get(CASES, headers=_bearer(secret)).status_code == 200  # asking is not doing

    done = browser.post(_revoke_url(token))

    assert done.status_code == 302 and done["Location"] == TOKENS
    token.refresh_from_db()
    assert token.revoked_at is not None
    refused = Browser().get(CASES, headers=_bearer(secret))
    assert refused.status_code == 401
    listing = browser.get(TOKENS).content.decode()
    row = listing[listing.index("Docketwise sync") :].split("</tr>")[0]
    assert "revoked" in row and _revoke_url(token) not in row


def test_revoking_twice_changes_nothing_more(firm: Firm, admin: User) -> None:
    token = create_token(firm, "read", name="Old", actor="cli").token
    browser = _signed_in(admin)
    browser.post(_revoke_url(token))
    first = ApiToken.objects.get(pk=token.pk).revoked_at

    again = browser.post(_revoke_url(token))

    assert again.status_code == 302
    assert ApiToken.objects.get(pk=token.pk).revoked_at == first
    assert AuditEntry.objects.filter(action="api_token.revoked").count() == 1


# --- Who may ------------------------------------------------------------------------------


@pytest.mark.parametrize("role", [r for r in Role.values if r != Role.ADMIN])
def test_no_one_but_an_admin_may_see_create_or_revoke_tokens(firm: Firm, role: str) -> None:
    token = create_token(firm, "read", name="Reports", actor="cli").token
    browser = _signed_in(_member(firm, "someone", role))

    answers = [
        browser.get(TOKENS).status_code,
        browser.post(TOKENS, {"name": "Mine", "scope": "write"}).status_code,
        browser.get(_revoke_url(token)).status_code,
        browser.post(_revoke_url(token)).status_code,
    ]

    assert answers == [403, 403, 403, 403]
    assert ApiToken.objects.count() == 1
    assert ApiToken.objects.get().revoked_at is None


def test_nobody_signed_in_is_sent_to_log_in(firm: Firm) -> None:
    token = create_token(firm, "read", actor="cli").token
    for answer in (Browser().get(TOKENS), Browser().post(_revoke_url(token))):
        assert answer.status_code == 302 and answer["Location"].startswith("/login/")
    assert ApiToken.objects.get().revoked_at is None


def test_another_firms_token_is_answered_as_one_that_does_not_exist(
    firm: Firm, admin: User
) -> None:
    other = Firm.objects.create(name="Other Law", slug="other")
    theirs = create_token(other, "write", name="Their sync", actor="cli")
    browser = _signed_in(admin)

    answers = [browser.get(_revoke_url(theirs.token)), browser.post(_revoke_url(theirs.token))]

    assert [a.status_code for a in answers] == [404, 404]
    assert ApiToken.objects.get(pk=theirs.token.pk).revoked_at is None
    assert Browser().get(CASES, headers=_bearer(theirs.secret)).status_code == 200
    assert "Their sync" not in browser.get(TOKENS).content.decode()


# --- The audit trail ----------------------------------------------------------------------


def test_creating_and_revoking_are_audited_as_the_admin(firm: Firm, admin: User) -> None:
    browser = _signed_in(admin)
    _create(browser, "Docketwise sync", "write")
    token = ApiToken.objects.get(firm=firm)
    browser.post(_revoke_url(token))

    entries = [
        (e.action, e.actor, e.firm_id, e.object_type, e.object_id, e.details)
        for e in AuditEntry.objects.filter(action__startswith="api_token.").order_by("seq")
    ]

    assert entries == [
        (
            "api_token.created",
            f"user:{admin.pk}",
            firm.pk,
            "api_token",
            str(token.pk),
            {"scope": "write", "name": "Docketwise sync"},
        ),
        ("api_token.revoked", f"user:{admin.pk}", firm.pk, "api_token", str(token.pk), {}),
    ]


# --- In Spanish ---------------------------------------------------------------------------


def test_the_spanish_token_pages_have_no_english_left(firm: Firm, admin: User) -> None:
    browser = _signed_in(admin)
    used = create_token(firm, "read", name="Docketwise", created_by=admin, actor="cli")
    Browser().get(CASES, headers=_bearer(used.secret))
    revoked = create_token(firm, "write", name="Clio", actor="cli").token

    pages = {
        "revoked": browser.post(
            _revoke_url(revoked), headers={"accept-language": SPANISH}, follow=True
        ),
        "list": browser.get(TOKENS, headers={"accept-language": SPANISH}),
        "created": browser.post(
            TOKENS, {"name": "MyCase", "scope": "write"}, headers={"accept-language": SPANISH}
        ),
        "empty form": browser.post(TOKENS, {}, headers={"accept-language": SPANISH}),
        "confirm": browser.get(_revoke_url(used.token), headers={"accept-language": SPANISH}),
    }

    for name, page in pages.items():
        html = page.content.decode()
        assert page.status_code == 200, name
        assert _english_left(html) == [], name
    assert "Se revocó el token «Clio»" in pages["revoked"].content.decode()
    assert "Tokens de la API" in pages["list"].content.decode()
    assert "Copy it now" not in pages["created"].content.decode()
