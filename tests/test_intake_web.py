"""Bringing cases in from the web: one case, the import wizard, a pasted list, the bulk check.

The people here are made up ("Test Client Uno"); the receipts are the USCIS sandbox's.
"""

from __future__ import annotations

import csv
import io
import json
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client as Browser
from openpyxl import Workbook

from casewatch.accounts.models import Firm, Role
from casewatch.audit.models import AuditEntry
from casewatch.cases.models import Case, Client, ImportRun
from casewatch.cases.sheet import NoReceiptColumn, read_sheet_bytes
from casewatch.core.spreadsheet import safe_cell
from casewatch.monitor.health import FAILURES_TO_OPEN, note_outcome
from casewatch.monitor.tasks import quota
from casewatch.web import held_files
from tests.environment import sign_in
from tests.test_i18n import SPANISH, _english_left
from tests.test_web import _member

pytestmark = pytest.mark.django_db

MESSY_CSV = (
    "Caseload export March\n"
    "\n"
    "Receipt #,Form,Client,E-mail,Cell,Idioma,Abogado,Tags,Notes\n"
    "eac-99-991-03403,i485,Test Client Uno,uno@example.com,(202) 555-0142,Spanish,"
    'Ana Abogada,"rfe, priority",first note\n'
    "LIN 9999106498,I-130,Test Client Dos,not-an-email,202 555 0143,es,,,\n"
    "EAC123,I-765,Test Client Tres,tres@example.com,,,,,\n"
    "SRC9999102777,N400,=Test Client Cuatro,,,,,,\n"
    "EAC9999103403,I-485,Test Client Uno bis,,,,,,\n"
)


@pytest.fixture
def firm() -> Firm:
    return Firm.objects.create(name="Example Immigration Law", slug="example")


@pytest.fixture
def paula(firm: Firm) -> User:
    return _member(firm, "paula", Role.PARALEGAL)


@pytest.fixture
def browser(paula: User) -> Browser:
    browser = Browser()
    sign_in(browser, paula)
    return browser


def _upload(browser: Browser, name: str, data: bytes) -> Any:
    return browser.post("/intake/import/", {"file": SimpleUploadedFile(name, data)})


def _token(response: Any) -> str:
    assert response.status_code == 302, response.content.decode()[:2000]
    match = re.fullmatch(r"/intake/import/([\w-]+)/", response["Location"])
    assert match, response["Location"]
    return match.group(1)


def _fingerprint(page: str) -> str:
    match = re.search(r'name="fingerprint" value="([0-9a-f]{64})"', page)
    assert match, "the preview offers no commit"
    return match.group(1)


def _xlsx(*rows: list[object]) -> bytes:
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    for row in rows:
        sheet.append(row)
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


# --- The import wizard ---------------------------------------------------------------


def test_a_messy_csv_is_previewed_row_by_row_before_anything_is_stored(
    browser: Browser, firm: Firm
) -> None:
    token = _token(_upload(browser, "caseload.csv", MESSY_CSV.encode("cp1252")))
    page = browser.get(f"/intake/import/{token}/").content.decode()

    # The columns as guessed, each menu labelled with the file's own header.
    assert '<label for="id_column_0"><span lang="und">Receipt #</span></label>' in page
    assert re.search(r'<option value="receipt_number" selected>', page)
    # The rows as they will be stored: receipts normalized, forms and phones cleaned.
    assert "EAC9999103403" in page and "LIN9999106498" in page
    assert "I-485" in page and "+12025550142" in page and "Test Client Uno" in page
    # Per-row problems, before anything is stored: the bad receipt, the bad e-mail, the repeat.
    assert "Skipped: no valid receipt number" in page and "EAC123" in page
    assert "Left out; the case is tracked without it" in page and "n•••" in page
    assert "Imported once: the receipt is on an earlier line too" in page
    assert "3 new cases" in page and "1 row skipped" in page
    assert "Ana Abogada" in page  # a new member to invite, named before the import
    assert Case.objects.count() == 0 and Client.objects.count() == 0
    assert not User.objects.filter(first_name="Ana").exists()


