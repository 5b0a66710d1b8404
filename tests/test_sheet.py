"""Reading a firm's spreadsheet: whatever Excel or a case system exported becomes clean rows.

Every person here is invented (Fakey McTestface, Ana Ejemplo Prueba); e-mails are
at example.com and phones are 555-01xx numbers.
"""

from __future__ import annotations

import codecs
import io
import subprocess
import sys
from datetime import date, datetime
from pathlib import Path

import phonenumbers
import pytest
from email_validator import EmailNotValidError, validate_email
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openpyxl import Workbook

from casewatch.cases.sheet import (
    RawRow,
    RowError,
    RowResult,
    Sheet,
    SheetError,
    clean_email,
    clean_phone,
    read_sheet,
    read_sheet_bytes,
    validate_row,
    validate_sheet,
)


def write(tmp_path: Path, text: str, name: str = "cases.csv", encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def read_csv(text: str, encoding: str = "utf-8") -> Sheet:
    return read_sheet_bytes(text.encode(encoding), "cases.csv")


def results_of(text: str) -> list[RowResult]:
    return validate_sheet(read_csv(text))


def one_row(**values: str) -> RowResult:
    """Validate a single row holding a good receipt and the given fields."""
    return validate_row(RawRow(2, {"receipt_number": "EAC9999103403", **values}))


def messages(result: RowResult) -> list[str]:
    return [error.message for error in result.errors]


def xlsx_bytes(*rows: list[object], title: str = "Cases") -> bytes:
    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.title = title
    for row in rows:
        sheet.append(row)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


# -- files and encodings ------------------------------------------------------------------


def test_a_plain_csv_gives_rows_keyed_by_canonical_columns(tmp_path: Path) -> None:
    path = write(tmp_path, "Receipt Number,Client Name\nEAC9999103403,Fakey McTestface\n")
    sheet = read_sheet(path)
    assert sheet.columns == {"receipt_number": "Receipt Number", "client_name": "Client Name"}
    assert sheet.rows == [
        RawRow(2, {"receipt_number": "EAC9999103403", "client_name": "Fakey McTestface"})
    ]
    assert sheet.kind == "csv"


def test_a_utf8_bom_is_not_part_of_the_first_header(tmp_path: Path) -> None:
    path = write(tmp_path, "\ufeffReceipt,Name\nEAC9999103403,Ana Ejemplo Prueba\n")
    assert read_sheet(path).columns["receipt_number"] == "Receipt"


def test_a_utf16_excel_export_is_read(tmp_path: Path) -> None:
    text = "Receipt #\tClient Name\tNotes\r\nEAC9999103403\tJosé Ejemplo\tllamar, urgente\r\n"
    path = write(tmp_path, "\ufeff" + text, "unicode.txt", encoding="utf-16-le")
    [row] = read_sheet(path).rows
    assert row.values == {
        "receipt_number": "EAC9999103403",
        "client_name": "José Ejemplo",
        "notes": "llamar, urgente",
    }


def test_a_big_endian_utf16_file_is_read(tmp_path: Path) -> None:
    path = write(tmp_path, "\ufeffReceipt\tName\nLIN9999106498\tAna\n", encoding="utf-16-be")
    assert read_sheet(path).rows[0].values["receipt_number"] == "LIN9999106498"


def test_a_semicolon_separated_file_is_read() -> None:
    sheet = read_csv(
        "Receipt;Name;Notes\n"
        "EAC9999103403;Fakey McTestface;call back, urgent\n"
        "LIN9999106498;Ana Ejemplo Prueba;RFE, biometrics, interview\n"
    )
    assert [row.values["notes"] for row in sheet.rows] == [
        "call back, urgent",
        "RFE, biometrics, interview",
    ]


def test_a_pipe_separated_file_is_read() -> None:
    sheet = read_csv("receipt|client|form\nEAC9999103403|Fakey McTestface|I-485\n")
    assert sheet.rows[0].values["form_type"] == "I-485"


def test_a_windows_1252_file_keeps_its_accents() -> None:
    sheet = read_csv("Receipt,Nombre\nEAC9999103403,José Muñoz Ejemplo\n", encoding="cp1252")
    assert sheet.rows[0].values["client_name"] == "José Muñoz Ejemplo"


def test_a_single_column_of_receipts_is_read() -> None:
    sheet = read_csv("Receipt Number\nEAC9999103403\nLIN9999106498\n")
    assert [row.values["receipt_number"] for row in sheet.rows] == [
        "EAC9999103403",
        "LIN9999106498",
    ]


def test_doubled_quotes_inside_a_quoted_value_are_one_quote() -> None:
    sheet = read_csv('Receipt,Notes\nEAC9999103403,"client said ""call after 5"", ok"\n')
    assert sheet.rows[0].values["notes"] == 'client said "call after 5", ok'


# -- line numbers -------------------------------------------------------------------------


def test_blank_lines_are_skipped_but_counted() -> None:
    sheet = read_csv("Receipt\nEAC9999103403\n\n,\n   \nLIN9999106498\n")
    assert [row.line for row in sheet.rows] == [2, 6]


def test_a_quoted_newline_keeps_later_line_numbers_right() -> None:
    sheet = read_csv(
        "Receipt,Notes\r\n"
        'EAC9999103403,"first line\r\nsecond line\r\nthird line"\r\n'
        "LIN9999106498,plain\r\n"
    )
    assert [row.line for row in sheet.rows] == [2, 5]
    assert sheet.rows[0].values["notes"] == "first line\r\nsecond line\r\nthird line"


def test_title_lines_above_the_header_are_skipped() -> None:
    sheet = read_csv("Caseload export\nGenerated 2026-03-01\n\nReceipt,Name\nEAC9999103403,Ana\n")
    assert sheet.header_line == 4
    assert [row.line for row in sheet.rows] == [5]


def test_error_rows_are_the_lines_where_rows_start() -> None:
    results = results_of('Receipt,Notes\nEAC9999103403,"two\nlines"\n\nnot-a-receipt,x\n')
    assert [error.row for error in results[1].errors] == [5]


# -- headers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "column"),
    [
        ("receipt", "receipt_number"),
        ("Receipt #", "receipt_number"),
        ("RECEIPT NO.", "receipt_number"),
        ("receipt_number", "receipt_number"),
        ("USCIS Receipt", "receipt_number"),
        ("Case Number", "receipt_number"),
        ("  Receipt   Number  ", "receipt_number"),
        ("Form", "form_type"),
        ("Form Type", "form_type"),
        ("Petition Type", "form_type"),
        ("Client ID", "client_id"),
        ("Client #", "client_id"),
        ("Ref", "client_id"),
        ("File Number", "client_id"),
        ("Client", "client_name"),
        ("Client Name", "client_name"),
        ("Name", "client_name"),
        ("Full Name", "client_name"),
        ("Beneficiary", "client_name"),
        ("Email", "client_email"),
        ("E-mail", "client_email"),
        ("Client Email", "client_email"),
        ("Applicant E-mail Address", "client_email"),
        ("Phone", "client_phone"),
        ("Mobile", "client_phone"),
        ("Cell", "client_phone"),
        ("Telephone", "client_phone"),
        ("WhatsApp", "client_phone"),
        ("Language", "client_language"),
        ("Preferred Language", "client_language"),
        ("Attorney", "attorney"),
        ("Lawyer", "attorney"),
        ("Responsible Attorney", "attorney"),
        ("Paralegal", "paralegal"),
        ("Assistant", "paralegal"),
        ("Tags", "tags"),
        ("Labels", "tags"),
        ("Notes", "notes"),
        ("Comments", "notes"),
        ("Case Notes", "notes"),
    ],
)
def test_header_aliases_are_recognized(header: str, column: str) -> None:
    sheet = read_csv(f"Receipt Number,{header}\nEAC9999103403,x\n")
    if column == "receipt_number":
        sheet = read_csv(f"{header}\nEAC9999103403\n")
    assert sheet.columns[column] == header.strip()


