"""The Deadlines page and each member's calendar feed: what is due, the firm's own dates,
who may change what, and a secret link that Outlook and Google Calendar subscribe to."""

from __future__ import annotations

import hashlib
import re
from datetime import date, timedelta

import pytest
from django.contrib.auth.models import User
from django.test import Client as Browser
from django.utils import timezone
from icalendar import Calendar

from casewatch.accounts.models import Firm, Membership, Role
from casewatch.audit.chain import verify
from casewatch.audit.models import AuditEntry
from casewatch.cases.models import Case, Client, Deadline
from tests.environment import sign_in
from tests.test_i18n import SPANISH, _english_left
from tests.test_web import _member, _rfe_case

pytestmark = pytest.mark.django_db


@pytest.fixture
def firm() -> Firm:
    return Firm.objects.create(name="Example Immigration Law", slug="example")


def _browser(user: User) -> Browser:
    browser = Browser()
    sign_in(browser, user)
    return browser


def _deadline(
    firm: Firm,
    receipt: str,
    due_in_days: int,
    *,
    kind: str = "rfe_response",
    attorney: User | None = None,
    paralegal: User | None = None,
    client_name: str = "Fakey McTestface",
    form: str = "I-485",
) -> Deadline:
    """A deadline `due_in_days` from today, counted 87 days from its notice."""
    client = Client.objects.create(firm=firm, personal={"name": client_name})
    case = Case.objects.create(
        firm=firm,
        receipt_number=receipt,
        form_type=form,
        client=client,
        attorney=attorney,
        paralegal=paralegal,
    )
    due = timezone.localdate() + timedelta(days=due_in_days)
    return Deadline.objects.create(
        firm=firm,
        case=case,
        kind=kind,
        due_on=due,
        basis=due - timedelta(days=87) if kind.endswith("_response") else due,
        basis_text="RFE notice dated … + 87 days",
    )


def _order(page: str, *receipts: str) -> list[str]:
    return sorted(receipts, key=page.index)


# --- The page --------------------------------------------------------------------------


def test_open_deadlines_come_first_by_the_date_the_firm_works_to(firm: Firm) -> None:
    user = _member(firm, "paula")
    soon = _deadline(firm, "EAC2490000001", 10)
    moved = _deadline(firm, "EAC2490000002", 5)
    moved.firm_due_on = timezone.localdate() + timedelta(days=20)
    moved.save()
    done = _deadline(firm, "EAC2490000003", 1)
    done.completed_at = timezone.now()
    done.save()

    page = _browser(user).get("/deadlines/", {"state": "all"}).content.decode()
    assert _order(page, "EAC2490000001", "EAC2490000002", "EAC2490000003") == [
        "EAC2490000001",
        "EAC2490000002",
        "EAC2490000003",
    ]
    assert soon.pk and "firm's date" in page and "computed: " in page

    open_only = _browser(user).get("/deadlines/").content.decode()
    assert "EAC2490000003" not in open_only and "EAC2490000001" in open_only


def test_each_deadline_shows_its_case_and_what_it_was_computed_from(firm: Firm) -> None:
    case = _rfe_case(firm)
    page = _browser(_member(firm, "paula")).get("/deadlines/", {"state": "all"}).content.decode()
    assert f'href="/cases/{case.pk}/"' in page and "EAC2490012345" in page
    assert "RFE response due" in page and "May 28, 2026" in page
    assert "87 days after the notice of March 2, 2026" in page
    assert "Fakey &lt;b&gt;McTestface&lt;/b&gt;" in page  # escaped like everything shown


def test_an_overdue_deadline_says_so_in_words_not_only_in_colour(firm: Firm) -> None:
    _deadline(firm, "EAC2490000001", -3)
    _deadline(firm, "EAC2490000002", 0)
    page = _browser(_member(firm, "paula")).get("/deadlines/").content.decode()
    assert '<tr class="overdue">' in page and "overdue by 3 days" in page
    assert "due today" in page
    assert "1 open deadline is overdue." in page