def test_the_commit_stores_exactly_what_the_preview_said(browser: Browser, firm: Firm) -> None:
    token = _token(_upload(browser, "caseload.csv", MESSY_CSV.encode("utf-8")))
    preview = browser.get(f"/intake/import/{token}/").content.decode()
    done = browser.post(
        f"/intake/import/{token}/commit/", {"fingerprint": _fingerprint(preview)}, follow=True
    )
    assert done.redirect_chain[-1][0] == f"/intake/import/{token}/done/"
    page = done.content.decode()

    cases = {c.receipt_number: c for c in Case.objects.filter(firm=firm).select_related("client")}
    assert set(cases) == {"EAC9999103403", "LIN9999106498", "SRC9999102777"}
    uno = cases["EAC9999103403"]
    assert uno.form_type == "I-485" and uno.tags == ["rfe", "priority"]
    assert uno.client is not None and uno.client.name == "Test Client Uno"
    assert uno.client.phone == "+12025550142" and uno.client.language == "es"
    assert uno.attorney is not None and uno.attorney.get_full_name() == "Ana Abogada"
    dos = cases["LIN9999106498"]
    assert dos.client is not None and dos.client.email == ""  # left out, as the preview said
    assert cases["SRC9999102777"].client.name == "=Test Client Cuatro"  # type: ignore[union-attr]

    # The result: figures, each rejected row's line and reason, and what was kept.
    assert re.search(r"<dt>Cases created</dt><dd>3</dd>", page)
    assert re.search(r"<dt>Rows rejected</dt><dd>1</dd>", page)
    assert "<td>6</td>" in page and "13 characters" in page  # line 6 holds EAC123
    assert "Kept; check it" in page and "formula" in page
    run = ImportRun.objects.get(firm=firm)
    assert (run.created, run.actor, run.file_name) == (3, "paula", "caseload.csv")
    assert AuditEntry.objects.filter(action="case.created", actor="paula").count() == 3
    # The file itself is gone; only what the import did is kept, for a day.
    assert not (held_files.folder() / f"{token}.data").exists()
    assert browser.get(f"/intake/import/{token}/").status_code == 302


def test_importing_the_same_file_again_changes_nothing(browser: Browser, firm: Firm) -> None:
    data = MESSY_CSV.encode("utf-8")
    first = _token(_upload(browser, "caseload.csv", data))
    preview = browser.get(f"/intake/import/{first}/").content.decode()
    browser.post(f"/intake/import/{first}/commit/", {"fingerprint": _fingerprint(preview)})
    before = list(Case.objects.order_by("pk").values())

    again = _token(_upload(browser, "caseload.csv", data))
    preview = browser.get(f"/intake/import/{again}/").content.decode()
    assert "0 new cases" in preview and "3 unchanged" in preview
    case = Case.objects.get(receipt_number="EAC9999103403")
    assert f'<a href="/cases/{case.pk}/">EAC9999103403</a>' in preview  # the duplicate, linked
    done = browser.post(
        f"/intake/import/{again}/commit/", {"fingerprint": _fingerprint(preview)}, follow=True
    ).content.decode()
    assert re.search(r"<dt>Unchanged</dt><dd>3</dd>", done)
    assert list(Case.objects.order_by("pk").values()) == before