@pytest.mark.parametrize(
    ("header", "column"),
    [
        ("Número de recibo", "receipt_number"),
        ("Nombre", "client_name"),
        ("Correo", "client_email"),
        ("Correo electrónico", "client_email"),
        ("Teléfono", "client_phone"),
        ("Teléfono del cliente", "client_phone"),
        ("Idioma", "client_language"),
        ("Abogado", "attorney"),
        ("Notas", "notes"),
        ("Etiquetas", "tags"),
    ],
)
def test_spanish_headers_are_recognized(header: str, column: str) -> None:
    sheet = read_csv(f"Recibo;{header}\nEAC9999103403;x\n")
    if column == "receipt_number":
        sheet = read_csv(f"{header}\nEAC9999103403\n")
    assert sheet.columns[column] == header


def test_headers_that_name_staff_contact_details_are_not_the_clients() -> None:
    sheet = read_csv("Receipt,Attorney Email,Paralegal Phone\nEAC9999103403,a@example.com,1\n")
    assert "client_email" not in sheet.columns
    assert "client_phone" not in sheet.columns
    assert sheet.ignored_columns == ["Attorney Email", "Paralegal Phone"]


def test_first_and_last_name_columns_make_the_client_name() -> None:
    sheet = read_csv("Receipt,First Name,Middle Name,Last Name\nEAC9999103403,Fakey,Q.,McT\n")
    assert sheet.columns["client_name"] == "First Name + Middle Name + Last Name"
    assert sheet.rows[0].values["client_name"] == "Fakey Q. McT"


