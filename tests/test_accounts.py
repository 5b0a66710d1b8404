"""Accounts and roles: invitations by e-mail, password reset, sessions, who may do what.

E-mail goes through Django's SMTP backend, configured from CASEWATCH_SMTP_URL, to a
real SMTP server (aiosmtpd) on this machine.
"""

from __future__ import annotations

import email
import email.policy
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.contrib.sessions.models import Session
from django.core import signing
from django.test import Client as Browser
from django.urls import URLPattern, get_resolver
from django.utils import timezone

from casewatch import config
from casewatch.accounts import team
from casewatch.accounts.models import Firm, Invitation, Membership, Role
from casewatch.accounts.permissions import ALLOWED, PERSONAL, READS, Action, may
from casewatch.audit.models import AuditEntry
from casewatch.cases.models import Case
from casewatch.web.middleware import SEEN_KEY
from tests.environment import log_in, sign_in
from tests.test_cli import _free_port

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery"
NEW_PASSWORD = "a new staple in the battery"


class Mailbox:
    """What a real SMTP server received, parsed as the recipient's mail program would."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.logins: list[bytes] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append(message)
        return "250 Message accepted for delivery"

    def last_text(self) -> str:
        body = self.messages[-1].get_body(preferencelist=("plain",))
        assert body is not None
        return str(body.get_content())


@pytest.fixture
def mailbox(monkeypatch: pytest.MonkeyPatch, settings: Any) -> Iterator[Mailbox]:
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword

    box = Mailbox()

    def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
            b"casewatch",
            b"s3cret/pass",
        )
        if ok:
            box.logins.append(data.login)
        return AuthResult(success=ok)

    port = _free_port()
    controller = Controller(
        box,
        hostname="127.0.0.1",
        port=port,
        authenticator=authenticate,
        auth_require_tls=False,
    )
    controller.start()
    # The operator's setting, read by the same code as settings.py reads it.
    monkeypatch.setenv("CASEWATCH_SMTP_URL", f"smtp://casewatch:s3cret%2Fpass@127.0.0.1:{port}")
    mail = config.mail_settings()
    settings.EMAIL_BACKEND = mail.backend
    settings.EMAIL_HOST, settings.EMAIL_PORT = mail.host, mail.port
    settings.EMAIL_HOST_USER, settings.EMAIL_HOST_PASSWORD = mail.username, mail.password
    settings.EMAIL_USE_TLS, settings.EMAIL_USE_SSL = mail.starttls, mail.ssl
    try:
        yield box
    finally:
        controller.stop()


@pytest.fixture
def firm() -> Firm:
    return Firm.objects.create(name="Example Immigration Law", slug="example")


def _member(firm: Firm, username: str, role: str, *, email: str = "") -> Membership:
    user = User.objects.create_user(username=username, password=PASSWORD, email=email)
    return Membership.objects.create(firm=firm, user=user, role=role)


@pytest.fixture
def admin(firm: Firm) -> Membership:
    return _member(firm, "olga", Role.ADMIN, email="olga@example-law.test")


def _browser_for(membership: Membership) -> Browser:
    browser = Browser()
    sign_in(browser, membership.user)
    return browser


def _link_path(text: str) -> str:
    match = re.search(r"https?://[^/\s]+(/\S+)", text)
    assert match, text
    return match.group(1)


# --- Invitations -------------------------------------------------------------------


def test_an_admin_invites_a_paralegal_who_chooses_a_password_and_is_logged_in(
    firm: Firm, admin: Membership, mailbox: Mailbox
) -> None:
    page = _browser_for(admin).post(
        "/team/",
        {"email": "Paula@Example-Law.test", "role": Role.PARALEGAL, "language": "en"},
        follow=True,
    )
    assert "Invitation sent to paula@example-law.test." in page.content.decode()
    assert "paula@example-law.test" in page.content.decode()  # listed as an open invitation

    assert mailbox.logins == [b"casewatch"]
    [message] = mailbox.messages
    assert message["To"] == "paula@example-law.test"
    assert message["Subject"] == "You are invited to Example Immigration Law on casewatch"
    text = mailbox.last_text()
    assert "olga invites you to Example Immigration Law" in text and "as Paralegal" in text

    invitee = Browser()
    link = _link_path(text)
    form = invitee.get(link).content.decode()
    assert "Join Example Immigration Law" in form
    assert "You will log in with paula@example-law.test" in form
    joined = invitee.post(
        link,
        {"name": "Paula Gómez", "new_password1": PASSWORD, "new_password2": PASSWORD},
        follow=True,
    )
    assert "Welcome to Example Immigration Law on casewatch." in joined.content.decode()
    assert joined.redirect_chain[-1][0] == "/welcome/"  # logged in, and the firm is empty

    membership = Membership.objects.get(firm=firm, user__email="paula@example-law.test")
    assert membership.role == Role.PARALEGAL
    assert membership.user.get_full_name() == "Paula Gómez"
    assert Browser().login(username="paula@example-law.test", password=PASSWORD)
    assert AuditEntry.objects.filter(action="member.joined").count() == 1

    again = Browser().get(link)
    assert again.status_code == 410
    assert "This invitation was used already." in again.content.decode()


def test_an_invitation_in_spanish_is_written_and_answered_in_spanish(
    firm: Firm, admin: Membership, mailbox: Mailbox
) -> None:
    _browser_for(admin).post(
        "/team/", {"email": "luis@example-law.test", "role": Role.ATTORNEY, "language": "es"}
    )
    assert mailbox.messages[-1]["Subject"] == "Le invitan a Example Immigration Law en casewatch"
    text = mailbox.last_text()
    assert "como Abogado" in text
    page = Browser().get(_link_path(text)).content.decode()
    assert "Únase a Example Immigration Law" in page and 'lang="es"' in page
    refused = Browser().post(
        _link_path(text),
        {"name": "Luis", "new_password1": PASSWORD, "new_password2": "something else"},
    )
    assert "Los dos campos de contraseña no coinciden." in refused.content.decode()
    assert not User.objects.filter(email="luis@example-law.test").exists()


def test_an_expired_invitation_link_is_refused_with_a_clear_message(
    firm: Firm, admin: Membership
) -> None:
    invitation = team.invite(
        firm,
        "late@example-law.test",
        Role.PARALEGAL,
        invited_by=admin.user,
        now=datetime(2020, 1, 1, tzinfo=UTC),
    )
    page = Browser().get(f"/invitations/{team.link_token(invitation)}/")
    assert page.status_code == 410
    assert "This invitation has expired. Ask your firm's admin for a new one." in (
        page.content.decode().replace("&#x27;", "'")
    )
    refused = Browser().post(
        f"/invitations/{team.link_token(invitation)}/",
        {"new_password1": PASSWORD, "new_password2": PASSWORD},
    )
    assert refused.status_code == 410
    assert not User.objects.filter(email="late@example-law.test").exists()


def test_a_forged_or_altered_invitation_link_is_refused(firm: Firm, admin: Membership) -> None:
    invitation = team.invite(firm, "new@example-law.test", Role.PARALEGAL, invited_by=admin.user)
    token = team.link_token(invitation)
    forgeries = [
        token[:-1] + ("A" if token[-1] != "A" else "B"),  # altered signature
        signing.dumps(invitation.pk, salt="some other purpose"),  # signed for something else
        signing.dumps(invitation.pk, key="not the site's key", salt=team.INVITATION_SALT),
        "made-up",
    ]
    for forged in forgeries:
        page = Browser().get(f"/invitations/{forged}/")
        assert page.status_code == 400, forged
        assert "This invitation link is not valid." in page.content.decode()


def test_a_withdrawn_invitation_cannot_be_used(firm: Firm, admin: Membership) -> None:
    invitation = team.invite(firm, "gone@example-law.test", Role.PARALEGAL, invited_by=admin.user)
    link = f"/invitations/{team.link_token(invitation)}/"
    _browser_for(admin).post(f"/team/invitations/{invitation.pk}/withdraw/")
    page = Browser().get(link)
    assert page.status_code == 410
    assert "This invitation was withdrawn" in page.content.decode()


def test_inviting_someone_again_replaces_the_first_link(firm: Firm, admin: Membership) -> None:
    first = team.invite(firm, "twice@example-law.test", Role.PARALEGAL, invited_by=admin.user)
    second = team.invite(firm, "twice@example-law.test", Role.ATTORNEY, invited_by=admin.user)
    assert Browser().get(f"/invitations/{team.link_token(first)}/").status_code == 410
    assert Browser().get(f"/invitations/{team.link_token(second)}/").status_code == 200


def test_an_address_that_already_logs_in_cannot_be_invited(
    firm: Firm, admin: Membership, mailbox: Mailbox
) -> None:
    page = _browser_for(admin).post(
        "/team/", {"email": "OLGA@example-law.test", "role": Role.ATTORNEY, "language": "en"}
    )
    assert "Someone already logs in with this e-mail address." in page.content.decode()
    assert not Invitation.objects.exists() and not mailbox.messages


def test_an_attorney_named_in_an_import_is_invited_and_keeps_their_cases(
    firm: Firm, admin: Membership, mailbox: Mailbox
) -> None:
    placeholder_user = User.objects.create(username="ana.ruiz", first_name="Ana", last_name="Ruiz")
    placeholder_user.is_active = False
    placeholder_user.set_unusable_password()
    placeholder_user.save()
    placeholder = Membership.objects.create(firm=firm, user=placeholder_user, role=Role.ATTORNEY)
    case = Case.objects.create(firm=firm, receipt_number="EAC2490012345", attorney=placeholder_user)

    team_page = _browser_for(admin).get("/team/").content.decode()
    assert "Ana Ruiz" in team_page and "not yet" in team_page
    _browser_for(admin).post(
        "/team/",
        {
            "email": "ana@example-law.test",
            "role": Role.ATTORNEY,
            "language": "en",
            "member": placeholder.pk,
        },
    )
    link = _link_path(mailbox.last_text())
    Browser().post(link, {"name": "", "new_password1": PASSWORD, "new_password2": PASSWORD})

    placeholder_user.refresh_from_db()
    assert placeholder_user.is_active and placeholder_user.email == "ana@example-law.test"
    assert placeholder_user.get_full_name() == "Ana Ruiz"
    assert Browser().login(username="ana@example-law.test", password=PASSWORD)
    assert Case.objects.get(pk=case.pk).attorney == placeholder_user
    assert Membership.objects.filter(firm=firm).count() == 2


def test_a_mail_server_that_refuses_leaves_the_invitation_open_and_says_so(
    firm: Firm, admin: Membership, settings: Any
) -> None:
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", _free_port()  # nothing listens
    settings.EMAIL_TIMEOUT = 5
    page = _browser_for(admin).post(
        "/team/",
        {"email": "x@example-law.test", "role": Role.PARALEGAL, "language": "en"},
        follow=True,
    )
    assert "could not be sent: the mail server did not take it" in page.content.decode()
    assert Invitation.objects.filter(email="x@example-law.test").exists()


# --- Password reset ----------------------------------------------------------------


def test_a_member_resets_a_forgotten_password_by_e_mail(
    firm: Firm, admin: Membership, mailbox: Mailbox
) -> None:
    browser = Browser()
    login_page = browser.get("/login/").content.decode()
    assert 'href="/password/reset/"' in login_page
    sent = browser.post("/password/reset/", {"email": "olga@example-law.test"}, follow=True)
    assert "Check your e-mail" in sent.content.decode()
    assert mailbox.messages[-1]["Subject"] == "Choose a new casewatch password"
    text = mailbox.last_text()
    assert "the login olga" in text

    form = browser.get(_link_path(text), follow=True)
    assert "Choose a new password" in form.content.decode()
    done = browser.post(
        form.redirect_chain[-1][0],
        {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
        follow=True,
    )
    assert "Your new password is saved." in done.content.decode()
    assert Browser().login(username="olga", password=NEW_PASSWORD)
    assert not Browser().login(username="olga", password=PASSWORD)

    reused = Browser().get(_link_path(text), follow=True).content.decode()
    assert "This link cannot be used" in reused


def test_a_password_reset_for_an_unknown_address_sends_nothing_and_says_the_same(
    firm: Firm, admin: Membership, mailbox: Mailbox
) -> None:
    sent = Browser().post("/password/reset/", {"email": "nobody@example.test"}, follow=True)
    assert "Check your e-mail" in sent.content.decode()
    assert mailbox.messages == []


def test_e_mailed_links_use_the_public_address_when_one_is_set(
    firm: Firm, admin: Membership, mailbox: Mailbox, settings: Any
) -> None:
    settings.CASEWATCH_PUBLIC_URL = "https://casewatch.example-law.test"
    Browser().post(
        "/password/reset/", {"email": "olga@example-law.test"}, headers={"host": "evil.test"}
    )
    assert "https://casewatch.example-law.test/password/reset/" in mailbox.last_text()
    assert "evil.test" not in mailbox.last_text()


# --- Who may do what ---------------------------------------------------------------


def test_front_desk_may_look_at_everything_and_change_nothing_of_the_firms() -> None:
    for action in Action:
        if action in READS or action in PERSONAL:
            assert may(Role.FRONT_DESK, action)
        else:
            assert not may(Role.FRONT_DESK, action), action
    assert set(ALLOWED) == set(Action)


def _staff_routes() -> list[URLPattern]:
    return [
        p
        for p in get_resolver().url_patterns
        if isinstance(p, URLPattern) and hasattr(p.callback, "staff_action")
    ]


def test_every_request_from_front_desk_that_would_change_firm_data_is_refused(
    firm: Firm, admin: Membership
) -> None:
    desk = _member(firm, "frank", Role.FRONT_DESK)
    invitation = team.invite(
        firm, "someone@example-law.test", Role.PARALEGAL, invited_by=admin.user
    )
    case = Case.objects.create(firm=firm, receipt_number="EAC2490012345")
    ids = {"team-withdraw": invitation.pk, "case-detail": case.pk}
    browser = _browser_for(desk)
    routes = _staff_routes()
    assert len(routes) >= 7
    for route in routes:
        if route.callback.staff_change in PERSONAL:  # type: ignore[attr-defined]
            continue  # the member's own settings (what they have seen), not the firm's data
        kwargs = (
            {"pk": ids.get(route.name or "", admin.pk)} if "<int:pk>" in str(route.pattern) else {}
        )
        path = "/" + str(route.pattern).replace("<int:pk>", str(kwargs.get("pk", "")))
        response = browser.post(path, {"role": Role.FRONT_DESK, "email": "x@example-law.test"})
        assert response.status_code in (403, 405), (path, response.status_code)
    admin.refresh_from_db()
    assert admin.role == Role.ADMIN and Invitation.objects.filter(pk=invitation.pk).exists()
    assert Membership.objects.filter(firm=firm).count() == 2


def test_front_desk_may_still_choose_their_own_language(firm: Firm) -> None:
    desk = _member(firm, "frank", Role.FRONT_DESK)
    response = _browser_for(desk).post("/language/", {"language": "es", "next": "/cases/"})
    assert response.status_code == 302
    desk.refresh_from_db()
    assert desk.language == "es"


def test_only_admins_see_the_team_page(firm: Firm, admin: Membership) -> None:
    for role in (Role.ATTORNEY, Role.PARALEGAL, Role.OPERATIONS, Role.FRONT_DESK):
        member = _member(firm, f"someone-{role}", role)
        assert _browser_for(member).get("/team/").status_code == 403
        assert 'href="/team/"' not in _browser_for(member).get("/welcome/").content.decode()
    page = _browser_for(admin).get("/team/")
    assert page.status_code == 200 and 'href="/team/"' in page.content.decode()


def test_another_firms_members_and_invitations_are_not_found(firm: Firm, admin: Membership) -> None:
    other = Firm.objects.create(name="Other Firm", slug="other")
    their_admin = _member(other, "theirs", Role.ADMIN)
    their_paralegal = _member(other, "their-paralegal", Role.PARALEGAL)
    their_invitation = team.invite(
        other, "x@other.test", Role.PARALEGAL, invited_by=their_admin.user
    )
    browser = _browser_for(admin)
    assert (
        browser.post(f"/team/members/{their_paralegal.pk}/role/", {"role": "admin"}).status_code
        == 404
    )
    assert browser.get(f"/team/members/{their_paralegal.pk}/remove/").status_code == 404
    assert browser.post(f"/team/members/{their_paralegal.pk}/remove/").status_code == 404
    assert browser.post(f"/team/invitations/{their_invitation.pk}/withdraw/").status_code == 404
    placeholder_post = browser.post(
        "/team/",
        {"email": "y@x.test", "role": "paralegal", "language": "en", "member": their_paralegal.pk},
    )
    assert placeholder_post.status_code == 404
    their_paralegal.refresh_from_db()
    assert their_paralegal.role == Role.PARALEGAL
    assert Invitation.objects.filter(pk=their_invitation.pk).exists()
    assert "their-paralegal" not in browser.get("/team/").content.decode()


# --- The Team page -----------------------------------------------------------------


def test_an_admin_changes_a_role_and_removes_a_member(firm: Firm, admin: Membership) -> None:
    paula = _member(firm, "paula", Role.PARALEGAL)
    paulas_browser = _browser_for(paula)
    browser = _browser_for(admin)

    changed = browser.post(f"/team/members/{paula.pk}/role/", {"role": Role.ATTORNEY}, follow=True)
    assert "paula is now Attorney." in changed.content.decode()
    paula.refresh_from_db()
    assert paula.role == Role.ATTORNEY

    confirm = browser.get(f"/team/members/{paula.pk}/remove/").content.decode()
    assert "Remove paula?" in confirm and 'method="post"' in confirm
    removed = browser.post(f"/team/members/{paula.pk}/remove/", follow=True)
    assert "paula was removed from the firm." in removed.content.decode()
    assert not Membership.objects.filter(pk=paula.pk).exists()
    assert not Browser().login(username="paula", password=PASSWORD)
    # A session she still had open no longer lets her in.
    assert paulas_browser.get("/cases/").status_code == 302
    assert AuditEntry.objects.filter(action="member.removed").count() == 1


def test_a_firm_always_keeps_an_admin(firm: Firm, admin: Membership) -> None:
    browser = _browser_for(admin)
    demoted = browser.post(f"/team/members/{admin.pk}/role/", {"role": Role.PARALEGAL}, follow=True)
    assert "A firm needs at least one admin." in demoted.content.decode()
    admin.refresh_from_db()
    assert admin.role == Role.ADMIN
    refused = browser.post(f"/team/members/{admin.pk}/remove/", follow=True)
    assert "You cannot remove yourself." in refused.content.decode()

    second = _member(firm, "sam", Role.ADMIN)
    browser.post(f"/team/members/{admin.pk}/role/", {"role": Role.ATTORNEY})
    admin.refresh_from_db()
    assert admin.role == Role.ATTORNEY and second.role == Role.ADMIN


# --- Sessions ----------------------------------------------------------------------


def _log_in(browser: Browser, username: str = "olga", password: str = PASSWORD) -> Any:
    return log_in(browser, username, password)


def test_logging_in_and_out(firm: Firm, admin: Membership) -> None:
    browser = Browser()
    assert "do not match" in _log_in(browser, password="wrong").content.decode()
    landed = _log_in(browser)
    assert landed.redirect_chain[-1][0] == "/welcome/"
    browser.post("/logout/")
    assert browser.get("/cases/").status_code == 302
    assert not Session.objects.exists()


def test_a_session_unused_for_longer_than_the_idle_limit_ends(
    firm: Firm, admin: Membership
) -> None:
    browser = Browser()
    _log_in(browser)
    assert browser.get("/cases/").status_code == 200
    Session.objects.update(expire_date=timezone.now() - timedelta(seconds=1))
    page = browser.get("/cases/", follow=True)
    assert page.redirect_chain[0][0].startswith("/login/")


def test_a_session_in_use_stays_alive(firm: Firm, admin: Membership) -> None:
    browser = Browser()
    _log_in(browser)
    session = Session.objects.get()
    data = session.get_decoded()
    data[SEEN_KEY] = 0  # last touched long ago
    soon = timezone.now() + timedelta(minutes=1)
    Session.objects.filter(pk=session.pk).update(
        session_data=Session.objects.encode(data), expire_date=soon
    )
    assert browser.get("/cases/").status_code == 200
    assert Session.objects.get().expire_date > soon


def test_the_idle_limit_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CASEWATCH_SESSION_IDLE_MINUTES", "30")
    assert config.session_idle_seconds() == 1800
    monkeypatch.delenv("CASEWATCH_SESSION_IDLE_MINUTES")
    assert config.session_idle_seconds() == 12 * 3600
    monkeypatch.setenv("CASEWATCH_SESSION_IDLE_MINUTES", "soon")
    with pytest.raises(config.ConfigError, match="CASEWATCH_SESSION_IDLE_MINUTES"):
        config.session_idle_seconds()


# --- Mail settings -----------------------------------------------------------------


def test_the_smtp_url_names_server_login_and_encryption(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "CASEWATCH_SMTP_URL", "smtp://me%40firm.test:p%40ss@mail.firm.test:587?starttls=1"
    )
    mail = config.mail_settings()
    assert (mail.host, mail.port, mail.username, mail.password) == (
        "mail.firm.test",
        587,
        "me@firm.test",
        "p@ss",
    )
    assert mail.starttls and not mail.ssl
    monkeypatch.setenv("CASEWATCH_SMTP_URL", "smtps://mail.firm.test")
    mail = config.mail_settings()
    assert (mail.port, mail.ssl, mail.starttls, mail.username) == (465, True, False, "")
    for bad in ("http://mail.firm.test", "smtp://", "smtp://h:port", "smtps://h?starttls=1"):
        monkeypatch.setenv("CASEWATCH_SMTP_URL", bad)
        with pytest.raises(config.ConfigError, match="CASEWATCH_SMTP_URL"):
            config.mail_settings()


def test_without_an_smtp_url_mail_is_kept_in_the_data_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.delenv("CASEWATCH_SMTP_URL", raising=False)
    monkeypatch.setenv("CASEWATCH_DATA_DIR", str(tmp_path))
    mail = config.mail_settings()
    assert mail.backend == "casewatch.notify.mail_capture.EncryptedFileBackend"
    assert mail.capture_dir == tmp_path / "mail"


def test_a_former_member_who_is_invited_again_gets_their_login_back(
    firm: Firm, admin: Membership
) -> None:
    paula = _member(firm, "paula@example-law.test", Role.PARALEGAL, email="paula@example-law.test")
    team.remove(paula, actor=admin.user)
    invitation = team.invite(firm, "paula@example-law.test", Role.ATTORNEY, invited_by=admin.user)
    user = team.accept(invitation, password=NEW_PASSWORD, name="")
    assert user.pk == paula.user_id and user.username == "paula@example-law.test"
    assert Membership.objects.get(user=user).role == Role.ATTORNEY


def test_coming_back_never_opens_another_firms_cases(firm: Firm, admin: Membership) -> None:
    other = Firm.objects.create(name="Other Firm", slug="other")
    named_there = User.objects.create(username="ana", email="ana@example.test", is_active=False)
    Membership.objects.create(firm=other, user=named_there, role=Role.ATTORNEY)
    invitation = team.invite(firm, "ana@example.test", Role.ATTORNEY, invited_by=admin.user)
    user = team.accept(invitation, password=NEW_PASSWORD, name="Ana")
    assert user.pk != named_there.pk
    assert list(Membership.objects.filter(user=user).values_list("firm_id", flat=True)) == [firm.pk]