def test_an_excel_workbook_with_first_and_last_names(browser: Browser, firm: Firm) -> None:
    data = _xlsx(
        ["Receipt Number", "First Name", "Last Name", "Correo", "Form Type"],
        ["SRC9999102778", "Test Client", "Cinco", "cinco@example.com", "I-129F"],
        ["SRC9999102779", "Test Client", "Seis", None, 485],
    )
    token = _token(_upload(browser, "caseload.xlsx", data))
    preview = browser.get(f"/intake/import/{token}/").content.decode()
    assert re.search(r'<option value="given_name" selected>', preview)
    assert re.search(r'<option value="family_name" selected>', preview)
    assert "Test Client Cinco" in preview
    browser.post(f"/intake/import/{token}/commit/", {"fingerprint": _fingerprint(preview)})
    cinco = Case.objects.select_related("client").get(receipt_number="SRC9999102778")
    assert cinco.client is not None and cinco.client.name == "Test Client Cinco"
    assert cinco.form_type == "I-129F" and cinco.client.email == "cinco@example.com"
    assert Case.objects.get(receipt_number="SRC9999102779").form_type == ""  # 485 is no form


def test_a_person_says_which_column_is_what_when_the_headers_do_not(
    browser: Browser, firm: Firm
) -> None:
    data = b"Num,Person,Remarks\nEAC9999103404,Test Client Siete,vip\n"
    token = _token(_upload(browser, "odd.csv", data))
    page = browser.get(f"/intake/import/{token}/").content.decode()
    assert "Choose that column below" in page
    assert 'name="fingerprint"' not in page  # nothing to import until a receipt column is chosen

    refused = browser.post(
        f"/intake/import/{token}/",
        {"column_0": "receipt_number", "column_1": "client_name", "column_2": "client_name"},
    )
    assert "Client name is already chosen for another column." in refused.content.decode()

    chosen = browser.post(
        f"/intake/import/{token}/",
        {"column_0": "receipt_number", "column_1": "client_name", "column_2": "tags"},
    )
    assert chosen.status_code == 302
    preview = browser.get(f"/intake/import/{token}/").content.decode()
    assert "1 new case" in preview and "Test Client Siete" in preview
    browser.post(f"/intake/import/{token}/commit/", {"fingerprint": _fingerprint(preview)})
    case = Case.objects.select_related("client").get(receipt_number="EAC9999103404")
    assert case.tags == ["vip"] and case.client is not None
    assert case.client.name == "Test Client Siete"


def test_a_guessed_column_can_be_changed(browser: Browser, firm: Firm) -> None:
    data = b"Receipt,Notes\nEAC9999103405,vip\n"
    token = _token(_upload(browser, "cases.csv", data))
    browser.post(f"/intake/import/{token}/", {"column_0": "receipt_number", "column_1": "tags"})
    preview = browser.get(f"/intake/import/{token}/").content.decode()
    assert re.search(r'<option value="tags" selected>', preview)
    browser.post(f"/intake/import/{token}/commit/", {"fingerprint": _fingerprint(preview)})
    case = Case.objects.get(receipt_number="EAC9999103405")
    assert case.tags == ["vip"] and case.notes == ""


def test_nothing_is_imported_when_the_firm_changed_since_the_preview(
    browser: Browser, firm: Firm
) -> None:
    token = _token(_upload(browser, "caseload.csv", MESSY_CSV.encode("utf-8")))
    preview = browser.get(f"/intake/import/{token}/").content.decode()
    browser.post("/intake/receipts/", {"receipts": "EAC9999103403"})
    page = browser.post(
        f"/intake/import/{token}/commit/", {"fingerprint": _fingerprint(preview)}, follow=True
    ).content.decode()
    assert "nothing was imported" in page
    assert list(Case.objects.values_list("receipt_number", flat=True)) == ["EAC9999103403"]
    assert "2 new cases" in page  # the preview as things stand now


