"""Signing in: Argon2 passwords, two-factor sign-in (required for admins, optional for
everyone else, with one-time recovery codes), lockout after repeated wrong passwords,
CSRF on every form but the signed webhooks, and the security headers of every page."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any

import pytest
from axes.models import AccessAttempt
from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import User
from django.test import Client as Browser
from django.urls import URLPattern, get_resolver, reverse
from django.utils import timezone
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice

from casewatch import config
from casewatch.accounts.models import Firm, Membership, Role
from casewatch.accounts.signals import username_hash
from casewatch.audit.chain import staff_actor, verify
from casewatch.audit.models import AuditEntry
from casewatch.cli.main import main as casewatch
from casewatch.portal.views import POLICY as PORTAL_POLICY
from casewatch.uscis.sandbox.twilio_fake import twilio_signature
from casewatch.uscis.sandbox.whatsapp_fake import meta_signature
from tests.environment import authenticator_app, log_in, sign_in, totp_code

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery"
SET_UP = "/account/two-factor/"


@pytest.fixture
def firm() -> Firm:
    return Firm.objects.create(name="Example Immigration Law", slug="example")


def _member(firm: Firm, username: str, role: str = Role.PARALEGAL) -> Membership:
    user = User.objects.create_user(username=username, password=PASSWORD)
    return Membership.objects.create(firm=firm, user=user, role=role)


@pytest.fixture
def admin(firm: Firm) -> Membership:
    return _member(firm, "olga", Role.ADMIN)


@pytest.fixture
def paralegal(firm: Firm) -> Membership:
    return _member(firm, "paula")


def _entries(action: str) -> list[AuditEntry]:
    return list(AuditEntry.objects.filter(action=action).order_by("seq"))


class Visitor(Browser):
    """A browser that typed a password (right or wrong) and stopped there."""

    answer: Any


def _password_only(username: str, password: str = PASSWORD, **extra: Any) -> Visitor:
    browser = Visitor(**extra)
    browser.answer = browser.post("/login/", {"username": username, "password": password})
    return browser


def _a_while_later() -> None:
    """Time enough passes for django-otp to check a code again after a wrong one (it makes
    each wrong code wait longer: 1 s, 2 s, 4 s...)."""
    earlier = timezone.now() - timedelta(minutes=1)
    for model in (TOTPDevice, StaticDevice):
        model.objects.exclude(throttling_failure_timestamp=None).update(
            throttling_failure_timestamp=earlier
        )


def _set_up_app(browser: Browser) -> tuple[TOTPDevice, list[str]]:
    """What a member does on the set-up page: scan the code, type the app's code."""
    page = browser.get(SET_UP).content.decode()
    assert "<svg" in page and 'class="secret"' in page
    device = TOTPDevice.objects.get(confirmed=False)
    shown = browser.post(SET_UP, {"code": totp_code(device)})
    assert shown.status_code == 200, re.findall(r"errorlist.*", shown.content.decode())
    codes = re.findall(r"<li><code>([a-z2-7]{4}-[a-z2-7]{4})</code></li>", shown.content.decode())
    return TOTPDevice.objects.get(pk=device.pk), codes


# --- Passwords ---------------------------------------------------------------------------


def test_a_password_is_stored_as_an_argon2_hash(paralegal: Membership) -> None:
    assert paralegal.user.password.startswith("argon2$argon2id$")


def test_an_old_pbkdf2_hash_becomes_argon2_at_the_next_login(paralegal: Membership) -> None:
    old = make_password(PASSWORD, hasher="pbkdf2_sha256")
    User.objects.filter(pk=paralegal.user_id).update(password=old)
    assert _password_only("paula").answer.status_code == 302
    assert User.objects.get(pk=paralegal.user_id).password.startswith("argon2$")


# --- Two-factor sign-in ------------------------------------------------------------------


