"""Following `next` through the API's lists while the firm's data changes underneath.

A case-management system pulls `GET /events` or `GET /notifications` page by page while
casewatch keeps recording: every row that matches the list throughout the walk, and keeps
its place in the list's order, is read exactly once, whatever is added or removed
meanwhile. The cursor is a signed position (the last row's order values), bound to its
list and filters. Run on SQLite and on PostgreSQL: both place NULLs and compare
datetimes differently, and the pages must be exact on each.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.core import signing
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from casewatch.accounts.api_tokens import create_token
from casewatch.accounts.models import Firm
from casewatch.api.pages import CURSOR_SALT
from casewatch.cases.models import Case, Client, Deadline, StatusEvent
from casewatch.cases.queries import SORTS, clean_parameters, matching_cases
from casewatch.notify.models import Notification
from tests.routing_world import change
from tests.test_api import CLIENT, Integration, firm_with_cases, problem

pytestmark = pytest.mark.django_db

RECEIPTS = [f"EAC26900001{n:02d}" for n in range(1, 7)]
# Before the walk starts: everything below happened in the last few days.
EARLIER = timezone.now() - timedelta(days=3)


@pytest.fixture
def firm() -> Firm:
    return firm_with_cases("alpha", RECEIPTS)


@pytest.fixture
def reader(firm: Firm) -> Integration:
    return Integration(create_token(firm, "read", actor="test").secret)


def cases_of(firm: Firm) -> list[Case]:
    return list(Case.objects.filter(firm=firm).order_by("pk"))


def walk(
    api: Integration,
    path: str,
    *,
    limit: int,
    after_page: Callable[[int], object] = lambda _number: None,
    **params: Any,
) -> list[dict[str, Any]]:
    """Every item of a list, following `next`; `after_page(n)` runs after page n is read."""
    items: list[dict[str, Any]] = []
    answer = api.get(path, limit=limit, **params)
    number = 1
    while True:
        assert answer.status_code == 200, answer.content
        page = answer.json()
        assert len(page["items"]) <= limit
        items += page["items"]
        if page["next"] is None:
            return items
        assert page["items"], "a page before the last is never empty"
        after_page(number)
        number += 1
        answer = api.get(page["next"])


def cursor_of(url: str) -> str:
    return parse_qs(urlsplit(url).query)["cursor"][0]


def ids(items: list[dict[str, Any]]) -> list[int]:
    return [item["id"] for item in items]


def events_at(firm: Firm, count: int, start: datetime = EARLIER) -> list[StatusEvent]:
    """`count` status changes of the firm's cases, an hour apart, from `start`."""
    cases = cases_of(firm)
    statuses = ("case_received", "fingerprint_fee_received", "rfe_sent", "actively_reviewed")
    return [
        change(cases[n % len(cases)], statuses[n % len(statuses)], at=start + timedelta(hours=n))
        for n in range(count)
    ]


def in_order(rows: Any, *order: str) -> list[int]:
    return list(rows.order_by(*order).values_list("pk", flat=True))


# --- Rows added while a client reads ------------------------------------------------------


def test_events_recorded_while_a_client_follows_next_are_read_once_and_none_is_skipped(
    firm: Firm, reader: Integration
) -> None:
    events_at(firm, 7)
    cases = cases_of(firm)

    def casewatch_records_more(page: int) -> None:
        # The monitor appends what it sees now: after every event already recorded.
        if page <= 3:
            change(cases[page], "actively_reviewed", at=timezone.now())
            change(cases[page + 1], "rfe_sent", at=timezone.now())

    read = walk(reader, "/events", limit=3, after_page=casewatch_records_more)

    every_event = in_order(StatusEvent.objects.filter(firm=firm), "observed_at", "pk")
    assert len(every_event) == 7 + 2 * 3  # the first three pages were followed by more
    assert ids(read) == every_event