def test_given_and_family_name_columns_make_the_client_name() -> None:
    sheet = read_csv("Family Name,Given Name,Receipt\nMcTestface,Fakey,EAC9999103403\n")
    assert sheet.rows[0].values["client_name"] == "Fakey McTestface"


def test_nombre_and_apellido_make_the_client_name() -> None:
    sheet = read_csv("Recibo,Nombre,Apellido\nEAC9999103403,Ana,Ejemplo Prueba\n")
    assert sheet.rows[0].values["client_name"] == "Ana Ejemplo Prueba"


def test_a_missing_name_part_leaves_no_double_space() -> None:
    sheet = read_csv("Receipt,First Name,Middle Name,Last Name\nEAC9999103403,Ana,,Ejemplo\n")
    assert sheet.rows[0].values["client_name"] == "Ana Ejemplo"


def test_a_full_name_column_wins_over_name_parts() -> None:
    sheet = read_csv(
        "Receipt,Client Name,First Name,Last Name\nEAC9999103403,Fakey McTestface,Fakey,McT\n"
    )
    assert sheet.rows[0].values["client_name"] == "Fakey McTestface"
    assert sheet.ignored_columns == ["First Name", "Last Name"]


def test_unknown_columns_are_listed_as_ignored() -> None:
    sheet = read_csv("Receipt,A-Number,Priority Date,Name\nEAC9999103403,A000000000,2024,Ana\n")
    assert sheet.ignored_columns == ["A-Number", "Priority Date"]
    assert "A000000000" not in str(sheet.rows)


def test_a_second_column_for_the_same_field_keeps_the_first() -> None:
    sheet = read_csv("Receipt,Email,E-mail\nEAC9999103403,first@example.com,second@example.com\n")
    assert sheet.rows[0].values["client_email"] == "first@example.com"
    assert sheet.ignored_columns == ["E-mail"]


def test_a_header_only_file_has_no_rows() -> None:
    assert read_csv("Receipt Number,Client Name\n").rows == []


def test_values_beyond_the_last_header_are_reported() -> None:
    [result] = results_of("Receipt,Name,Email\nEAC9999103403,McTestface, Fakey,f@example.com\n")
    [shifted] = [error for error in result.errors if error.column is None]
    assert "unquoted" in shifted.message
    assert shifted.value == "f•••"


# -- whole-file problems ------------------------------------------------------------------


def test_a_missing_receipt_column_names_the_headers_found() -> None:
    with pytest.raises(SheetError, match="no receipt number column") as caught:
        read_csv("Client Name,Form,Attorney\nFakey McTestface,I-485,Ana\n")
    assert "'Client Name', 'Form', 'Attorney'" in str(caught.value)


def test_a_file_without_a_header_row_is_explained_without_repeating_client_data() -> None:
    with pytest.raises(SheetError, match="looks like data") as caught:
        read_csv("EAC9999103403,Fakey McTestface,fakey@example.com\n")
    assert "Fakey" not in str(caught.value)
    assert "fakey@example.com" not in str(caught.value)


@pytest.mark.parametrize(
    "data",
    [b"", b"   \r\n\r\n", codecs.BOM_UTF8, codecs.BOM_UTF16_LE, codecs.BOM_UTF8 + b"\n\n"],
)
def test_an_empty_file_is_refused(data: bytes) -> None:
    with pytest.raises(SheetError, match="empty"):
        read_sheet_bytes(data, "cases.csv")


def test_an_old_xls_workbook_is_refused_with_advice() -> None:
    data = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(512)
    with pytest.raises(SheetError, match=r"\.xls workbook.*save it as \.xlsx or CSV"):
        read_sheet_bytes(data, "cases.xls")