def test_an_oversized_upload_is_refused_with_the_limit_and_nothing_imported(
    browser: Browser, firm: Firm, settings: Any
) -> None:
    settings.CASEWATCH_MAX_UPLOAD_BYTES = 1024 * 1024  # CASEWATCH_MAX_UPLOAD_MB=1
    before = set(held_files.folder().iterdir())
    big = b"Receipt Number\n" + b"EAC9999103403\n" * (1024 * 1024 // 14 + 1)
    response = _upload(browser, "huge.csv", big)
    assert response.status_code == 413
    page = response.content.decode()
    assert "larger than 1.0\xa0MB, the most the web import takes" in page
    assert "Nothing was imported" in page and "casewatch import" in page
    assert set(held_files.folder().iterdir()) == before
    assert Case.objects.count() == 0


def test_a_file_that_is_not_a_spreadsheet_is_refused_saying_why(browser: Browser) -> None:
    page = _upload(browser, "scan.pdf", b"%PDF-1.7 scan").content.decode()
    assert "This file cannot be imported." in page and "PDF document" in page


def test_the_uploaded_file_waits_encrypted_and_only_for_a_day(browser: Browser) -> None:
    token = _token(_upload(browser, "caseload.csv", MESSY_CSV.encode("utf-8")))
    stored = b"".join(
        (held_files.folder() / f"{token}.{part}").read_bytes() for part in ("data", "meta")
    )
    for clear in (b"Test Client", b"uno@example.com", b"EAC9999103403", b"caseload.csv"):
        assert clear not in stored
    for part in ("data", "meta"):
        assert (held_files.folder() / f"{token}.{part}").stat().st_mode & 0o077 == 0
    assert held_files.sweep(now=time.time() + 2 * 24 * 3600) >= 2
    assert browser.get(f"/intake/import/{token}/").status_code == 404


def test_an_upload_is_seen_only_by_the_member_who_made_it(browser: Browser, firm: Firm) -> None:
    token = _token(_upload(browser, "caseload.csv", MESSY_CSV.encode("utf-8")))
    other_firm = Firm.objects.create(name="Other Firm", slug="other")
    for user in (_member(other_firm, "olivia", Role.ADMIN), _member(firm, "pedro")):
        someone = Browser()
        sign_in(someone, user)
        assert someone.get(f"/intake/import/{token}/").status_code == 404
        assert someone.post(f"/intake/import/{token}/commit/").status_code == 404
    assert browser.get("/intake/import/../../keys/").status_code == 404


def test_cancelling_deletes_the_upload(browser: Browser) -> None:
    token = _token(_upload(browser, "caseload.csv", MESSY_CSV.encode("utf-8")))
    browser.post(f"/intake/import/{token}/delete/")
    assert not any(held_files.folder().glob(f"{token}.*"))
    assert Case.objects.count() == 0


def test_the_reader_takes_a_chosen_mapping() -> None:
    data = b"Title line\nNum,Person\nEAC9999103403,Test Client Ocho\n"
    with pytest.raises(NoReceiptColumn):
        read_sheet_bytes(data, "odd.csv")
    sheet = read_sheet_bytes(data, "odd.csv", mapping={0: "receipt_number", 1: "client_name"})
    assert sheet.headers == ("Title line",)  # no header row was recognized: the first row
    assert sheet.mapping == {0: "receipt_number"}
    guessed = read_sheet_bytes(b"Receipt #,Nombre,Apellido\nEAC9999103403,Uno,Test\n", "x.csv")
    assert guessed.mapping == {0: "receipt_number", 1: "given_name", 2: "family_name"}
    assert guessed.rows[0].values["client_name"] == "Uno Test"


# --- One case -------------------------------------------------------------------------


def test_one_case_is_added_with_its_client_and_people(browser: Browser, firm: Firm) -> None:
    attorney = _member(firm, "ana", Role.ATTORNEY)
    response = browser.post(
        "/intake/case/",
        {
            "receipt_number": " eac-99-991-03403 ",
            "form_type": "i 485",
            "client_name": "Test Client Nueve",
            "client_email": "Nueve <nueve@example.com>",
            "client_phone": "202.555.0142",
            "client_language": "Español",
            "attorney": attorney.pk,
            "tags": "rfe; rfe, priority",
        },
    )
    case = Case.objects.select_related("client").get(firm=firm)
    assert response.status_code == 302 and response["Location"] == f"/cases/{case.pk}/"
    assert (case.receipt_number, case.form_type, case.tags) == (
        "EAC9999103403",
        "I-485",
        ["rfe", "priority"],
    )
    assert case.client is not None and case.client.email == "nueve@example.com"
    assert case.client.phone == "+12025550142" and case.client.language == "es"
    assert case.attorney == attorney
    entry = AuditEntry.objects.get(action="case.created")
    assert entry.actor == "paula" and "Nueve" not in str(entry.details)


def test_a_receipt_the_firm_tracks_is_refused_with_a_link_to_its_case(
    browser: Browser, firm: Firm
) -> None:
    existing = Case.objects.create(firm=firm, receipt_number="EAC9999103403")
    page = browser.post("/intake/case/", {"receipt_number": "EAC 9999103403"}).content.decode()
    assert "EAC9999103403 is already a case of the firm." in page
    assert f'<a href="/cases/{existing.pk}/">Open it</a>' in page
    assert Case.objects.count() == 1
    other = Firm.objects.create(name="Other Firm", slug="other")
    Case.objects.create(firm=other, receipt_number="LIN9999106498")
    browser.post("/intake/case/", {"receipt_number": "LIN9999106498"})
    assert Case.objects.filter(firm=firm, receipt_number="LIN9999106498").exists()


def test_a_case_may_wait_for_its_receipt(browser: Browser, firm: Firm) -> None:
    browser.post("/intake/case/", {"client_name": "Test Client Diez", "form_type": "N-400"})
    case = Case.objects.select_related("client").get(firm=firm)
    assert case.receipt_number is None and case.client.name == "Test Client Diez"  # type: ignore[union-attr]
    page = browser.post("/intake/case/", {"form_type": "I-130"}).content.decode()
    assert "at least the client&#x27;s name or your client id" in page
    assert Case.objects.count() == 1


def test_a_bad_field_is_refused_next_to_it_and_nothing_is_stored(browser: Browser) -> None:
    page = browser.post(
        "/intake/case/",
        {"receipt_number": "EAC123", "client_name": "Test Client Once", "client_email": "x@"},
    ).content.decode()
    assert "This is not a receipt number" in page and "Not a valid e-mail address." in page
    assert Case.objects.count() == 0 and Client.objects.count() == 0


def test_only_the_firms_members_can_be_assigned(browser: Browser, firm: Firm) -> None:
    outsider = _member(Firm.objects.create(name="Other Firm", slug="other"), "otto", Role.ATTORNEY)
    page = browser.get("/intake/case/").content.decode()
    assert "otto" not in page
    refused = browser.post(
        "/intake/case/", {"receipt_number": "EAC9999103403", "attorney": outsider.pk}
    )
    assert "Select a valid choice" in refused.content.decode()
    assert Case.objects.count() == 0


# --- A pasted list ----------------------------------------------------------------------


def test_pasted_receipts_become_cases_and_the_rest_is_explained(
    browser: Browser, firm: Firm
) -> None:
    known = Case.objects.create(firm=firm, receipt_number="SRC9999102777")
    pasted = "eac 9999103403,  LIN-9999-106498\n\tsrc9999102777 ; EAC12345\n\nEAC9999103403\n"
    page = browser.post("/intake/receipts/", {"receipts": pasted}).content.decode()
    assert set(Case.objects.filter(firm=firm).values_list("receipt_number", flat=True)) == {
        "EAC9999103403",
        "LIN9999106498",
        "SRC9999102777",
    }
    assert "2 new cases" in page and "1 already tracked" in page and "1 repeated" in page
    assert "1 not a receipt number" in page and "EAC12345" in page and "13 characters" in page
    assert f'<a href="/cases/{known.pk}/">SRC9999102777</a>' in page
    assert ImportRun.objects.get(firm=firm).created == 2


def test_an_empty_paste_asks_for_receipts(browser: Browser) -> None:
    page = browser.post("/intake/receipts/", {"receipts": "\n # nothing\n"}).content.decode()
    assert "Paste at least one receipt number." in page


# --- The bulk status check ----------------------------------------------------------------


def _streamed(response: Any) -> list[str]:
    assert response.streaming, "the results are streamed as they are read"
    return [chunk.decode() for chunk in response.streaming_content]


def test_a_bulk_check_streams_a_row_per_receipt_and_exports_them(
    browser: Browser, firm: Firm
) -> None:
    tracked = Case.objects.create(firm=firm, receipt_number="EAC9999103403")
    Case.objects.create(
        firm=Firm.objects.create(name="Other Firm", slug="other"), receipt_number="LIN9999106498"
    )
    used = quota().used_today()
    pasted = 'eac-9999103403\nLIN9999106498, LIN2410010404\n=HYPERLINK("x")\nEAC9999103403'
    chunks = _streamed(browser.post("/intake/check/", {"receipts": pasted}))

    rows = [chunk for chunk in chunks if chunk.lstrip().startswith("<tr")]
    assert len(rows) == 4  # three receipts (one pasted twice) and one input that is no receipt
    page = "".join(chunks)
    assert "Case Was Approved" in page and "USCIS does not know this receipt number." in page
    assert "Not a receipt number, so USCIS was not asked." in page
    assert re.findall(r'href="/cases/(\d+)/"', page) == [str(tracked.pk)]  # the firm's own
    assert "1 repeated receipt asked once" in page
    # Each request took a slot of the budget the workers share (a slot the machine woke
    # too late for is given up and counted, so there may be more than three).
    assert quota().used_today() >= used + 3
    assert Case.objects.filter(firm=firm).count() == 1  # a check adds no case by itself
    run = AuditEntry.objects.get(action="status_check.run")
    assert run.firm_id == firm.pk and run.actor.startswith("user:")
    assert {k: run.details[k] for k in ("inputs", "invalid", "cases", "via")} == {
        "inputs": 5,
        "invalid": 1,
        "cases": 1,
        "via": "web",
    }  # counts only: no receipt is written in the audit chain
    assert "EAC9999103403" not in json.dumps(run.details)

    link = re.search(r'href="(/intake/check/[\w-]+\.csv)"', page)
    assert link, "a CSV of the results is offered"
    download = browser.get(link.group(1))
    assert download["Content-Type"].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(download.content.decode("utf-8-sig"))))
    receipts = [row["receipt_number"] for row in table]  # in the order pasted, repeats too
    assert receipts[:3] == ["EAC9999103403", "LIN9999106498", "LIN2410010404"]
    assert receipts[4] == "EAC9999103403"
    assert table[3]["input"] == '\'=HYPERLINK("x")'  # a formula is written as text
    assert table[3]["receipt_number"].startswith("'=")
    assert table[0]["case"] == f"http://testserver/cases/{tracked.pk}/"
    assert table[1]["case"] == ""  # another firm's case is not this firm's
    assert table[0]["title_en"] == "Case Was Approved" and table[0]["source"] == "sandbox"
    exported = AuditEntry.objects.get(action="status_check.exported")
    assert (exported.firm_id, exported.details) == (firm.pk, {"rows": 5, "format": "csv"})