def test_an_event_stamped_behind_the_reader_waits_for_the_next_walk_and_moves_no_other(
    firm: Firm, reader: Integration
) -> None:
    events = events_at(firm, 6)
    late: list[StatusEvent] = []

    def an_event_lands_behind(page: int) -> None:
        if page == 1:
            late.append(
                change(cases_of(firm)[0], "actively_reviewed", at=EARLIER - timedelta(hours=1))
            )

    read = walk(reader, "/events", limit=2, after_page=an_event_lands_behind)

    assert ids(read) == [event.pk for event in events]
    since = (EARLIER - timedelta(days=1)).isoformat()
    assert ids(walk(reader, "/events", limit=2, since=since))[0] == late[0].pk


def test_a_cases_events_read_while_it_changes_status(firm: Firm, reader: Integration) -> None:
    case = cases_of(firm)[0]
    for hours, status in enumerate(["case_received", "fingerprint_fee_received", "rfe_sent"]):
        change(case, status, at=EARLIER + timedelta(hours=hours))

    read = walk(
        reader,
        f"/cases/{case.pk}/events",
        limit=2,
        after_page=lambda _page: change(case, "actively_reviewed", at=timezone.now()),
    )

    assert ids(read) == in_order(StatusEvent.objects.filter(case=case), "observed_at", "pk")
    assert [event["status"] for event in read][-1] == "actively_reviewed"


def test_messages_sent_while_a_client_reads_the_outbox_are_read_once(
    firm: Firm, reader: Integration
) -> None:
    sent = [message(firm, n, created_at=EARLIER + timedelta(minutes=n)) for n in range(5)]
    more = iter(range(100, 110))

    read = walk(
        reader,
        "/notifications",
        limit=2,
        after_page=lambda _page: message(firm, next(more), created_at=timezone.now()),
    )

    assert ids(read)[:5] == [n.pk for n in sent]
    assert ids(read) == in_order(Notification.objects.filter(firm=firm), "created_at", "pk")


def test_clients_added_while_a_client_reads_come_last_and_once(
    firm: Firm, reader: Integration
) -> None:
    for n in range(2, 6):
        Client.objects.create(firm=firm, reference=f"alpha-{n}")
    more = iter(range(10, 20))

    read = walk(
        reader,
        "/clients",
        limit=2,
        after_page=lambda _page: Client.objects.create(firm=firm, reference=f"alpha-{next(more)}"),
    )

    assert ids(read) == in_order(Client.objects.filter(firm=firm), "pk")
    assert len(read) == 5 + 3


# --- Rows removed while a client reads ----------------------------------------------------


def test_an_event_removed_after_it_was_read_skips_nothing(firm: Firm, reader: Integration) -> None:
    events = events_at(firm, 8)
    first_page: list[int] = []

    def remove_the_first_read(page: int) -> None:
        if page == 1:
            StatusEvent.objects.filter(pk=events[0].pk).delete()
            first_page.append(events[0].pk)

    read = walk(reader, "/events", limit=3, after_page=remove_the_first_read)

    assert ids(read) == [event.pk for event in events]
    assert first_page == [events[0].pk]


