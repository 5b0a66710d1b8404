"""My account: every member changes their password, e-mail address, language and time
zone; an admin names the firm and sets its time zone; each change audited without an
e-mail address in it. And the header's firm switcher, for a member of several firms."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core import mail
from django.test import Client as Browser
from django_otp.plugins.otp_totp.models import TOTPDevice

from casewatch.accounts.firms import FIRST_ADMIN_USERNAME, create_first_admin
from casewatch.accounts.models import Firm, Membership, Role
from casewatch.audit.chain import verify
from casewatch.audit.models import AuditEntry
from casewatch.cases.models import Case, Client
from tests.environment import sign_in, totp_code
from tests.test_i18n import SPANISH, _english_left

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery"
NEW_PASSWORD = "a much longer passphrase 42"


@pytest.fixture
def firm() -> Firm:
    return Firm.objects.create(name="Example Immigration Law", slug="example")


def _member(firm: Firm, username: str, role: str = Role.PARALEGAL, **fields: Any) -> Membership:
    user = User.objects.create_user(username=username, password=PASSWORD, **fields)
    return Membership.objects.create(firm=firm, user=user, role=role)


def _browser(member: Membership, language: str = "en") -> Browser:
    browser = Browser(headers={"accept-language": language})
    sign_in(browser, member.user)
    return browser


def _entries(action: str) -> list[AuditEntry]:
    return list(AuditEntry.objects.filter(action=action).order_by("seq"))


# --- The page ---------------------------------------------------------------------------


def test_every_page_links_to_my_account(firm: Firm) -> None:
    desk = _member(firm, "frank", Role.FRONT_DESK)
    page = _browser(desk).get("/welcome/").content.decode()
    assert '<a href="/account/">My account</a>' in page
    account = _browser(desk).get("/account/")
    assert account.status_code == 200
    html = account.content.decode()
    assert 'name="old_password"' in html and 'name="email"' in html
    assert 'name="language"' in html and 'name="time_zone"' in html
    assert 'name="firm-name"' not in html  # the firm's settings are an admin's


def test_my_account_asks_an_anonymous_visitor_to_log_in() -> None:
    response = Browser().get("/account/")
    assert response.status_code == 302 and response["Location"].startswith("/login/")


# --- Password -------------------------------------------------------------------------


def test_a_member_changes_their_password_stays_logged_in_and_it_is_audited(firm: Firm) -> None:
    paula = _member(firm, "paula")
    browser = _browser(paula)
    response = browser.post(
        "/account/",
        {
            "do": "password",
            "old_password": PASSWORD,
            "new_password1": NEW_PASSWORD,
            "new_password2": NEW_PASSWORD,
        },
    )
    assert response.status_code == 302 and response["Location"] == "/account/"
    user = User.objects.get(pk=paula.user_id)
    assert user.check_password(NEW_PASSWORD) and not user.check_password(PASSWORD)
    assert "Your password is changed." in browser.get("/account/").content.decode()  # still in
    [entry] = _entries("account.password_changed")
    assert entry.actor == f"user:{paula.user_id}" and entry.firm_id == firm.pk
    assert (entry.object_type, entry.object_id) == ("user", str(paula.user_id))
    assert PASSWORD not in entry.details_json and NEW_PASSWORD not in entry.details_json
    assert Browser().login(username="paula", password=NEW_PASSWORD)
    assert verify().ok


def test_a_wrong_current_password_changes_nothing(firm: Firm) -> None:
    paula = _member(firm, "paula")
    response = _browser(paula).post(
        "/account/",
        {
            "do": "password",
            "old_password": "not it at all",
            "new_password1": NEW_PASSWORD,
            "new_password2": NEW_PASSWORD,
        },
    )
    assert response.status_code == 400
    assert "Your old password was entered incorrectly" in response.content.decode()
    assert User.objects.get(pk=paula.user_id).check_password(PASSWORD)
    assert not _entries("account.password_changed")


# --- E-mail address ---------------------------------------------------------------------


def test_the_first_admin_is_nudged_to_add_an_email_then_can_reset_the_password_by_email(
    firm: Firm,
) -> None:
    first = create_first_admin(firm)
    assert first is not None
    browser = Browser()
    landed = browser.post(
        "/login/", {"username": first.username, "password": first.password}, follow=True
    )
    # The first login of an admin sets up two-factor sign-in before anything else.
    assert landed.redirect_chain[-1][0] == "/account/two-factor/?next=/"
    assert "You are an admin of your firm" in landed.content.decode()
    app = TOTPDevice.objects.get(user__username=first.username, confirmed=False)
    codes = browser.post("/account/two-factor/", {"code": totp_code(app), "next": "/"})
    assert "Your recovery codes" in codes.content.decode()
    landed = browser.get("/", follow=True)
    assert landed.redirect_chain[-1][0] == "/welcome/"
    welcome = landed.content.decode()
    assert "You have no e-mail address here yet, so a forgotten password cannot be reset." in (
        welcome
    )
    assert 'href="/account/#email"' in welcome

    # Without an e-mail address, asking for a reset link sends nothing.
    Browser().post("/password/reset/", {"email": "olga.admin@example.com"})
    assert mail.outbox == []

    saved = browser.post("/account/", {"do": "email", "email": "Olga.Admin@EXAMPLE.com"})
    assert saved.status_code == 302
    admin = User.objects.get(username=FIRST_ADMIN_USERNAME)
    assert admin.email == "Olga.Admin@example.com"  # the domain normalized
    [entry] = _entries("account.email_changed")
    assert json.loads(entry.details_json) == {"had_email": False}
    assert "example.com" not in entry.details_json and "Olga" not in entry.details_json
    assert "You have no e-mail address" not in browser.get("/welcome/").content.decode()

    Browser().post("/password/reset/", {"email": "olga.admin@example.com"})
    [message] = mail.outbox
    assert message.to == ["Olga.Admin@example.com"]
    link = re.search(r"https?://[^\s]+/password/reset/[^\s]+/", str(message.body))
    assert link, message.body
    stranger = Browser()
    form = stranger.get(link.group(0).split("testserver", 1)[-1], follow=True)
    set_url = form.redirect_chain[-1][0]
    done = stranger.post(set_url, {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
    assert done.status_code == 302
    assert Browser().login(username=FIRST_ADMIN_USERNAME, password=NEW_PASSWORD)
    assert verify().ok


def test_an_email_address_is_checked_and_belongs_to_one_person(firm: Firm) -> None:
    _member(firm, "olga", email="olga@example.com")
    paula = _member(firm, "paula")
    browser = _browser(paula)
    taken = browser.post("/account/", {"do": "email", "email": "OLGA@example.com"})
    assert taken.status_code == 400
    assert "Another account uses this e-mail address." in taken.content.decode()
    broken = browser.post("/account/", {"do": "email", "email": "paula at example"})
    assert broken.status_code == 400
    assert User.objects.get(pk=paula.user_id).email == ""
    assert not _entries("account.email_changed")


# --- Language and time zone -------------------------------------------------------------


def test_language_and_time_zone_are_the_persons_in_each_of_their_firms(firm: Firm) -> None:
    other = Firm.objects.create(name="Other Firm", slug="other")
    paula = _member(firm, "paula")
    Membership.objects.create(firm=other, user=paula.user, role=Role.ATTORNEY)
    browser = _browser(paula)
    response = browser.post(
        "/account/", {"do": "preferences", "language": "es", "time_zone": "America/Los_Angeles"}
    )
    assert response.status_code == 302
    assert browser.cookies["django_language"].value == "es"
    assert set(Membership.objects.filter(user=paula.user).values_list("language", "time_zone")) == {
        ("es", "America/Los_Angeles")
    }
    entries = _entries("member.preferences_changed")
    assert {e.firm_id for e in entries} == {firm.pk, other.pk}
    assert json.loads(entries[0].details_json) == {
        "language": {"from": "", "to": "es"},
        "time_zone": {"from": "", "to": "America/Los_Angeles"},
    }
    assert "Mi cuenta" in browser.get("/account/").content.decode()

    # Back to the browser's language and the firm's zone.
    browser.post("/account/", {"do": "preferences", "language": "", "time_zone": ""})
    assert browser.cookies["django_language"].value == ""  # the cookie is deleted
    assert set(Membership.objects.filter(user=paula.user).values_list("language", "time_zone")) == {
        ("", "")
    }
    english = browser.get("/account/", headers={"accept-language": "en-US"}).content.decode()
    assert "My account" in english
    assert verify().ok


def test_a_time_zone_that_is_not_an_iana_name_is_refused(firm: Firm) -> None:
    paula = _member(firm, "paula")
    response = _browser(paula).post(
        "/account/", {"do": "preferences", "language": "en", "time_zone": "Mars/Olympus_Mons"}
    )
    assert response.status_code == 400
    assert Membership.objects.get(pk=paula.pk).time_zone == ""
    assert not _entries("member.preferences_changed")


def test_the_time_zone_select_offers_common_american_zones_first_then_all(firm: Firm) -> None:
    page = _browser(_member(firm, "paula")).get("/account/").content.decode()
    select = re.search(r'<select name="time_zone".*?</select>', page, re.DOTALL)
    assert select
    groups = re.findall(r'<optgroup label="([^"]+)">', select.group(0))
    assert groups == ["Common time zones", "All time zones"]
    assert '<option value="" selected>The firm&#x27;s: America/New_York</option>' in select.group(0)
    common = select.group(0).split('label="All time zones"')[0]
    for name in ("America/Los_Angeles", "America/Mexico_City", "America/Bogota"):
        assert f'value="{name}"' in common
    assert 'value="Asia/Tokyo"' in select.group(0) and 'value="Asia/Tokyo"' not in common


# --- The firm ---------------------------------------------------------------------------


def test_an_admin_renames_the_firm_and_sets_its_time_zone(firm: Firm) -> None:
    admin = _member(firm, "olga", Role.ADMIN)
    browser = _browser(admin)
    assert 'name="firm-name"' in browser.get("/account/").content.decode()
    response = browser.post(
        "/account/",
        {"do": "firm", "firm-name": "  Ejemplo   Law  ", "firm-time_zone": "America/Chicago"},
    )
    assert response.status_code == 302
    firm.refresh_from_db()
    assert (firm.name, firm.time_zone) == ("Ejemplo Law", "America/Chicago")
    [entry] = _entries("firm.settings_changed")
    assert entry.firm_id == firm.pk and entry.actor == f"user:{admin.user_id}"
    assert json.loads(entry.details_json) == {
        "name": {"from": "Example Immigration Law", "to": "Ejemplo Law"},
        "time_zone": {"from": "America/New_York", "to": "America/Chicago"},
    }
    refused = browser.post("/account/", {"do": "firm", "firm-name": " ", "firm-time_zone": "UTC"})
    assert refused.status_code == 400
    assert Firm.objects.get(pk=firm.pk).name == "Ejemplo Law"
    assert verify().ok


def test_only_an_admin_may_change_the_firm(firm: Firm) -> None:
    attorney = _member(firm, "andrea", Role.ATTORNEY)
    response = _browser(attorney).post(
        "/account/", {"do": "firm", "firm-name": "Mine Now", "firm-time_zone": "UTC"}
    )
    assert response.status_code == 403
    assert Firm.objects.get(pk=firm.pk).name == "Example Immigration Law"
    assert not _entries("firm.settings_changed")


# --- In Spanish ---------------------------------------------------------------------------


def test_the_spanish_my_account_page_has_no_english_left(firm: Firm) -> None:
    admin = _member(firm, "olga", Role.ADMIN)
    other = Firm.objects.create(name="Other Firm", slug="other")
    Membership.objects.create(firm=other, user=admin.user, role=Role.ADMIN)
    browser = _browser(admin, SPANISH)
    page = browser.get("/account/").content.decode()
    assert "Mi cuenta" in page and "Zona horaria" in page and "Cambiar de firma" in page
    assert "Hora del Pacífico (Los Ángeles, San Francisco)" in page
    assert _english_left(page) == []
    # The nudge, on the first page after login. (A paralegal's welcome page: an admin's
    # says "Invite a sus colegas", whose Spanish "Invite" the check takes for English.)
    paralegal = _browser(_member(firm, "paula"), SPANISH)
    welcome = paralegal.get("/welcome/").content.decode()
    assert "Añada su dirección de correo electrónico" in welcome
    assert _english_left(welcome) == []


# --- Switching firms ------------------------------------------------------------------------


def _case_of(firm: Firm, receipt: str) -> Case:
    client = Client.objects.create(firm=firm, personal={"name": "Test Client"})
    return Case.objects.create(firm=firm, receipt_number=receipt, client=client)


def test_a_member_of_several_firms_switches_between_them_in_the_header(firm: Firm) -> None:
    other = Firm.objects.create(name="Other Firm", slug="other")
    ours, theirs = _case_of(firm, "EAC2490000001"), _case_of(other, "LIN2490000002")
    paula = _member(firm, "paula")
    Membership.objects.create(firm=other, user=paula.user, role=Role.ATTORNEY, language="es")
    browser = _browser(paula)

    page = browser.get("/cases/").content.decode()
    switcher = re.search(r'<form method="post" action="/firm/".*?</form>', page, re.DOTALL)
    assert switcher, "the switcher is in the header"
    assert f'<option value="{firm.pk}" selected>Example Immigration Law</option>' in (
        switcher.group(0)
    )
    assert f'<option value="{other.pk}">Other Firm</option>' in switcher.group(0)
    assert "EAC2490000001" in page and "LIN2490000002" not in page

    response = browser.post("/firm/", {"firm": other.pk})
    assert response.status_code == 302 and response["Location"] == "/"
    assert browser.cookies["django_language"].value == "es"  # that membership's language
    listing = browser.get("/cases/").content.decode()
    assert "LIN2490000002" in listing and "EAC2490000001" not in listing
    assert browser.get(f"/cases/{ours.pk}/").status_code == 404
    assert browser.get(f"/cases/{theirs.pk}/").status_code == 200
    assert "Casos" in listing  # Spanish, as chosen for that firm

    browser.post("/firm/", {"firm": firm.pk})
    assert browser.get(f"/cases/{ours.pk}/").status_code == 200


def test_nobody_switches_into_a_firm_they_do_not_belong_to(firm: Firm) -> None:
    stranger_firm = Firm.objects.create(name="Stranger Firm", slug="stranger")
    _case_of(stranger_firm, "LIN2490000009")
    paula = _member(firm, "paula")
    browser = _browser(paula)
    assert browser.post("/firm/", {"firm": stranger_firm.pk}).status_code == 404
    assert browser.post("/firm/", {"firm": "not a number"}).status_code == 404
    assert "LIN2490000009" not in browser.get("/cases/").content.decode()
    assert browser.get("/firm/").status_code == 302  # nothing to switch by looking


def test_a_single_firm_member_sees_no_switcher(firm: Firm) -> None:
    page = _browser(_member(firm, "paula")).get("/welcome/").content.decode()
    assert 'action="/firm/"' not in page


def test_leaving_the_chosen_firm_falls_back_to_the_first(firm: Firm) -> None:
    other = Firm.objects.create(name="Other Firm", slug="other")
    _case_of(firm, "EAC2490000001")
    paula = _member(firm, "paula")
    theirs = Membership.objects.create(firm=other, user=paula.user, role=Role.ATTORNEY)
    browser = _browser(paula)
    browser.post("/firm/", {"firm": other.pk})
    theirs.delete()
    listing = browser.get("/cases/").content.decode()
    assert "EAC2490000001" in listing


# --- Where a member is alerted ----------------------------------------------------------


def _contact(**fields: Any) -> dict[str, Any]:
    return {"do": "contact", **{f"contact-{k}": v for k, v in fields.items()}}


def test_a_member_gives_a_phone_for_sms_alerts_stored_in_e164_and_encrypted(firm: Firm) -> None:
    from django.db import connection

    from casewatch.notify.models import StaffContact

    paula = _member(firm, "paula")
    response = _browser(paula).post(
        "/account/", _contact(phone="(202) 555-0142", channels=["email", "sms"])
    )
    assert response.status_code == 302
    contact = StaffContact.objects.get(membership=paula)
    assert contact.phone == "+12025550142"
    assert contact.channels == ["in_app", "email", "sms"]
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT phone FROM {StaffContact._meta.db_table} WHERE membership_id = %s",
            [paula.pk],
        )
        [(raw,)] = cursor.fetchall()
    assert raw and "2025550142" not in raw and "555" not in raw
    [entry] = _entries("member.contact_changed")
    assert entry.actor == f"user:{paula.user_id}"
    assert entry.details == {
        "channels": {"from": [], "to": ["in_app", "email", "sms"]},
        "phone_changed": True,
        "has_phone": True,
    }
    assert "555" not in json.dumps(entry.details)
    page = _browser(paula).get("/account/").content.decode()
    assert 'value="+12025550142"' in page
    assert verify().ok


@pytest.mark.parametrize(
    ("phone", "words"),
    [
        ("call me", "is not a phone number"),
        ("+1 555 0100", "is not a number that can receive text messages"),
        ("", "Give a mobile phone number to get alerts by SMS."),
    ],
)
def test_a_phone_that_cannot_get_sms_is_refused_and_the_input_kept(
    firm: Firm, phone: str, words: str
) -> None:
    from casewatch.notify.models import StaffContact

    paula = _member(firm, "paula")
    response = _browser(paula).post("/account/", _contact(phone=phone, channels=["sms"]))
    assert response.status_code == 400
    html = response.content.decode()
    assert words in html
    if phone:
        assert f'value="{phone}"' in html
    assert not StaffContact.objects.exists() and not _entries("member.contact_changed")


def test_a_member_who_wants_only_the_app_gets_no_email_alerts(firm: Firm) -> None:
    from casewatch.notify.models import StaffContact
    from casewatch.notify.route import load_firm

    paula = _member(firm, "paula", email="paula@example.test")
    page = _browser(paula).get("/account/").content.decode()
    assert 'value="email" id="id_contact-channels_0" checked' in page  # the default
    _browser(paula).post("/account/", _contact(phone=""))
    assert StaffContact.objects.get(membership=paula).channels == ["in_app"]
    [member] = load_firm(firm.pk).members
    assert member.channels(["in_app", "email", "sms"]) == [("in_app", "")]