def test_a_damaged_xlsx_is_refused() -> None:
    data = xlsx_bytes(["Receipt"], ["EAC9999103403"])
    with pytest.raises(SheetError, match="damaged"):
        read_sheet_bytes(data[: len(data) // 2], "cases.xlsx")


def test_a_zip_that_is_not_a_workbook_is_refused() -> None:
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("cases.csv", "Receipt\nEAC9999103403\n")
    with pytest.raises(SheetError, match="zip archive"):
        read_sheet_bytes(buffer.getvalue(), "cases.zip")


def test_binary_data_is_refused() -> None:
    with pytest.raises(SheetError, match="does not look like a CSV"):
        read_sheet_bytes(bytes(range(256)) * 4, "cases.xlsx")


def test_a_missing_file_is_a_sheet_error(tmp_path: Path) -> None:
    with pytest.raises(SheetError, match="cannot read the file"):
        read_sheet(tmp_path / "nowhere.csv")


_PREFIXES = [
    b"",
    b"PK\x03\x04",
    codecs.BOM_UTF8,
    codecs.BOM_UTF16_LE,
    codecs.BOM_UTF16_BE,
    b"Receipt\n",
    b"Receipt;Email;Phone;Language;Form;Tags\r\n",
    b'Receipt,Name\nEAC9999103403,"',
]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(prefix=st.sampled_from(_PREFIXES), data=st.binary(max_size=2000))
def test_any_bytes_give_a_sheet_or_a_sheet_error(prefix: bytes, data: bytes) -> None:
    try:
        sheet = read_sheet_bytes(prefix + data, "upload")
    except SheetError:
        return
    for result in validate_sheet(sheet):
        assert result.receipt_number is None or len(result.receipt_number) == 13


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_any_text_in_a_known_column_validates_without_crashing(text: str) -> None:
    columns = ("form_type", "client_name", "client_email", "client_phone", "client_language")
    for column in columns:
        result = one_row(**{column: text.strip()})
        assert result.receipt_number == "EAC9999103403"


# -- XLSX ---------------------------------------------------------------------------------


def test_xlsx_cells_are_read_as_text_a_person_would_type(tmp_path: Path) -> None:
    path = tmp_path / "cases.xlsx"
    path.write_bytes(
        xlsx_bytes(
            ["Receipt", "Client #", "Phone", "Tags", "Notes"],
            ["EAC9999103403", 1234, 2025550142, 1.0, datetime(2026, 3, 1)],
            ["LIN9999106498", 12.5, None, True, date(2026, 3, 2)],
        )
    )
    sheet = read_sheet(path)
    assert sheet.kind == "xlsx"
    assert [row.values for row in sheet.rows] == [
        {
            "receipt_number": "EAC9999103403",
            "client_id": "1234",
            "client_phone": "2025550142",
            "tags": "1",
            "notes": "2026-03-01",
        },
        {
            "receipt_number": "LIN9999106498",
            "client_id": "12.5",
            "client_phone": "",
            "tags": "TRUE",
            "notes": "2026-03-02",
        },
    ]


def test_xlsx_is_recognized_by_content_whatever_the_name() -> None:
    sheet = read_sheet_bytes(xlsx_bytes(["Receipt"], ["EAC9999103403"]), "cases.csv")
    assert sheet.kind == "xlsx"
    assert sheet.rows[0].values == {"receipt_number": "EAC9999103403"}


def test_xlsx_rows_are_numbered_like_the_worksheet() -> None:
    data = xlsx_bytes(["Receipt"], ["EAC9999103403"], [None], [], ["LIN9999106498"])
    assert [row.line for row in read_sheet_bytes(data, "x.xlsx").rows] == [2, 5]


def test_xlsx_without_a_receipt_column_names_the_worksheet_read() -> None:
    workbook = Workbook()
    first = workbook.active
    assert first is not None
    first.title = "Summary"
    first.append(["Total", 2])
    workbook.create_sheet("Cases").append(["Receipt"])
    buffer = io.BytesIO()
    workbook.save(buffer)
    with pytest.raises(SheetError, match="only the first worksheet, 'Summary', is read"):
        read_sheet_bytes(buffer.getvalue(), "cases.xlsx")


# -- receipts -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "number"),
    [
        ("eac-99-991-03403", "EAC9999103403"),
        ("lin 9999 106498", "LIN9999106498"),
        ("*EAC9999103403*", "EAC9999103403"),
        (" src9999102777 ", "SRC9999102777"),
        ("EAC2490012345", "EAC2490012345"),
    ],
)
def test_receipts_are_normalized_as_everywhere_else(typed: str, number: str) -> None:
    [result] = results_of(f"Receipt\n{typed}\n")
    assert result.receipt_number == number
    assert result.errors == []


def test_a_missing_receipt_skips_the_row() -> None:
    [result] = results_of("Receipt,Name\n,Fakey McTestface\n")
    assert result.receipt_number is None
    assert result.rejected
    assert result.errors == [RowError(2, "receipt_number", "", "no receipt number; row skipped")]


def test_an_invalid_receipt_skips_the_row_with_the_normalizers_reason() -> None:
    [result] = results_of("Receipt,Name\nEAC12345,Fakey McTestface\n")
    assert result.receipt_number is None
    assert result.rejected
    [error] = result.errors
    assert error.value == "EAC12345"
    assert error.message.startswith("a receipt number has 13 characters")
    assert error.message.endswith("; row skipped")


def test_an_unknown_receipt_prefix_is_tracked_with_a_warning() -> None:
    [result] = results_of("Receipt\nZZZ9999103403\n")
    assert result.receipt_number == "ZZZ9999103403"
    assert not result.rejected
    assert "unknown receipt prefix" in messages(result)[0]


def test_a_repeated_receipt_is_imported_once_and_the_repeat_reported() -> None:
    results = results_of(
        "Receipt,Name\nEAC9999103403,Fakey McTestface\n"
        "LIN9999106498,Ana Ejemplo\neac-99-991-03403,Fakey McTestface\n"
    )
    assert [r.receipt_number for r in results] == ["EAC9999103403", "LIN9999106498", None]
    repeat = results[2]
    assert not repeat.rejected
    assert repeat.errors == [
        RowError(
            4,
            "receipt_number",
            "eac-99-991-03403",
            "receipt EAC9999103403 already appears on line 2; imported once",
        )
    ]


def test_a_repeat_with_other_details_says_they_were_not_imported() -> None:
    results = results_of("Receipt,Notes\nEAC9999103403,\nEAC9999103403,RFE due\n")
    assert "were not imported" in results[1].errors[0].message


# -- optional fields ----------------------------------------------------------------------


def test_a_bad_email_is_reported_masked_and_the_row_kept() -> None:
    [result] = results_of("Receipt,Name,Email\nEAC9999103403,Fakey,fakey.mctestface@@example\n")
    assert result.receipt_number == "EAC9999103403"
    assert result.client_email == ""
    assert result.client_name == "Fakey"
    [error] = result.errors
    assert error.column == "client_email"
    assert error.value == "f•••"
    assert error.message.startswith("not a valid e-mail address (")
    assert error.message.endswith("; the case is tracked without it")


def test_emails_are_stored_normalized() -> None:
    assert one_row(client_email="Fakey.McTestface@EXAMPLE.COM").client_email == (
        "Fakey.McTestface@example.com"
    )


def test_an_email_with_a_display_name_is_unwrapped() -> None:
    result = one_row(client_email="Fakey McTestface <fakey@example.com>")
    assert result.client_email == "fakey@example.com"
    assert result.errors == []


def test_of_two_emails_the_first_is_kept_and_the_cell_reported() -> None:
    result = one_row(client_email="ana@example.com; ana.work@example.com")
    assert result.client_email == "ana@example.com"
    assert messages(result) == ["holds more than one e-mail address; the first one is kept"]


def test_email_validator_messages_do_not_repeat_the_address() -> None:
    result = one_row(client_email="ana.ejemplo@fakeyprueba..com")
    assert "fakeyprueba" not in messages(result)[0]
    assert "ana.ejemplo" not in messages(result)[0]


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("(202) 555-0142", "+12025550142"),
        ("202.555.0142", "+12025550142"),
        ("+1 202 555 0142", "+12025550142"),
        ("1-202-555-0142", "+12025550142"),
        ("2025550142", "+12025550142"),
        ("800-555-0199", "+18005550199"),
        ("+52 55 5555 0100", "+525555550100"),
    ],
)
def test_phones_are_stored_in_e164(typed: str, stored: str) -> None:
    result = one_row(client_phone=typed)
    assert result.client_phone == stored
    assert result.errors == []