def test_a_deadline_completed_after_it_was_read_skips_none_of_the_open_ones(
    firm: Firm, reader: Integration
) -> None:
    due = [deadline(firm, n, due_on=date(2027, 1, 10) + timedelta(days=n // 2)) for n in range(7)]

    def the_firm_completes_what_it_read(page: int) -> None:
        Deadline.objects.filter(pk=due[page - 1].pk).update(completed_at=timezone.now())

    read = walk(reader, "/deadlines", limit=2, after_page=the_firm_completes_what_it_read)

    assert ids(read) == [d.pk for d in due]  # by due_on, then id: two deadlines a day


def test_the_firms_own_date_set_mid_walk_moves_no_deadline(firm: Firm, reader: Integration) -> None:
    """The list is ordered by casewatch's date (`due_on`), which never changes; the firm's
    own date (`firm_due_on`, shown as `effective_due_on`) is only shown."""
    due = [deadline(firm, n, due_on=date(2027, 1, 10) + timedelta(days=n)) for n in range(5)]

    def the_firm_moves_the_last_one_earlier(page: int) -> None:
        Deadline.objects.filter(pk=due[-1].pk).update(firm_due_on=date(2027, 1, 1))

    read = walk(reader, "/deadlines", limit=2, after_page=the_firm_moves_the_last_one_earlier)

    assert ids(read) == [d.pk for d in due]
    assert read[-1]["effective_due_on"] == "2027-01-01"


def test_a_client_removed_after_it_was_read_skips_nothing(firm: Firm, reader: Integration) -> None:
    added = [Client.objects.create(firm=firm, reference=f"alpha-{n}") for n in range(2, 7)]

    def remove_one_already_read(page: int) -> None:
        if page == 2:
            Client.objects.filter(pk=added[0].pk).delete()

    read = walk(reader, "/clients", limit=2, after_page=remove_one_already_read)

    assert len(read) == 6
    assert ids(read)[1:] == [client.pk for client in added]


# --- The case list, in each of the web app's sorts -------------------------------------------


@pytest.fixture
def varied_caseload(firm: Firm) -> list[Case]:
    """Cases that tie on every sort column and lack some: pending receipts (no status, no
    receipt), archived ones, status changes at the very same moment, forms left blank."""
    cases = cases_of(firm)
    same_moment = EARLIER + timedelta(microseconds=250)
    for n, case in enumerate(cases):
        at = same_moment if n % 2 else same_moment + timedelta(hours=n, microseconds=n)
        Case.objects.filter(pk=case.pk).update(
            status_since=at, form_type=("I-485", "I-130", "")[n % 3]
        )
    for n in range(3):
        Case.objects.create(firm=firm, receipt_number=None, form_type=("I-765", "")[n % 2])
    Case.objects.create(firm=firm, receipt_number="LIN2690000199", form_type="N-400")
    archived = [case.pk for case in cases[:3]]
    Case.objects.filter(pk__in=archived).update(archived_at=same_moment + timedelta(days=1))
    return cases_of(firm)


@pytest.mark.parametrize("sort", list(SORTS))
@pytest.mark.parametrize("limit", [1, 2, 3])
def test_each_sort_is_read_page_by_page_in_the_web_apps_own_order(
    firm: Firm, reader: Integration, varied_caseload: list[Case], sort: str, limit: int
) -> None:
    """NULLs go where the database puts them (PostgreSQL: last going up, SQLite: first),
    as the web app shows them; ties are broken by id, and nothing is lost to either."""
    expected = matching_cases(firm, clean_parameters({"sort": sort, "state": "all"}))
    assert expected is not None

    read = walk(reader, "/cases", limit=limit, sort=sort, state="all")

    assert ids(read) == [case.pk for case in expected]
    assert len(read) == len(varied_caseload)


def test_a_search_by_the_clients_name_is_paged_the_same_way(
    firm: Firm, varied_caseload: list[Case]
) -> None:
    writer = Integration(create_token(firm, "write", actor="test").secret)
    expected = matching_cases(firm, clean_parameters({"q": CLIENT["name"]}))
    assert expected is not None

    read = walk(writer, "/cases", limit=2, q=CLIENT["name"])

    assert ids(read) == [case.pk for case in expected]
    assert len(read) == 3  # the firm's client's cases not archived


def test_a_case_archived_while_the_active_list_is_read_skips_no_other(
    firm: Firm, reader: Integration, varied_caseload: list[Case]
) -> None:
    before = matching_cases(firm, clean_parameters({"sort": "added"}))
    assert before is not None
    order = [case.pk for case in before]

    def archive_the_first_read(page: int) -> None:
        if page == 1:
            Case.objects.filter(pk=order[0]).update(archived_at=timezone.now())

    read = walk(reader, "/cases", limit=2, sort="added", after_page=archive_the_first_read)

    assert ids(read) == order


def test_a_case_whose_status_changes_mid_walk_moves_alone(
    firm: Firm, reader: Integration, varied_caseload: list[Case]
) -> None:
    """Sorted by the latest change, a case that changes status jumps to the front, behind
    the reader: it is not read twice, and every other case is read exactly once."""
    before = matching_cases(firm, clean_parameters({"sort": "recent"}))
    assert before is not None
    order = [case.pk for case in before]
    moved = order[-1]

    def it_changes(page: int) -> None:
        if page == 1:
            change(Case.objects.get(pk=moved), "actively_reviewed", at=timezone.now())

    read = walk(reader, "/cases", limit=2, sort="recent", after_page=it_changes)

    assert [pk for pk in ids(read) if pk != moved] == order[:-1]
    assert ids(read).count(moved) <= 1


def test_cases_added_to_the_firm_mid_walk_move_no_case_already_listed(
    firm: Firm, reader: Integration
) -> None:
    numbers = iter(range(50, 60))

    def more_cases(page: int) -> None:
        Case.objects.create(firm=firm, receipt_number=f"EAC26900000{next(numbers)}")

    read = walk(reader, "/cases", limit=2, sort="receipt", after_page=more_cases)

    receipts = [case["receipt_number"] for case in read]
    assert len(receipts) == len(set(receipts))
    assert set(RECEIPTS) <= set(receipts)


# --- Cursors ------------------------------------------------------------------------------


def test_the_last_page_says_so_without_an_empty_page_after_it(
    firm: Firm, reader: Integration
) -> None:
    events_at(firm, 4)
    assert reader.get("/events", limit=4).json()["next"] is None
    first = reader.get("/events", limit=3).json()
    assert len(first["items"]) == 3 and first["next"] is not None
    last = reader.get(first["next"]).json()
    assert len(last["items"]) == 1 and last["next"] is None
    assert reader.get("/clients", limit=1).json()["next"] is None  # the firm's only client


def test_a_tampered_cursor_is_a_400_problem(firm: Firm, reader: Integration) -> None:
    events_at(firm, 3)
    following = reader.get("/events", limit=1).json()["next"]
    cursor = cursor_of(following)
    tampered = cursor[:-3] + ("AAA" if not cursor.endswith("AAA") else "BBB")
    body = problem(reader.get("/events", limit=1, cursor=tampered), 400)
    assert "not made by casewatch" in body["detail"]
    problem(reader.get("/events", cursor="not-a-cursor"), 400)
    forged = signing.dumps({"v": 2, "p": "/api/v1/events", "q": {}, "k": [0, 0]}, salt="guess")
    problem(reader.get("/events", cursor=forged), 400)


@pytest.mark.parametrize(
    ("path", "filters", "other"),
    [
        ("/events", {"since": "2026-01-01T00:00:00Z"}, {"since": "2026-02-01T00:00:00Z"}),
        ("/deadlines", {}, {"open": "false"}),
        ("/notifications", {"channel": "sms"}, {"channel": "email"}),
        ("/cases", {"sort": "oldest"}, {"sort": "added"}),
        ("/clients", {}, {"reference": "alpha-1"}),
    ],
)
def test_a_cursor_reused_with_other_filters_is_a_400_problem(
    firm: Firm, reader: Integration, path: str, filters: dict[str, str], other: dict[str, str]
) -> None:
    events_at(firm, 3)
    Client.objects.create(firm=firm, reference="alpha-2")
    for n in range(3):
        deadline(firm, n, due_on=date(2027, 1, 10))
        message(firm, n, created_at=EARLIER, channel=filters.get("channel", "sms"))
    following = reader.get(path, limit=1, **filters).json()["next"]
    assert following is not None
    cursor = cursor_of(following)
    body = problem(reader.get(path, limit=1, cursor=cursor, **other), 400)
    assert "keep the same filters" in body["detail"]


def test_a_cursor_of_another_list_is_a_400_problem(firm: Firm, reader: Integration) -> None:
    first, second = cases_of(firm)[:2]
    for hours in range(3):
        change(first, "case_received", at=EARLIER + timedelta(hours=hours))
    following = reader.get(f"/cases/{first.pk}/events", limit=1).json()["next"]
    cursor = cursor_of(following)
    problem(reader.get(f"/cases/{second.pk}/events", cursor=cursor), 400)
    problem(reader.get("/events", cursor=cursor), 400)
    problem(reader.get("/clients", cursor=cursor), 400)


def test_a_cursor_of_casewatchs_former_offset_kind_is_read_once_by_its_offset(
    firm: Firm, reader: Integration
) -> None:
    """Clients in the middle of a walk when casewatch was upgraded carry on from there."""
    events = events_at(firm, 5)
    former = signing.dumps({"o": 2, "q": {}}, salt=CURSOR_SALT)

    read = walk(reader, "/events", limit=2, cursor=former)

    assert ids(read) == [event.pk for event in events[2:]]


# --- Times --------------------------------------------------------------------------------


def test_times_with_microseconds_and_ties_are_paged_exactly(
    firm: Firm, reader: Integration
) -> None:
    """Events a microsecond apart, and events at the very same microsecond: the cursor
    keeps the time to the microsecond, so a page ends and the next begins between them,
    though the answers show times to the millisecond."""
    case = cases_of(firm)[0]
    moment = datetime(2026, 11, 3, 9, 30, 15, 999_998, tzinfo=UTC)
    times = [moment, moment, moment + timedelta(microseconds=1), moment + timedelta(microseconds=2)]
    times += [moment + timedelta(seconds=1), moment - timedelta(microseconds=1)]
    events = [change(case, "case_received", at=at) for at in times]

    read = walk(reader, "/events", limit=1)

    assert ids(read) == in_order(StatusEvent.objects.filter(firm=firm), "observed_at", "pk")
    assert len(read) == len(events)
    shown = [parse_datetime(event["observed_at"]) for event in read]
    assert shown == [at.replace(microsecond=at.microsecond // 1000 * 1000) for at in sorted(times)]
    assert ids(walk(reader, f"/cases/{case.pk}/events", limit=2)) == ids(read)


def test_since_and_the_cursor_keep_microseconds_in_any_time_zone(
    firm: Firm, reader: Integration
) -> None:
    moment = datetime(2026, 11, 3, 9, 30, 15, 123_456, tzinfo=UTC)
    sent = [message(firm, n, created_at=moment + timedelta(microseconds=n % 3)) for n in range(9)]
    later = moment + timedelta(microseconds=1)
    since = later.astimezone(timezone.get_fixed_timezone(-300)).isoformat()  # New York, EST
    assert since == "2026-11-03T04:30:15.123457-05:00"

    read = walk(reader, "/notifications", limit=2, since=since)

    assert ids(read) == in_order(
        Notification.objects.filter(created_at__gte=later), "created_at", "pk"
    )
    assert sorted(ids(read)) == sorted(n.pk for n in sent if n.created_at >= later)
    assert len(read) == 6


# --- Rows for the lists -------------------------------------------------------------------


def deadline(firm: Firm, n: int, *, due_on: date) -> Deadline:
    case = cases_of(firm)[n % len(RECEIPTS)]
    return Deadline.objects.create(
        firm=firm, case=case, kind="rfe_response", due_on=due_on, basis=due_on - timedelta(days=87)
    )


def message(firm: Firm, n: int, *, created_at: datetime, channel: str = "sms") -> Notification:
    case = cases_of(firm)[n % len(RECEIPTS)]
    return Notification.objects.create(
        firm=firm,
        case=case,
        kind="status_change",
        recipient_kind="client",
        client=case.client,
        channel=channel,
        language="en",
        status="sent",
        idempotency_key=f"pages-{firm.pk}-{n}-{channel}",
        created_at=created_at,
    )
