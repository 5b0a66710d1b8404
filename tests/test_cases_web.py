"""The case list and a case's page: search through the blind index of names, filters,
saved views, the timeline, notes, edits and archiving; always within the member's firm."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client as Browser

from casewatch.accounts.models import Firm, Role
from casewatch.audit.models import AuditEntry
from casewatch.cases.intake import import_sheet
from casewatch.cases.models import Case, Client, Comment, NameToken, SavedView, StatusEvent
from casewatch.cases.sheet import read_sheet_bytes
from casewatch.monitor.checks import watched_cases
from tests.environment import sign_in
from tests.test_cli import casewatch
from tests.test_web import _member, _rfe_case

pytestmark = pytest.mark.django_db

SHEET = (
    "Receipt Number,Client Name,Form,Attorney,Tags,Language\n"
    'EAC2490012345,María José García-López,I-485,Ana Abogada,"family, Pro Bono",es\n'
    "EAC2490054321,Nguyễn Văn An,I-130,,priority,vi\n"
    "LIN2490011111,Seán O'Brien,N-400,Ana Abogada,,en\n"
)


@pytest.fixture
def firm() -> Firm:
    return Firm.objects.create(name="Example Immigration Law", slug="example")


@pytest.fixture
def imported(firm: Firm) -> Firm:
    summary = import_sheet(firm, read_sheet_bytes(SHEET.encode(), "sheet.csv"), file_name="s.csv")
    assert summary.created == 3
    return firm


def _browser(firm: Firm, username: str, role: str = Role.PARALEGAL) -> Browser:
    browser = Browser()
    sign_in(browser, _member(firm, username, role))
    return browser


@pytest.fixture
def paula(firm: Firm) -> Browser:
    return _browser(firm, "paula")


def _receipts(page: str) -> set[str]:
    return set(re.findall(r">([A-Z]{3}\d{10})</a>", page))


def _list(browser: Browser, **query: str) -> str:
    response = browser.get("/cases/", query)
    assert response.status_code == 200
    return response.content.decode()


# --- Search ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "found"),
    [
        ("garcia", {"EAC2490012345"}),
        ("GARCÍA", {"EAC2490012345"}),
        ("  josé   MARIA ", {"EAC2490012345"}),
        ("Garcia-Lopez", {"EAC2490012345"}),
        ("lopez", {"EAC2490012345"}),
        ("nguyen", {"EAC2490054321"}),
        ("VAN", {"EAC2490054321"}),
        ("obrien", {"LIN2490011111"}),
        ("o'brien", {"LIN2490011111"}),
        ("garc", set()),  # whole words only: the index holds no beginnings of words
        ("maria nguyen", set()),  # every word must be in the one name
    ],
)
def test_a_client_is_found_by_any_word_of_their_name_whatever_its_case_or_accents(
    imported: Firm, paula: Browser, typed: str, found: set[str]
) -> None:
    assert _receipts(_list(paula, q=typed)) == found


@pytest.mark.parametrize(
    ("typed", "found"),
    [
        ("eac 24900", {"EAC2490012345", "EAC2490054321"}),
        ("eac-24-900-12345", {"EAC2490012345"}),
        ("lin", {"LIN2490011111"}),
        ("2490054321", {"EAC2490054321"}),
        ("WAC24", set()),
    ],
)
def test_a_case_is_found_by_its_receipt_or_how_the_receipt_starts(
    imported: Firm, paula: Browser, typed: str, found: set[str]
) -> None:
    assert _receipts(_list(paula, q=typed)) == found


def test_the_name_index_stores_keyed_hashes_and_never_a_name(imported: Firm) -> None:
    tokens = list(NameToken.objects.filter(firm=imported).values_list("token", flat=True))
    assert tokens and all(re.fullmatch(r"[0-9a-f]{32}", token) for token in tokens)
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM cases_nametoken")
        stored = " ".join(str(value) for row in cursor.fetchall() for value in row).casefold()
    for word in ("maria", "maría", "garcia", "garcía", "lopez", "nguyen", "obrien", "brien"):
        assert word not in stored
    # The same name at another firm is stored under other tokens.
    other = Firm.objects.create(name="Other Firm", slug="other")
    import_sheet(other, read_sheet_bytes(SHEET.encode(), "sheet.csv"), file_name="s.csv")
    theirs = set(NameToken.objects.filter(firm=other).values_list("token", flat=True))
    assert theirs.isdisjoint(tokens)


def test_clients_saved_before_the_index_existed_are_indexed_on_the_first_search(
    firm: Firm, paula: Browser
) -> None:
    client = Client.objects.create(firm=firm, personal={"name": "Zoë Ibáñez"})
    nameless = Client.objects.create(firm=firm, personal={"email": "x@example.com"})
    Case.objects.create(firm=firm, receipt_number="SRC2490000001", client=client)
    assert not NameToken.objects.filter(client__in=[client, nameless]).exists()
    assert _receipts(_list(paula, q="ibanez zoe")) == {"SRC2490000001"}
    assert NameToken.objects.filter(client=client).count() == 2
    assert NameToken.objects.filter(client=nameless).count() == 1  # indexed, nothing to find


def test_a_name_added_by_a_later_import_is_found(imported: Firm, paula: Browser) -> None:
    later = "Receipt Number,Client ID,Client Name\nSRC2490000002,K-7,\n"
    import_sheet(imported, read_sheet_bytes(later.encode(), "a.csv"), file_name="a.csv")
    again = "Receipt Number,Client ID,Client Name\nSRC2490000002,K-7,Élodie Marchand\n"
    import_sheet(imported, read_sheet_bytes(again.encode(), "b.csv"), file_name="b.csv")
    assert _receipts(_list(paula, q="elodie")) == {"SRC2490000002"}


# --- Filters, sorting, pages ---------------------------------------------------------


def test_each_filter_narrows_the_list(imported: Firm, paula: Browser) -> None:
    rfe = _rfe_case(imported, "WAC2490099999")  # evidence requested, action needed
    Case.objects.create(firm=imported, form_type="I-765")  # receipt still pending
    archived = Case.objects.get(receipt_number="LIN2490011111")
    archived.archived_at = datetime(2026, 3, 1, tzinfo=UTC)
    archived.save()
    ana = User.objects.get(first_name="Ana")
    expectations = [
        ({"category": "evidence_requested"}, {rfe.receipt_number}),
        ({"urgency": "action"}, {rfe.receipt_number}),
        ({"form": "i130"}, {"EAC2490054321"}),
        ({"form": "I-485"}, {"EAC2490012345", rfe.receipt_number}),
        ({"attorney": str(ana.pk)}, {"EAC2490012345"}),
        ({"attorney": "none"}, {"EAC2490054321", rfe.receipt_number}),
        ({"tag": "pro bono"}, {"EAC2490012345"}),
        ({"tag": "PRIORITY"}, {"EAC2490054321"}),
        ({"tag": "prio"}, set()),
        ({"state": "archived"}, {"LIN2490011111"}),
        ({"state": "all", "attorney": str(ana.pk)}, {"EAC2490012345", "LIN2490011111"}),
        ({"receipt": "known", "q": "eac"}, {"EAC2490012345", "EAC2490054321"}),
    ]
    for query, receipts in expectations:
        assert _receipts(_list(paula, **query)) == receipts, query
    pending = _list(paula, receipt="pending")
    assert _receipts(pending) == set() and "receipt pending" in pending


def test_a_tag_outside_ascii_is_found_too(firm: Firm, paula: Browser) -> None:
    Case.objects.create(firm=firm, receipt_number="EAC2490000003", tags=["Niños", "asilo"])
    Case.objects.create(firm=firm, receipt_number="EAC2490000004", tags=["ninos"])
    assert _receipts(_list(paula, tag="Niños")) == {"EAC2490000003"}
    assert _receipts(_list(paula, tag="ASILO")) == {"EAC2490000003"}


def test_the_list_sorts_by_receipt_and_shows_a_page_at_a_time(firm: Firm, paula: Browser) -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    Case.objects.bulk_create(
        Case(
            firm=firm,
            receipt_number=f"EAC24900{n:05d}",
            status="case_received",
            status_since=start + timedelta(hours=n),
        )
        for n in range(120)
    )
    first = _list(paula)
    newest = re.findall(r">([A-Z]{3}\d{10})</a>", first)
    assert newest[0] == "EAC2490000119" and len(newest) == 50
    assert "Cases 1–50 of 120" in first and "Page 1 of 3" in first
    by_receipt = _list(paula, sort="receipt", page="3")
    receipts = re.findall(r">([A-Z]{3}\d{10})</a>", by_receipt)
    assert receipts == [f"EAC24900{n:05d}" for n in range(100, 120)]
    assert "Cases 101–120 of 120" in by_receipt and 'rel="next"' not in by_receipt
    assert "sort=receipt&amp;page=2" in by_receipt


# --- Saved views ---------------------------------------------------------------------


def test_a_member_saves_a_view_and_finds_it_again(imported: Firm, paula: Browser) -> None:
    saved = paula.post(
        "/cases/views/", {"name": "My RFEs", "query": "category=evidence_requested&page=4&bogus=1"}
    )
    assert saved.status_code == 302 and saved["Location"] == "/cases/?category=evidence_requested"
    page = _list(paula)
    assert 'href="/cases/?category=evidence_requested"' in page and "My RFEs" in page
    # Saving again under the same name replaces it.
    paula.post("/cases/views/", {"name": "My RFEs", "query": "urgency=action"})
    view = SavedView.objects.get(name="My RFEs")
    assert view.query == "urgency=action"
    # Another member of the firm neither sees it nor can delete it.
    olga = _browser(imported, "olga", Role.ATTORNEY)
    assert "My RFEs" not in _list(olga)
    assert olga.post(f"/cases/views/{view.pk}/delete/").status_code == 404
    assert paula.post(f"/cases/views/{view.pk}/delete/").status_code == 302
    assert not SavedView.objects.filter(pk=view.pk).exists()


def test_another_firms_saved_view_is_not_found(firm: Firm, paula: Browser) -> None:
    other = Firm.objects.create(name="Other Firm", slug="other")
    stranger = _member(other, "stranger")
    view = SavedView.objects.create(firm=other, owner=stranger, name="Theirs", query="tag=x")
    assert paula.post(f"/cases/views/{view.pk}/delete/").status_code == 404
    assert SavedView.objects.filter(pk=view.pk).exists()


# --- Scope and roles -----------------------------------------------------------------


def test_another_firms_case_is_not_found_on_any_case_page(paula: Browser) -> None:
    other = Firm.objects.create(name="Other Firm", slug="other")
    case = _rfe_case(other)
    for path in ("", "edit/"):
        assert paula.get(f"/cases/{case.pk}/{path}").status_code == 404
    for path in ("edit/", "notes/", "archive/"):
        assert (
            paula.post(f"/cases/{case.pk}/{path}", {"body": "x", "form_type": "I-130"}).status_code
            == 404
        )
    case.refresh_from_db()
    assert case.archived_at is None and not Comment.objects.exists()


def test_front_desk_reads_a_case_but_cannot_edit_note_or_archive_it(firm: Firm) -> None:
    case = _rfe_case(firm)
    desk = _browser(firm, "frank", Role.FRONT_DESK)
    page = desk.get(f"/cases/{case.pk}/").content.decode()
    assert "Request for Evidence Was Sent" in page
    assert "/edit/" not in page and 'name="body"' not in page and "/archive/" not in page
    assert "Audit trail" not in page
    assert desk.get(f"/cases/{case.pk}/edit/").status_code == 403
    for path, data in (
        ("edit/", {"form_type": "I-130"}),
        ("notes/", {"body": "a note"}),
        ("archive/", {}),
    ):
        assert desk.post(f"/cases/{case.pk}/{path}", data).status_code == 403
    assert desk.post("/cases/views/", {"name": "Mine", "query": ""}).status_code == 403
    case.refresh_from_db()
    assert case.archived_at is None and case.form_type == "I-485"
    assert not Comment.objects.exists() and not SavedView.objects.exists()


# --- The case page -------------------------------------------------------------------


def test_the_case_page_marks_events_recovered_from_uscis_history(
    firm: Firm, paula: Browser
) -> None:
    case = _rfe_case(firm)
    StatusEvent.objects.create(
        firm=firm,
        case=case,
        status="fingerprints_taken",
        category="biometrics",
        urgency="progress",
        confidence=1.0,
        title_en="Fingerprints Were Taken",
        title_es="Se Tomaron las Huellas",
        description_en="We took your fingerprints.",
        uscis_date=datetime(2026, 2, 10, 12, 0, tzinfo=UTC),
        observed_at=datetime(2026, 3, 2, 15, 0, tzinfo=UTC),
        source="sandbox",
        recovered=True,
    )
    page = paula.get(f"/cases/{case.pk}/").content.decode()
    items = re.findall(r"<li class=\"urgency-[^\"]*\"[^>]*>(.*?)</li>", page, re.S)
    recovered = [item for item in items if "Fingerprints Were Taken" in item]
    current = [item for item in items if "Request for Evidence Was Sent" in item]
    assert len(recovered) == 1 and "recovered from USCIS history" in recovered[0]
    assert "USCIS date Feb. 10, 2026" in recovered[0]
    assert "Se Tomaron las Huellas" in recovered[0]
    assert len(current) == 1 and "recovered from USCIS history" not in current[0]


def test_a_firms_own_deadline_date_is_shown_beside_the_computed_one(
    firm: Firm, paula: Browser
) -> None:
    case = _rfe_case(firm)
    deadline = case.deadlines.get()
    deadline.firm_due_on = deadline.due_on + timedelta(days=14)
    deadline.firm_due_reason = "USCIS granted more time"
    deadline.save()
    page = paula.get(f"/cases/{case.pk}/").content.decode()
    assert "June 11, 2026" in page and "the firm's date" in page
    assert "casewatch computed May 28, 2026" in page and "USCIS granted more time" in page


def test_a_note_is_kept_encrypted_and_audited_without_its_text(firm: Firm, paula: Browser) -> None:
    case = _rfe_case(firm)
    event = case.events.get()
    paula.post(f"/cases/{case.pk}/notes/", {"body": "Called the client about the <RFE>"})
    paula.post(f"/cases/{case.pk}/notes/", {"body": "Evidence list sent", "event": event.pk})
    page = paula.get(f"/cases/{case.pk}/").content.decode()
    assert "Called the client about the &lt;RFE&gt;" in page
    timeline = page.split('id="notes"')[0]
    assert "Evidence list sent" in timeline
    with connection.cursor() as cursor:
        cursor.execute("SELECT body FROM cases_comment")
        assert all("client" not in str(row[0]) for row in cursor.fetchall())
    entries = AuditEntry.objects.filter(action="comment.added")
    assert entries.count() == 2 and all("Called" not in e.details_json for e in entries)


def test_editing_a_case_changes_only_what_was_changed_and_audits_it(firm: Firm) -> None:
    case = _rfe_case(firm)
    attorney = _member(firm, "ana", Role.ATTORNEY)
    browser = Browser()
    sign_in(browser, attorney)
    form = browser.get(f"/cases/{case.pk}/edit/").content.decode()
    assert 'name="receipt_number"' not in form  # USCIS knows the case by it
    response = browser.post(
        f"/cases/{case.pk}/edit/",
        {
            "form_type": "i130",
            "attorney": attorney.pk,
            "paralegal": "",
            "tags": "family, urgent",
            "client_language": "es",
        },
    )
    assert response.status_code == 302
    case.refresh_from_db()
    assert case.form_type == "I-130" and case.attorney_id == attorney.pk
    assert case.tags == ["family", "urgent"] and case.client is not None
    assert case.client.language == "es" and case.status == "rfe_sent"
    entry = AuditEntry.objects.get(action="case.updated", object_id=str(case.pk))
    assert set(entry.details["changed"]) == {"form_type", "attorney", "tags", "client_language"}
    assert entry.actor == f"user:{attorney.pk}"
    page = browser.get(f"/cases/{case.pk}/").content.decode()
    assert "Audit trail" in page and "Case changed" in page and "Form type" in page


def test_a_pending_receipt_can_be_added_once_and_must_be_a_receipt(
    firm: Firm, paula: Browser
) -> None:
    Case.objects.create(firm=firm, receipt_number="EAC2490012345")
    case = Case.objects.create(firm=firm, form_type="I-130")
    assert "No receipt number yet" in paula.get(f"/cases/{case.pk}/").content.decode()
    for typed, problem in (
        ("EAC12345", "This is not a receipt number"),
        ("eac-24-900-12345", "Another case of the firm has this receipt number"),
    ):
        page = paula.post(
            f"/cases/{case.pk}/edit/", {"receipt_number": typed, "form_type": "I-130"}
        )
        assert page.status_code == 200 and problem in page.content.decode()
    paula.post(
        f"/cases/{case.pk}/edit/", {"receipt_number": "lin 24 900 54321", "form_type": "I-130"}
    )
    case.refresh_from_db()
    assert case.receipt_number == "LIN2490054321" and case.next_check_at is not None
    assert Case.objects.filter(watched_cases(), pk=case.pk).exists()


def test_archiving_says_what_the_monitor_will_do_and_is_audited(firm: Firm, paula: Browser) -> None:
    pending_rfe = _rfe_case(firm)
    paula.post(f"/cases/{pending_rfe.pk}/archive/")
    page = paula.get(f"/cases/{pending_rfe.pk}/").content.decode()
    assert "keeps checking it at USCIS until USCIS reports a final status" in page
    assert Case.objects.filter(watched_cases(), pk=pending_rfe.pk).exists()
    assert pending_rfe.receipt_number not in _receipts(_list(paula))

    delivered = Case.objects.create(
        firm=firm,
        receipt_number="EAC2490099998",
        status="card_delivered",
        category="document_delivered",
    )
    paula.post(f"/cases/{delivered.pk}/archive/")
    page = paula.get(f"/cases/{delivered.pk}/").content.decode()
    assert "in a final status: casewatch no longer checks it" in page
    assert not Case.objects.filter(watched_cases(), pk=delivered.pk).exists()

    paula.post(f"/cases/{delivered.pk}/archive/", {"restore": "1"})
    delivered.refresh_from_db()
    assert delivered.archived_at is None
    assert (
        "casewatch checks this case at USCIS."
        in paula.get(f"/cases/{delivered.pk}/").content.decode()
    )
    actions = list(
        AuditEntry.objects.filter(object_type="case")
        .order_by("seq")
        .values_list("action", flat=True)
    )
    assert actions == ["case.archived", "case.archived", "case.unarchived"]


def test_only_admins_and_attorneys_see_the_audit_trail(firm: Firm, paula: Browser) -> None:
    case = _rfe_case(firm)
    assert "Audit trail" not in paula.get(f"/cases/{case.pk}/").content.decode()
    for role in (Role.ADMIN, Role.ATTORNEY):
        page = _browser(firm, f"someone-{role}", role).get(f"/cases/{case.pk}/").content.decode()
        assert "Audit trail" in page and "Status change recorded" in page and "Deadline set" in page


# --- The benchmark -------------------------------------------------------------------


def test_bench_web_prints_the_contract(tmp_path: Path) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    result = casewatch(
        "bench",
        "web",
        "--cases",
        "60",
        "--json",
        data_dir=tmp_path / "d",
        env={"DATABASE_URL": "", "TMPDIR": str(scratch)},
    )
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    assert figures["cases"] == 60
    assert set(figures["pages"]) == {"dashboard", "case_list", "case_search", "case_detail"}
    for page in figures["pages"].values():
        assert set(page) >= {"p50_ms", "p95_ms"} and 0 < page["p50_ms"] <= page["p95_ms"]
    assert list(scratch.iterdir()) == [], "the throwaway database is removed"
    assert not (tmp_path / "d" / "casewatch.sqlite3").exists(), "the firm's database is untouched"


def test_the_spanish_case_pages_have_no_english_left(imported: Firm) -> None:
    from tests.test_i18n import SPANISH, _english_left

    case = _rfe_case(imported, "WAC2490099999")
    attorney = _browser(imported, "ana.es", Role.ATTORNEY)
    spanish = {"accept-language": SPANISH}
    attorney.post(f"/cases/{case.pk}/notes/", {"body": "Llamar al cliente"}, headers=spanish)
    attorney.post(f"/cases/{case.pk}/archive/", headers=spanish)
    attorney.post("/cases/views/", {"name": "Urgentes", "query": "urgency=action"}, headers=spanish)
    pending = Case.objects.create(firm=imported)
    for url in (
        "/cases/?q=garcia",
        "/cases/?tag=priority&sort=receipt",
        "/cases/?state=archived",
        f"/cases/{case.pk}/",
        f"/cases/{case.pk}/edit/",
        f"/cases/{pending.pk}/",
    ):
        html = attorney.get(url, headers=spanish).content.decode()
        assert _english_left(html) == [], url
    page = attorney.get(f"/cases/{case.pk}/", headers=spanish)
    assert "sigue consultando en USCIS" in page.content.decode()