def test_a_bad_phone_is_reported_masked_and_the_row_kept() -> None:
    [result] = results_of("Receipt,Phone\nEAC9999103403,call me maybe\n")
    assert result.receipt_number == "EAC9999103403"
    assert result.client_phone == ""
    [error] = result.errors
    assert (error.column, error.value) == ("client_phone", "c•••")
    assert error.message.endswith("the case is tracked without it")


def test_a_phone_without_an_area_code_says_so() -> None:
    assert "area code is missing" in messages(one_row(client_phone="555-0142"))[0]


def test_of_two_phones_the_first_is_kept() -> None:
    result = one_row(client_phone="(202) 555-0142 / (202) 555-0143")
    assert result.client_phone == "+12025550142"
    assert messages(result) == ["holds more than one phone number; the first one is kept"]


def test_formula_like_names_are_kept_as_text_and_flagged() -> None:
    result = one_row(client_name='=HYPERLINK("http://example.com","Fakey")')
    assert result.client_name == '=HYPERLINK("http://example.com","Fakey")'
    [error] = result.errors
    assert error.value == "=•••"
    assert "formula" in error.message
    assert "kept as plain text" in error.message


def test_a_name_of_only_punctuation_is_refused() -> None:
    result = one_row(client_name="?!...")
    assert result.client_name == ""
    assert messages(result) == [
        "has no letters, so it cannot be a name; the case is tracked without it"
    ]