def test_the_receipts_checked_can_then_be_added_as_cases(browser: Browser, firm: Firm) -> None:
    page = "".join(
        _streamed(browser.post("/intake/check/", {"receipts": "EAC9999103403 LIN9999106498"}))
    )
    assert "Add these as cases" in page
    value = re.search(r'name="receipts" value="([^"]+)"', page)
    assert value and value.group(1) == "EAC9999103403, LIN9999106498"
    browser.post("/intake/receipts/", {"receipts": value.group(1)})
    assert Case.objects.filter(firm=firm).count() == 2


def test_a_bulk_check_asks_nothing_while_the_circuit_is_open(browser: Browser) -> None:
    now = datetime.now(UTC)
    for _ in range(FAILURES_TO_OPEN):
        note_outcome("unavailable", now, message="down")
    used = quota().used_today()
    page = "".join(_streamed(browser.post("/intake/check/", {"receipts": "EAC9999103403"})))
    assert "Not asked: USCIS cannot be read right now" in page
    assert quota().used_today() == used


def test_a_bulk_check_beyond_todays_budget_is_refused(
    browser: Browser, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CASEWATCH_USCIS_DAILY_BUDGET", "2")
    response = browser.post(
        "/intake/check/", {"receipts": "EAC9999103403 LIN9999106498 SRC9999102777"}
    )
    assert not response.streaming
    assert "only 2 of today" in response.content.decode()


def test_formulas_are_neutralized_in_exported_cells() -> None:
    for cell in ("=1+1", "+1", "-1", "@SUM(A1)", "\t=1"):
        assert safe_cell(cell) == "'" + cell
    assert safe_cell("EAC9999103403") == "EAC9999103403" and safe_cell(None) == ""


# --- Who may ------------------------------------------------------------------------------


INTAKE_PAGES = ("/intake/", "/intake/case/", "/intake/import/", "/intake/receipts/")


def test_front_desk_can_neither_add_cases_nor_spend_the_uscis_budget(firm: Firm) -> None:
    desk = Browser()
    sign_in(desk, _member(firm, "frank", Role.FRONT_DESK))
    for url in (*INTAKE_PAGES, "/intake/check/"):
        assert desk.get(url).status_code == 403, url
    for url in (*INTAKE_PAGES[1:], "/intake/check/"):
        assert desk.post(url, {"receipts": "EAC9999103403"}).status_code == 403, url
    assert Case.objects.count() == 0
    nav = desk.get("/cases/").content.decode()
    assert 'href="/intake/' not in nav


def test_the_header_leads_case_workers_to_intake(browser: Browser) -> None:
    nav = browser.get("/cases/").content.decode()
    assert 'href="/intake/"' in nav and 'href="/intake/check/"' in nav


def test_the_welcome_page_points_at_the_web_intake(browser: Browser) -> None:
    page = browser.get("/welcome/").content.decode()
    assert 'href="/intake/import/"' in page and 'href="/intake/receipts/"' in page


# --- In Spanish --------------------------------------------------------------------------


@pytest.fixture
def spanish_pages(browser: Browser) -> Iterator[tuple[Browser, dict[str, str]]]:
    token = _token(_upload(browser, "caseload.csv", MESSY_CSV.encode("utf-8")))
    yield browser, {"review": f"/intake/import/{token}/"}


def test_the_intake_pages_have_no_english_left_in_spanish(
    spanish_pages: tuple[Browser, dict[str, str]],
) -> None:
    browser, extra = spanish_pages
    for url in (*INTAKE_PAGES, "/intake/check/", extra["review"]):
        html = browser.get(url, headers={"accept-language": SPANISH}).content.decode()
        assert _english_left(html) == [], url
    review = browser.get(extra["review"]).content.decode()
    browser.post(extra["review"] + "commit/", {"fingerprint": _fingerprint(review)})
    done = browser.get(extra["review"] + "done/", headers={"accept-language": SPANISH})
    assert "Casos creados" in done.content.decode()
    assert _english_left(done.content.decode()) == []
    pasted = browser.post(
        "/intake/receipts/", {"receipts": "EAC9999103403"}, headers={"accept-language": SPANISH}
    )
    assert _english_left(pasted.content.decode()) == []
    checked = "".join(
        _streamed(
            browser.post(
                "/intake/check/",
                {"receipts": "LIN9999106498"},
                headers={"accept-language": SPANISH},
            )
        )
    )
    assert "Descargar como CSV" in checked and _english_left(checked) == []