def test_once_a_member_sets_up_an_app_every_login_asks_for_its_code(
    paralegal: Membership,
) -> None:
    browser = Browser()
    sign_in(browser, paralegal.user)  # a paralegal may sign in with the password alone
    assert "Set up two-factor sign-in" in browser.get("/account/").content.decode()

    wrong = browser.post(SET_UP, {"code": "12345"})
    assert wrong.status_code == 400 and "That code did not match" in wrong.content.decode()
    _a_while_later()
    device, codes = _set_up_app(browser)
    assert device.confirmed and len(codes) == len(set(codes)) == 10
    [entry] = _entries("account.two_factor_set_up")
    assert entry.actor == staff_actor(paralegal.user_id)
    assert entry.details == {"remote_addr": "127.0.0.1", "recovery_codes": 10}
    assert "10 unused recovery codes" in browser.get("/account/").content.decode()

    later = _password_only("paula")
    assert later.answer["Location"] == "/login/code/?next=/"
    assert later.get("/cases/")["Location"] == "/login/code/?next=/cases/"
    assert later.post("/login/code/", {"code": totp_code(device), "next": "/cases/"})[
        "Location"
    ] == ("/cases/")
    assert later.get("/cases/").status_code == 200


def test_a_wrong_code_is_refused_and_recorded(paralegal: Membership) -> None:
    device = authenticator_app(paralegal.user)
    browser = _password_only("paula")
    right = totp_code(device)
    wrong = f"{(int(right) + 1) % 1_000_000:06d}"

    refused = browser.post("/login/code/", {"code": wrong})

    assert refused.status_code == 400
    assert "That code did not work" in refused.content.decode()
    assert browser.get("/cases/")["Location"].startswith("/login/code/")
    [entry] = _entries("account.two_factor_failed")
    assert entry.actor == staff_actor(paralegal.user_id)
    assert entry.details == {"remote_addr": "127.0.0.1"}
    assert "paula" not in entry.details_json
    assert verify().ok


def test_a_recovery_code_signs_in_once(paralegal: Membership) -> None:
    browser = Browser()
    sign_in(browser, paralegal.user)
    _, codes = _set_up_app(browser)

    no_phone = _password_only("paula")
    typed = codes[0].upper().replace("-", " ")  # as someone might type it from paper
    assert no_phone.post("/login/code/", {"code": typed})["Location"] == "/"
    assert no_phone.get("/cases/").status_code == 200
    [used] = _entries("account.recovery_code_used")
    assert used.details == {"remote_addr": "127.0.0.1", "recovery_codes_left": 9}

    again = _password_only("paula")
    assert again.post("/login/code/", {"code": codes[0]}).status_code == 400


def test_new_recovery_codes_replace_the_old_ones(paralegal: Membership) -> None:
    browser = Browser()
    sign_in(browser, paralegal.user)
    _, old = _set_up_app(browser)
    page = browser.post("/account/two-factor/recovery-codes/").content.decode()
    new = re.findall(r"<li><code>([a-z2-7]{4}-[a-z2-7]{4})</code></li>", page)
    assert len(new) == 10 and not set(new) & set(old)
    assert "The old ones no longer work" in page
    assert len(_entries("account.recovery_codes_regenerated")) == 1

    assert _password_only("paula").post("/login/code/", {"code": old[1]}).status_code == 400
    _a_while_later()
    assert _password_only("paula").post("/login/code/", {"code": new[1]}).status_code == 302


def _staff_pages() -> list[str]:
    """Every route behind the staff gate, with a made-up id where it takes one."""
    samples = {"int": 1, "string": "x", "path": "x", "slug": "x"}
    pages = []
    for pattern in get_resolver().url_patterns:
        if not isinstance(pattern, URLPattern):
            continue  # the REST API: bearer tokens, not staff sessions (tests/test_api.py)
        if not hasattr(pattern.callback, "staff_action"):
            continue
        names = {
            name: samples[type(converter).__name__.removesuffix("Converter").lower()]
            for name, converter in pattern.pattern.converters.items()
        }
        pages.append(reverse(str(pattern.name), kwargs=names))
    return pages


