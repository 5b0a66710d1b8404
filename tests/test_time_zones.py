"""Every date and time the staff app shows is on the member's clock: their own time zone,
else their firm's. "Today", "overdue" and the calendar feed count days on that clock too
(deadlines stay dates), and a time shown alone says which zone it is in.

The request's "now" is fixed (django.utils.timezone.now) at 04:00 UTC on March 3, 2026:
still the evening of March 2 in Los Angeles.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime

import pytest
from django.contrib.auth.models import User
from django.core import mail
from django.test import Client as Browser
from django.utils import timezone
from icalendar import Calendar

from casewatch.accounts import team
from casewatch.accounts.models import Firm, Invitation, Membership, Role
from casewatch.cases.models import Deadline
from casewatch.monitor.health import note_outcome
from casewatch.web.calendar_feed import create_link
from casewatch.web.time_zones import COMMON_ZONES, known_zones, member_zone, zone_named
from tests.test_dashboard import _browser, _case, _change, _section

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 3, 3, 4, 0, tzinfo=UTC)
LOS_ANGELES = "America/Los_Angeles"


@pytest.fixture(autouse=True)
def fixed_now(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(timezone, "now", lambda: NOW)
    yield


@pytest.fixture
def firm() -> Firm:
    return Firm.objects.create(name="Example Immigration Law", slug="example")


def _member(firm: Firm, username: str, zone: str = "", role: str = Role.PARALEGAL) -> Membership:
    user = User.objects.create_user(username=username, password="correct horse battery")
    return Membership.objects.create(firm=firm, user=user, role=role, time_zone=zone)


# --- Times ---------------------------------------------------------------------------------


def test_a_status_change_at_3am_utc_shows_as_the_previous_evening_in_los_angeles(
    firm: Firm,
) -> None:
    case = _case(firm, "EAC2490000001")
    _change(case, "rfe_sent", minutes_ago=60)  # observed at 03:00 UTC on March 3
    angelina = _member(firm, "angelina", LOS_ANGELES)

    browser = _browser(angelina)
    changes = _section(browser.get("/").content.decode(), "changes")
    assert "casewatch saw it on March 2, 2026, 7 p.m. PST." in changes
    timeline = browser.get(f"/cases/{case.pk}/").content.decode()
    assert "seen March 2, 2026, 7 p.m. PST" in " ".join(timeline.split())

    utc = _browser(_member(firm, "ursula", "UTC"))
    assert "casewatch saw it on March 3, 2026, 3 a.m. UTC." in utc.get("/").content.decode()


def test_without_a_zone_of_their_own_a_member_sees_the_firms(firm: Firm) -> None:
    _change(_case(firm, "EAC2490000001"), "rfe_sent", minutes_ago=60)
    paula = _member(firm, "paula")
    page = _browser(paula).get("/").content.decode()
    assert "casewatch saw it on March 2, 2026, 10 p.m. EST." in page  # New York, the default
    Firm.objects.filter(pk=firm.pk).update(time_zone="America/Mexico_City")
    page = _browser(paula).get("/").content.decode()
    assert "casewatch saw it on March 2, 2026, 9 p.m. CST." in page


def test_the_uscis_panel_names_the_zone_of_its_time(firm: Firm) -> None:
    from django.core.cache import cache

    cache.clear()
    _change(_case(firm, "EAC2490000001"), "rfe_sent")
    note_outcome(None, datetime(2026, 3, 3, 3, 0, tzinfo=UTC))
    browser = _browser(_member(firm, "angelina", LOS_ANGELES))
    panel = browser.get("/dashboard/uscis/", headers={"HX-Request": "true"}).content.decode()
    assert "Last successful USCIS read: March 2, 2026, 7 p.m. PST." in " ".join(panel.split())


def test_a_zone_tzdata_no_longer_knows_shows_utc_rather_than_failing(firm: Firm) -> None:
    _change(_case(firm, "EAC2490000001"), "rfe_sent", minutes_ago=60)
    lost = _member(firm, "lost", "Mars/Olympus_Mons")
    page = _browser(lost).get("/")
    assert page.status_code == 200
    assert "casewatch saw it on March 3, 2026, 3 a.m. UTC." in page.content.decode()


def test_the_zone_is_let_go_after_each_request(firm: Firm) -> None:
    _browser(_member(firm, "angelina", LOS_ANGELES)).get("/welcome/")
    assert timezone.get_current_timezone_name() == "UTC"


# --- Days ----------------------------------------------------------------------------------


def _deadline(firm: Firm, receipt: str, due: date) -> Deadline:
    case = _case(firm, receipt)
    return Deadline.objects.create(
        firm_id=firm.pk, case=case, kind="rfe_response", due_on=due, basis=due
    )


def test_today_and_overdue_are_the_members(firm: Firm) -> None:
    _deadline(firm, "EAC2490000001", date(2026, 3, 2))
    _deadline(firm, "EAC2490000002", date(2026, 3, 3))

    def deadlines_seen_by(member: Membership) -> str:
        return _section(_browser(member).get("/").content.decode(), "deadlines")

    in_los_angeles = deadlines_seen_by(_member(firm, "angelina", LOS_ANGELES))
    in_utc = deadlines_seen_by(_member(firm, "ursula", "UTC"))

    def row(section: str, receipt: str) -> str:
        return next(line for line in section.split("</tr>") if receipt in line)

    assert "due today" in row(in_los_angeles, "EAC2490000001")
    assert "in 1 day" in row(in_los_angeles, "EAC2490000002")
    assert "1 day overdue" in row(in_utc, "EAC2490000001")
    assert "due today" in row(in_utc, "EAC2490000002")


def test_the_calendar_feed_counts_days_on_the_members_clock(firm: Firm) -> None:
    # Feeds leave out deadlines overdue by more than 30 days: on March 2 (Los Angeles)
    # January 31 is 30 days back; on March 3 (UTC) it is 31.
    deadline = _deadline(firm, "EAC2490000001", date(2026, 1, 31))
    olga = _member(firm, "olga", LOS_ANGELES, role=Role.ADMIN)
    url = f"/calendar/{create_link(olga)}.ics"

    def events() -> list[str]:
        feed = Calendar.from_ical(Browser().get(url).content)
        return [str(event["UID"]) for event in feed.walk("VEVENT")]

    assert events() == [f"deadline-{deadline.pk}.firm-{firm.pk}@casewatch"]
    Membership.objects.filter(pk=olga.pk).update(time_zone="UTC")
    assert events() == []


def test_an_invitation_gives_its_expiry_on_the_firms_clock(firm: Firm) -> None:
    Firm.objects.filter(pk=firm.pk).update(time_zone=LOS_ANGELES)
    invitation = Invitation.objects.create(
        firm=Firm.objects.get(pk=firm.pk),
        email="new.member@example.com",
        role=Role.PARALEGAL,
        expires_at=datetime(2026, 3, 6, 3, 0, tzinfo=UTC),
    )
    with timezone.override("Asia/Tokyo"):  # the inviter's own zone does not matter
        team.send_invitation(invitation, "https://casewatch.example/invitations/x/")
    [message] = mail.outbox
    assert "until March 5, 2026, 7 p.m. (PST)." in " ".join(message.body.split())


# --- The zones offered ------------------------------------------------------------------


def test_every_common_zone_is_an_iana_name_and_a_member_zone_resolves() -> None:
    assert set(COMMON_ZONES) <= known_zones()
    assert {"America/New_York", "America/Los_Angeles", "America/Bogota"} <= set(COMMON_ZONES)
    assert "localtime" not in known_zones() and "Factory" not in known_zones()
    firm = Firm(name="F", slug="f", time_zone="America/Chicago")
    assert str(member_zone(Membership(firm=firm, time_zone=""))) == "America/Chicago"
    assert str(member_zone(Membership(firm=firm, time_zone=LOS_ANGELES))) == LOS_ANGELES
    assert zone_named("Not/A_Zone") is UTC and zone_named("") is UTC