def test_names_have_their_whitespace_collapsed() -> None:
    assert one_row(client_name="  Ana \t Ejemplo   Prueba ").client_name == "Ana Ejemplo Prueba"


def test_decomposed_accents_are_composed() -> None:
    assert one_row(client_name="Jose\u0301 Ejemplo").client_name == "José Ejemplo"


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("i485", "I-485"),
        ("I 485", "I-485"),
        ("i-485", "I-485"),
        ("Form I-485", "I-485"),
        ("I-129F", "I-129F"),
        ("i-129f", "I-129F"),
        ("N-400", "N-400"),
        ("I-765", "I-765"),
        ("I–821D", "I-821D"),
    ],
)
def test_form_types_are_written_as_uscis_writes_them(typed: str, stored: str) -> None:
    result = one_row(form_type=typed)
    assert result.form_type == stored
    assert result.errors == []


def test_an_unrecognized_form_type_is_dropped_and_reported() -> None:
    result = one_row(form_type="Adjustment of Status")
    assert result.form_type == ""
    [error] = result.errors
    assert (error.column, error.value) == ("form_type", "Adjustment of Status")
    assert error.message.endswith("the case is tracked without it")


@pytest.mark.parametrize(
    ("typed", "code"),
    [
        ("Spanish", "es"),
        ("Español", "es"),
        ("espanol", "es"),
        ("es", "es"),
        ("es-MX", "es"),
        ("ES_us", "es"),
        ("spa", "es"),
        ("Portuguese", "pt"),
        ("Português", "pt"),
        ("pt-BR", "pt"),
        ("Chinese", "zh"),
        ("中文", "zh"),
        ("Mandarin", "zh"),
        ("Vietnamese", "vi"),
        ("Tiếng Việt", "vi"),
        ("Hindi", "hi"),
        ("Arabic", "ar"),
        ("العربية", "ar"),
        ("Haitian Creole", "ht"),
        ("Kreyòl", "ht"),
        ("French", "fr"),
        ("Tagalog", "tl"),
        ("Filipino", "tl"),
        ("English", "en"),
        ("inglés", "en"),
        ("nl", "nl"),
    ],
)
def test_languages_become_iso_639_1_codes(typed: str, code: str) -> None:
    result = one_row(client_language=typed)
    assert result.client_language == code
    assert result.errors == []


def test_an_unknown_language_is_dropped_and_reported() -> None:
    result = one_row(client_language="Klingon")
    assert result.client_language == ""
    assert result.errors[0].value == "Klingon"


def test_of_two_languages_the_first_is_kept() -> None:
    result = one_row(client_language="Spanish / English")
    assert result.client_language == "es"
    assert messages(result) == ["names more than one language; the first one is kept"]


def test_tags_are_split_trimmed_and_deduplicated_in_order() -> None:
    result = one_row(tags=" vip ; family| RFE,, Family ;vip ")
    assert result.tags == ["vip", "family", "RFE"]