def test_the_list_filters_by_kind_attorney_state_and_dates(firm: Firm) -> None:
    ana = _member(firm, "ana", Role.ATTORNEY)
    bob = _member(firm, "bob", Role.ATTORNEY)
    _deadline(firm, "EAC2490000001", 3, attorney=ana)
    _deadline(firm, "EAC2490000002", 40, attorney=bob, kind="interview")
    _deadline(firm, "EAC2490000003", -5, attorney=bob)
    browser = _browser(_member(firm, "paula"))

    def shown(**query: str) -> set[str]:
        page = browser.get("/deadlines/", query).content.decode()
        return set(re.findall(r"EAC249000000\d", page))

    assert shown() == {"EAC2490000001", "EAC2490000002", "EAC2490000003"}
    assert shown(kind="interview") == {"EAC2490000002"}
    assert shown(attorney=str(bob.pk)) == {"EAC2490000002", "EAC2490000003"}
    assert shown(range="overdue") == {"EAC2490000003"}
    assert shown(range="week") == {"EAC2490000001"}
    today = timezone.localdate()
    between = {"from": str(today), "to": str(today + timedelta(days=60))}
    assert shown(**between) == {"EAC2490000001", "EAC2490000002"}
    assert shown(state="done") == set()
    assert shown(kind="nonsense", attorney="999999") == shown()  # unknown values are ignored


# --- Done, reopened, the firm's own date: each one audited -----------------------------


def test_marking_a_deadline_done_and_reopening_it_are_audited(firm: Firm) -> None:
    user = _member(firm, "paula")
    deadline = _deadline(firm, "EAC2490000001", 3)
    browser = _browser(user)

    response = browser.post(f"/deadlines/{deadline.pk}/done/", {"next": "/deadlines/?kind="})
    assert response.status_code == 302 and response["Location"] == "/deadlines/?kind="
    deadline.refresh_from_db()
    assert deadline.completed_at is not None
    browser.post(f"/deadlines/{deadline.pk}/done/")  # twice: nothing more happens
    assert AuditEntry.objects.filter(action="deadline.completed").count() == 1

    browser.post(f"/deadlines/{deadline.pk}/reopen/", {"next": "https://evil.test/"})
    deadline.refresh_from_db()
    assert deadline.completed_at is None
    entry = AuditEntry.objects.get(action="deadline.reopened")
    assert entry.actor == f"user:{user.pk}" and entry.object_id == str(deadline.pk)
    assert entry.firm_id == firm.pk and entry.details["receipt_number"] == "EAC2490000001"
    assert verify().ok


def test_the_firm_sets_its_own_date_with_a_reason_and_can_go_back(firm: Firm) -> None:
    user = _member(firm, "ana", Role.ATTORNEY)
    case = _rfe_case(firm)
    deadline = case.deadlines.get()
    browser = _browser(user)

    refused = browser.post(f"/deadlines/{deadline.pk}/", {"due_on": "2026-06-30", "reason": " "})
    assert refused.status_code == 200 and 'class="errorlist' in refused.content.decode()
    deadline.refresh_from_db()
    assert deadline.firm_due_on is None
    assert not AuditEntry.objects.filter(action="deadline.firm_date_set").exists()

    browser.post(
        f"/deadlines/{deadline.pk}/",
        {"due_on": "2026-06-30", "reason": "USCIS granted an extension for Mr. Client"},
    )
    deadline.refresh_from_db()
    assert deadline.firm_due_on == date(2026, 6, 30) and deadline.due_on == date(2026, 5, 28)
    assert deadline.firm_due_reason == "USCIS granted an extension for Mr. Client"
    assert deadline.firm_due_by == user and deadline.firm_due_set_at is not None
    entry = AuditEntry.objects.get(action="deadline.firm_date_set")
    assert entry.details["firm_due_on"] == "2026-06-30" and entry.details["due_on"] == "2026-05-28"
    assert "Client" not in entry.details_json  # the reason may name the client: never audited

    page = browser.get(f"/deadlines/{deadline.pk}/").content.decode()
    assert "June 30, 2026" in page and "May 28, 2026" in page
    assert "USCIS granted an extension for Mr. Client" in page
    assert "Firm&#x27;s date set" in page and "Computed by casewatch" in page  # its history
    listing = browser.get("/deadlines/").content.decode()
    assert "June 30, 2026" in listing and "computed: May 28, 2026" in listing

    browser.post(f"/deadlines/{deadline.pk}/computed-date/")
    deadline.refresh_from_db()
    assert deadline.firm_due_on is None and deadline.firm_due_reason == ""
    assert deadline.effective_due_on == date(2026, 5, 28)
    cleared = AuditEntry.objects.get(action="deadline.firm_date_cleared")
    assert cleared.details["previous_firm_due_on"] == "2026-06-30"
    assert verify().ok