def test_an_admin_without_an_app_is_sent_to_set_one_up_from_every_staff_page(
    admin: Membership,
) -> None:
    browser = Browser()
    browser.force_login(admin.user)  # the password only
    pages = _staff_pages()
    assert len(pages) > 30 and "/cases/" in pages and SET_UP in pages
    for page in pages:
        answer = browser.get(page)
        if page == SET_UP:
            assert answer.status_code == 200
            shown = answer.content.decode()
            assert "You are an admin of your firm" in shown
            # The header leads nowhere that would only send the admin back here.
            assert 'href="/cases/"' not in shown and "Log out" in shown
        else:
            assert answer.status_code == 302, page
            assert answer["Location"].startswith(f"{SET_UP}?next="), page
    live_part = browser.get("/dashboard/changes/", headers={"HX-Request": "true"})
    assert live_part["HX-Redirect"] == f"{SET_UP}?next=/dashboard/changes/"

    _set_up_app(browser)
    assert browser.get("/cases/").status_code == 200


def test_an_admin_cannot_turn_two_factor_off_but_a_paralegal_can(
    admin: Membership, paralegal: Membership
) -> None:
    olga = Browser()
    sign_in(olga, admin.user)
    assert "cannot be turned off" in olga.get("/account/").content.decode()
    page = olga.post("/account/two-factor/off/", follow=True).content.decode()
    assert "Admins must use two-factor sign-in" in page
    assert TOTPDevice.objects.filter(user=admin.user).exists()

    paula = Browser()
    sign_in(paula, paralegal.user)
    _set_up_app(paula)
    paula.post("/account/two-factor/off/")
    assert not TOTPDevice.objects.filter(user=paralegal.user).exists()
    assert [e.object_id for e in _entries("account.two_factor_turned_off")] == [
        str(paralegal.user_id)
    ]
    assert _password_only("paula").answer["Location"] == "/"


def test_the_code_page_asks_a_stranger_to_log_in() -> None:
    assert Browser().get("/login/code/")["Location"].startswith("/login/?next=")


# --- Lockout -----------------------------------------------------------------------------


def test_five_wrong_passwords_lock_the_login_out_even_with_the_right_one(
    admin: Membership,
) -> None:
    for _ in range(4):
        assert _password_only("olga", "wrong password").answer.status_code == 200
    fifth = _password_only("Olga ", "wrong password").answer  # the same login, typed loosely
    assert fifth.status_code == 429

    locked = _password_only("olga").answer
    assert locked.status_code == 429
    text = locked.content.decode()
    assert "Login locked for now" in text
    assert "5 wrong passwords in a row" in text
    assert re.search(r"Try again in 1[45]\xa0minutes", text), text
    assert "even the right password is refused" in text
    [entry, *_] = _entries("account.locked_out")
    assert entry.details == {"username_hash": username_hash("olga"), "remote_addr": "127.0.0.1"}
    assert "olga" not in json.dumps([e.details for e in AuditEntry.objects.all()])

    # Another address is another guesser: the person at their own desk is not kept out.
    elsewhere = _password_only("olga", REMOTE_ADDR="203.0.113.7").answer
    assert elsewhere.status_code == 302

    # After the cool-off, the login may try again.
    AccessAttempt.objects.update(attempt_time=timezone.now() - timedelta(minutes=16))
    assert _password_only("olga").answer.status_code == 302
    assert verify().ok


def test_the_lockout_page_speaks_spanish(admin: Membership) -> None:
    for _ in range(5):
        _password_only("olga", "wrong password")
    page = _password_only("olga", headers={"accept-language": "es"}).answer
    assert page.status_code == 429
    assert "Inicio de sesión bloqueado por ahora" in page.content.decode()


def test_the_operator_unlocks_a_login_at_once(
    admin: Membership, capsys: pytest.CaptureFixture[str]
) -> None:
    for _ in range(5):
        _password_only("olga", "wrong password")
    assert _password_only("olga").answer.status_code == 429

    assert casewatch(["unlock", "OLGA"]) == 0
    assert "5 failed login(s) cleared" in capsys.readouterr().out
    assert _password_only("olga").answer.status_code == 302
    [entry] = _entries("account.unlocked")
    assert entry.details == {"username_hash": username_hash("olga"), "failed_logins_cleared": 5}


def test_the_operator_resets_a_lost_phone(admin: Membership) -> None:
    sign_in(Browser(), admin.user)
    assert casewatch(["unlock", "olga", "--two-factor"]) == 0
    assert not TOTPDevice.objects.filter(user=admin.user).exists()
    assert _password_only("olga").answer["Location"] == f"{SET_UP}?next=/"
    assert len(_entries("account.two_factor_reset")) == 1