def test_notes_attorney_and_paralegal_are_kept_as_written() -> None:
    result = one_row(notes="RFE due\n- check mail", attorney="Ana  Abogada", paralegal="Pat")
    assert (result.notes, result.attorney, result.paralegal) == (
        "RFE due\n- check mail",
        "Ana Abogada",
        "Pat",
    )


@pytest.mark.parametrize("placeholder", ["N/A", "n/a", "-", "none", "TBD", "desconocido"])
def test_placeholders_count_as_empty_cells(placeholder: str) -> None:
    result = one_row(client_email=placeholder, client_phone=placeholder, client_name=placeholder)
    assert (result.client_email, result.client_phone, result.client_name) == ("", "", "")
    assert result.errors == []


def test_a_placeholder_receipt_is_a_missing_receipt() -> None:
    [result] = results_of("Receipt\nN/A\n")
    assert messages(result) == ["no receipt number; row skipped"]


def test_excel_error_values_are_reported_not_stored() -> None:
    result = one_row(client_phone="#REF!")
    assert result.client_phone == ""
    assert "spreadsheet error #REF!" in messages(result)[0]


def test_a_client_id_too_long_to_store_is_dropped() -> None:
    result = one_row(client_id="X" * 101)
    assert result.client_id == ""
    assert messages(result) == ["longer than 100 characters; the case is tracked without it"]


def test_row_errors_give_exactly_the_report_fields() -> None:
    error = RowError(7, "client_email", "f•••", "not a valid e-mail address")
    assert error.as_dict() == {
        "row": 7,
        "column": "client_email",
        "value": "f•••",
        "message": "not a valid e-mail address",
    }


def test_client_data_never_appears_in_clear_in_a_report() -> None:
    personal = ["Fakey McTestface", "=Fakey", "fakey@@example.com", "fakey.mctestface", "5550142"]
    results = results_of(
        "Receipt,Name,Email,Phone\n"
        "EAC9999103403,=Fakey McTestface,fakey.mctestface@@example.com,(999) 555-0142 x\n"
        "LIN9999106498,Ana,ana@example.com; fakey.mctestface@example..com,555-0142\n"
    )
    report = repr([error.as_dict() for result in results for error in result.errors])
    assert results[0].errors and results[1].errors
    for secret in personal:
        assert secret not in report


# -- fast paths agree with the libraries ---------------------------------------------------

_atext = st.text("abcXYZ019_%+-", min_size=1, max_size=8)
_label = st.from_regex(r"[a-zA-Z0-9]([a-zA-Z0-9-]{0,8}[a-zA-Z0-9])?", fullmatch=True)
_addresses = st.builds(
    lambda local, labels, tld: f"{'.'.join(local)}@{'.'.join(labels)}.{tld}",
    st.lists(_atext, min_size=1, max_size=3),
    st.lists(_label, min_size=1, max_size=3),
    st.sampled_from(["com", "org", "COM", "test", "local", "co", "museum", "x1"]),
)


@settings(max_examples=300, deadline=None)
@given(_addresses)
def test_plain_addresses_are_judged_exactly_as_email_validator_does(address: str) -> None:
    try:
        expected = validate_email(address, check_deliverability=False).normalized
    except EmailNotValidError:
        expected = ""
    assert clean_email(address)[0] == expected


_us_numbers = st.builds(
    lambda country, area, sep, exchange, line: f"{country}{area}{sep}{exchange}{sep}{line}",
    st.sampled_from(["", "1", "+1 ", "1-", "+1"]),
    st.from_regex(r"(\([0-9]{3}\) ?|[0-9]{3})", fullmatch=True),
    st.sampled_from(["", "-", ".", " "]),
    st.from_regex(r"[0-9]{3}", fullmatch=True),
    st.from_regex(r"[0-9]{4}", fullmatch=True),
)


@settings(max_examples=400, deadline=None)
@given(_us_numbers)
def test_us_numbers_are_judged_exactly_as_phonenumbers_does(typed: str) -> None:
    try:
        number = phonenumbers.parse(typed, "US")
    except phonenumbers.NumberParseException:
        expected = ""
    else:
        valid = phonenumbers.is_valid_number(number)
        expected = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
        expected = expected if valid else ""
    assert clean_phone(typed)[0] == expected


# -- boundaries ---------------------------------------------------------------------------


def test_the_reader_needs_no_django() -> None:
    code = "import sys, casewatch.cases.sheet; print(any('django' in m for m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "False"