def test_front_desk_sees_the_deadlines_and_changes_none(firm: Firm) -> None:
    desk = _member(firm, "frank", Role.FRONT_DESK)
    deadline = _deadline(firm, "EAC2490000001", 3)
    browser = _browser(desk)
    page = browser.get("/deadlines/").content.decode()
    assert "EAC2490000001" in page and "Mark done" not in page and "Change date" not in page
    assert "Outlook" not in page  # no calendar link either
    detail = browser.get(f"/deadlines/{deadline.pk}/").content.decode()
    assert "Save the firm" not in detail
    for path in ("done/", "reopen/", "computed-date/", ""):
        response = browser.post(f"/deadlines/{deadline.pk}/{path}", {"due_on": "2026-06-30"})
        assert response.status_code == 403, path
    assert browser.get("/deadlines/calendar/").status_code == 403
    assert browser.post("/deadlines/calendar/", {"do": "create"}).status_code == 403
    deadline.refresh_from_db()
    assert deadline.completed_at is None and deadline.firm_due_on is None
    assert not AuditEntry.objects.filter(object_type="deadline").exists()


def test_another_firms_deadline_is_not_found(firm: Firm) -> None:
    other = Firm.objects.create(name="Other Firm", slug="other")
    theirs = _deadline(other, "LIN2490000009", 3)
    browser = _browser(_member(firm, "paula"))
    assert "LIN2490000009" not in browser.get("/deadlines/", {"state": "all"}).content.decode()
    for path in ("", "done/", "reopen/", "computed-date/"):
        assert browser.get(f"/deadlines/{theirs.pk}/{path}").status_code == 404, path
        assert browser.post(f"/deadlines/{theirs.pk}/{path}").status_code == 404, path
    theirs.refresh_from_db()
    assert theirs.completed_at is None


def test_the_spanish_deadline_pages_have_no_english_left(firm: Firm) -> None:
    user = _member(firm, "ana", Role.ATTORNEY)
    deadline = _rfe_case(firm).deadlines.get()
    _deadline(firm, "EAC2490000001", -2, kind="interview")
    browser = _browser(user)
    browser.post(
        f"/deadlines/{deadline.pk}/",
        {"due_on": "2026-06-30", "reason": "Prórroga"},
        headers={"accept-language": SPANISH},
    )
    for url in ("/deadlines/", f"/deadlines/{deadline.pk}/", "/deadlines/calendar/"):
        html = browser.get(url, {"state": "all"}, headers={"accept-language": SPANISH})
        assert _english_left(html.content.decode()) == [], url
    listing = browser.get("/deadlines/", headers={"accept-language": SPANISH}).content.decode()
    assert "30 de junio de 2026" in listing
    created = browser.post(
        "/deadlines/calendar/", {"do": "create"}, headers={"accept-language": SPANISH}
    )
    assert _english_left(created.content.decode()) == []


# --- The calendar feed -----------------------------------------------------------------


def _create_link(browser: Browser) -> str:
    page = browser.post("/deadlines/calendar/", {"do": "create"}).content.decode()
    found = re.search(r'value="(http://testserver/calendar/[\w-]+\.ics)"', page)
    assert found, page
    return found.group(1).removeprefix("http://testserver")


def _events(body: bytes) -> list[dict[str, object]]:
    calendar = Calendar.from_ical(body)
    return [
        {name: event.get(name) for name in ("UID", "SUMMARY", "DESCRIPTION", "URL")}
        | {"start": event.decoded("DTSTART"), "end": event.decoded("DTEND")}
        | {"stamp": event.decoded("DTSTAMP")}
        for event in calendar.walk("VEVENT")
    ]


def test_a_calendar_link_is_shown_once_and_only_its_hash_is_kept(firm: Firm) -> None:
    user = _member(firm, "ana", Role.ATTORNEY)
    browser = _browser(user)
    assert "You have no calendar link." in browser.get("/deadlines/calendar/").content.decode()
    path = _create_link(browser)
    secret = path.removeprefix("/calendar/").removesuffix(".ics")
    membership = Membership.objects.get(user=user)
    assert membership.calendar_token_hash == hashlib.sha256(secret.encode()).hexdigest()
    page = browser.get("/deadlines/calendar/").content.decode()
    assert secret not in page and "Your calendar link is on." in page
    assert AuditEntry.objects.filter(action="calendar_link.created").count() == 1
    assert secret not in "".join(AuditEntry.objects.values_list("details_json", flat=True))