# --- CSRF --------------------------------------------------------------------------------


def test_a_staff_form_posted_without_its_csrf_token_is_refused(paralegal: Membership) -> None:
    browser = Browser(enforce_csrf_checks=True)
    browser.force_login(paralegal.user)
    form = {"do": "preferences", "language": "es", "time_zone": ""}
    assert browser.post("/account/", form).status_code == 403
    page = browser.get("/account/").content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert token
    assert (
        browser.post("/account/", {**form, "csrfmiddlewaretoken": token.group(1)}).status_code
        == 302
    )


def test_the_login_form_needs_its_csrf_token_too(paralegal: Membership) -> None:
    browser = Browser(enforce_csrf_checks=True)
    refused = browser.post("/login/", {"username": "paula", "password": PASSWORD})
    assert refused.status_code == 403


def test_the_signed_provider_webhooks_need_no_csrf_token() -> None:
    browser = Browser(enforce_csrf_checks=True)
    body = json.dumps({"object": "whatsapp_business_account", "entry": []}).encode()
    signature = meta_signature(config.whatsapp_settings().app_secret, body)
    whatsapp = browser.post(
        "/webhooks/whatsapp",
        data=body,
        content_type="application/json",
        headers={"X-Hub-Signature-256": signature},
    )
    assert whatsapp.status_code == 200
    params = {"MessageSid": "SM" + "0" * 32, "MessageStatus": "delivered"}
    token = config.twilio_settings().auth_token
    signed = twilio_signature(token, "http://testserver/webhooks/twilio", params)
    twilio = browser.post("/webhooks/twilio", params, headers={"X-Twilio-Signature": signed})
    assert twilio.status_code == 200


# --- Headers and cookies -----------------------------------------------------------------


def _policy(response: Any) -> dict[str, str]:
    parts = (p.strip().split(" ", 1) for p in response["Content-Security-Policy"].split(";"))
    return {name: value for name, value in parts}


def test_staff_pages_carry_the_security_headers_and_a_strict_policy(
    paralegal: Membership,
) -> None:
    browser = Browser()
    sign_in(browser, paralegal.user)
    for page in ("/login/", "/cases/", "/"):
        response = browser.get(page, follow=True)
        policy = _policy(response)
        assert policy["default-src"] == "'self'" and policy["script-src"] == "'self'", page
        assert policy["style-src"] == "'self'" and policy["frame-ancestors"] == "'none'", page
        assert "unsafe" not in response["Content-Security-Policy"], page
        assert response["X-Frame-Options"] == "DENY", page
        assert response["X-Content-Type-Options"] == "nosniff", page
        assert response["Referrer-Policy"] == "same-origin", page
        assert response["Cross-Origin-Opener-Policy"] == "same-origin", page


def test_the_portal_keeps_its_own_stricter_policy() -> None:
    response = Browser().get("/portal/not-a-real-link/")
    assert response.status_code == 404
    assert response["Content-Security-Policy"] == PORTAL_POLICY
    assert response["Referrer-Policy"] == "no-referrer"


def test_cookies_are_secure_and_hsts_is_sent_when_the_public_address_is_https(
    paralegal: Membership, settings: Any
) -> None:
    assert config.transport_security(None) == {}
    assert config.transport_security("http://127.0.0.1:8000") == {}
    for name, value in config.transport_security("https://casewatch.example.org").items():
        setattr(settings, name, value)

    browser = Browser()
    page = browser.get("/login/", headers={"X-Forwarded-Proto": "https"})
    assert page["Strict-Transport-Security"] == "max-age=31536000"
    assert page.cookies["csrftoken"]["secure"] is True
    logged_in = log_in(browser, "paula", PASSWORD)
    assert logged_in.status_code == 200
    assert browser.cookies["sessionid"]["secure"] is True


def test_on_plain_http_the_cookies_still_work(paralegal: Membership) -> None:
    browser = Browser()
    log_in(browser, "paula", PASSWORD)
    assert browser.cookies["sessionid"]["secure"] == ""
    assert browser.cookies["sessionid"]["httponly"] is True
    assert browser.get("/cases/").status_code == 200