def test_the_feed_has_one_all_day_event_per_open_deadline_of_the_members_cases(
    firm: Firm,
) -> None:
    ana = _member(firm, "ana", Role.ATTORNEY)
    bob = _member(firm, "bob", Role.ATTORNEY)
    mine = _deadline(firm, "EAC2490000001", 10, attorney=ana, client_name="Fakey McTestface")
    as_paralegal = _deadline(firm, "EAC2490000002", 20, attorney=bob, paralegal=ana)
    _deadline(firm, "EAC2490000003", 5, attorney=bob)  # not ana's case
    finished = _deadline(firm, "EAC2490000004", 7, attorney=ana)
    finished.completed_at = timezone.now()
    finished.save()
    other_firm = Firm.objects.create(name="Other Firm", slug="other")
    _deadline(other_firm, "EAC2490000005", 3, attorney=ana)

    response = Browser().get(_create_link(_browser(ana)))  # no login: the secret is the key
    assert response.status_code == 200
    assert response["Content-Type"] == "text/calendar; charset=utf-8"
    assert b"X-PUBLISHED-TTL:PT1H\r\n" in response.content  # refreshed hourly where honoured
    events = _events(response.content)
    assert len(events) == 2
    by_uid = {str(e["UID"]): e for e in events}
    first = by_uid[f"deadline-{mine.pk}.firm-{firm.pk}@casewatch"]
    assert first["start"] == mine.due_on and first["end"] == mine.due_on + timedelta(days=1)
    assert str(first["SUMMARY"]) == "RFE response due · EAC2490000001 (I-485)"
    description = str(first["DESCRIPTION"])
    assert "Send USCIS the evidence it asked for" in description
    assert "87 days after the notice of" in description
    case_url = f"http://testserver/cases/{mine.case_id}/"
    assert case_url in description and str(first["URL"]) == case_url
    assert f"deadline-{as_paralegal.pk}.firm-{firm.pk}@casewatch" in by_uid
    assert b"Fakey" not in response.content and b"McTestface" not in response.content


def test_the_feed_is_stable_and_shows_the_firms_date(firm: Firm) -> None:
    admin = _member(firm, "olga", Role.ADMIN)
    deadline = _deadline(firm, "EAC2490000001", 10)
    path = _create_link(_browser(admin))
    before = Browser().get(path).content
    assert before == Browser().get(path).content  # same UIDs, same stamps: nothing to sync

    moved_to = deadline.due_on + timedelta(days=30)
    _browser(admin).post(
        f"/deadlines/{deadline.pk}/", {"due_on": str(moved_to), "reason": "Extension granted"}
    )
    (event,) = _events(Browser().get(path).content)
    assert event["start"] == moved_to and event["end"] == moved_to + timedelta(days=1)
    assert "Date set by the firm; computed date:" in str(event["DESCRIPTION"])
    assert "Extension granted" not in str(event["DESCRIPTION"])
    assert str(event["UID"]) in before.decode()


def test_admins_see_the_whole_firm_and_a_member_in_spanish_gets_spanish(firm: Firm) -> None:
    ana = _member(firm, "ana", Role.ATTORNEY)
    olga = _member(firm, "olga", Role.OPERATIONS)
    Membership.objects.filter(user=olga).update(language="es")
    _deadline(firm, "EAC2490000001", 10, attorney=ana)
    _deadline(firm, "EAC2490000002", 12, kind="interview")
    _deadline(firm, "EAC2490000003", -45)  # overdue for long: on the page, not in calendars
    events = _events(Browser().get(_create_link(_browser(olga))).content)
    assert len(events) == 2
    summaries = sorted(str(e["SUMMARY"]) for e in events)
    assert "RFE response due" not in " ".join(summaries)
    assert all("EAC249000000" in s for s in summaries)


def test_a_new_link_revokes_the_old_one_and_turning_it_off_revokes_it(firm: Firm) -> None:
    ana = _member(firm, "ana", Role.ATTORNEY)
    browser = _browser(ana)
    old = _create_link(browser)
    new = _create_link(browser)
    assert old != new
    assert Browser().get(old).status_code == 404
    assert Browser().get(new).status_code == 200
    browser.post("/deadlines/calendar/", {"do": "off"})
    assert Browser().get(new).status_code == 404
    assert Membership.objects.get(user=ana).calendar_token_hash == ""
    assert AuditEntry.objects.filter(action="calendar_link.revoked").count() == 1
    assert Browser().get("/calendar/not-a-real-secret.ics").status_code == 404


def test_a_member_who_loses_the_right_to_a_feed_loses_the_feed(firm: Firm) -> None:
    ana = _member(firm, "ana", Role.ATTORNEY)
    path = _create_link(_browser(ana))
    Membership.objects.filter(user=ana).update(role=Role.FRONT_DESK)
    assert Browser().get(path).status_code == 404
    Membership.objects.filter(user=ana).update(role=Role.ATTORNEY)
    User.objects.filter(pk=ana.pk).update(is_active=False)
    assert Browser().get(path).status_code == 404
