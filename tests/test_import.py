"""`casewatch import` as cli.md says: a messy real-world sheet, tracked exactly once."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from tests.test_cli import casewatch

FAKE_PEOPLE = {
    "names": ["Fakey McTestface", "Ana Ejemplo Prueba", "Testo Placeholderson"],
    "emails": ["fakey.mctestface@example.com", "ana.prueba@example.org"],
    "phones": ["+12025550143", "(202) 555-0143", "2025550143", "+15125550188"],
}

# BOM, header aliases, a dashed and a lower-case receipt, a duplicate, blank lines,
# a quoted newline, a bad e-mail, a bad phone, a formula-like name, an invalid receipt.
MESSY = (
    "\ufeffReceipt #;Client;E-mail;Phone;Form Type;Language;Notes;Tags\r\n"
    "EAC-99-991-03403;Fakey McTestface;fakey.mctestface@example.com;(202) 555-0143;"
    'i-130;Spanish;"first line\r\nsecond line";family, priority\r\n'
    "\r\n"
    "lin9999106498;Ana Ejemplo Prueba;ana.prueba@example.org;+1 512 555 0188;I-526;"
    "Español;;\r\n"
    "EAC9999103403;Fakey McTestface;fakey.mctestface@example.com;(202) 555-0143;I-130;es;;\r\n"
    "EAC12345;Nobody Atall;nobody@example.com;;I-765;;;\r\n"
    'SRC9999102777;=HYPERLINK("http://example.com");not-an-email;12;I-485;;;\r\n'
    ";;;;;;;\r\n"
    "IOE0912345678;Testo Placeholderson;;;I-765;fr;;\r\n"
)


def _import(path: Path, data_dir: Path, *extra: str) -> tuple[int, dict[str, object]]:
    result = casewatch("import", str(path), "--json", *extra, data_dir=data_dir)
    assert result.returncode in (0, 1), result.stderr
    return result.returncode, json.loads(result.stdout)


@pytest.fixture
def messy(tmp_path: Path) -> Path:
    path = tmp_path / "Caseload export (1).csv"
    path.write_bytes(MESSY.encode("utf-8"))
    return path


def test_a_messy_sheet_tracks_every_valid_receipt_once_and_reports_the_rest(
    messy: Path, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    code, summary = _import(messy, data_dir)
    assert code == 1
    assert summary["created"] == 4 and summary["updated"] == 0 and summary["unchanged"] == 0
    errors = summary["errors"]
    assert isinstance(errors, list)
    by_column = {(e["row"], e["column"]) for e in errors}
    assert (7, "receipt_number") in by_column  # EAC12345
    assert (6, "receipt_number") in by_column  # the repeat of EAC9999103403
    assert (8, "client_email") in by_column and (8, "client_phone") in by_column
    assert (8, "client_name") in by_column  # formula-like, kept as text
    assert set(errors[0]) == {"row", "column", "value", "message"}
    with sqlite3.connect(data_dir / "casewatch.sqlite3") as db:
        receipts = sorted(r for (r,) in db.execute("SELECT receipt_number FROM cases_case"))
    assert receipts == ["EAC9999103403", "IOE0912345678", "LIN9999106498", "SRC9999102777"]


def test_importing_the_same_file_again_changes_nothing(messy: Path, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    _import(messy, data_dir)
    _, again = _import(messy, data_dir)
    assert (again["created"], again["updated"], again["unchanged"]) == (0, 0, 4)


def test_a_second_file_fills_in_only_what_was_empty(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first = tmp_path / "first.csv"
    first.write_text("receipt_number\nEAC9999103404\nEAC9999103405\n", encoding="utf-8")
    _import(first, data_dir)
    second = tmp_path / "second.csv"
    second.write_text(
        "receipt_number,form_type\nEAC9999103404,I-130\nEAC9999103405,\n", encoding="utf-8"
    )
    _, summary = _import(second, data_dir)
    assert (summary["created"], summary["updated"], summary["unchanged"]) == (0, 1, 1)


def test_a_dry_run_reports_and_stores_nothing(messy: Path, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    _, dry = _import(messy, data_dir, "--dry-run")
    assert dry["created"] == 4
    _, real = _import(messy, data_dir)
    assert real["created"] == 4


def test_a_file_without_a_receipt_column_is_refused_with_the_headers_found(
    tmp_path: Path,
) -> None:
    path = tmp_path / "wrong.csv"
    path.write_text("Name,Email\nFakey McTestface,fakey@example.com\n", encoding="utf-8")
    result = casewatch("import", str(path), "--json", data_dir=tmp_path / "data")
    assert result.returncode == 2 and result.stdout == ""
    assert "receipt" in result.stderr.lower() and "Name" in result.stderr


def test_a_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    result = casewatch("import", str(tmp_path / "nope.csv"), data_dir=tmp_path / "data")
    assert result.returncode == 2 and "no such file" in result.stderr


def test_no_client_data_is_readable_anywhere_under_the_data_directory(
    messy: Path, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    _import(messy, data_dir)
    casewatch("audit", "verify", data_dir=data_dir)
    needles = [*FAKE_PEOPLE["names"], *FAKE_PEOPLE["emails"], "2025550143", "5125550188"]
    for path in data_dir.rglob("*"):
        if path.is_file():
            content = path.read_bytes()
            for needle in needles:
                for encoding in ("utf-8", "utf-16-le"):
                    assert needle.encode(encoding) not in content, f"{needle!r} in {path.name}"


def test_the_audit_chain_holds_one_entry_per_case_and_one_for_the_import(
    messy: Path, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    _import(messy, data_dir)
    result = casewatch("audit", "verify", "--json", data_dir=data_dir)
    report = json.loads(result.stdout)
    assert result.returncode == 0 and report["ok"] is True
    assert report["entries"] == 5


@pytest.mark.django_db
def test_an_import_in_process_stores_cases_and_encrypted_clients_on_any_database() -> None:
    from django.db import connection

    from casewatch.accounts.firms import default_firm
    from casewatch.audit.chain import verify
    from casewatch.cases.intake import import_sheet
    from casewatch.cases.models import Case, Client
    from casewatch.cases.sheet import read_sheet_bytes

    firm = default_firm()
    sheet = read_sheet_bytes(MESSY.encode("utf-8"), "caseload.csv")
    first = import_sheet(firm, sheet, file_name="caseload.csv")
    assert (first.created, first.rejected) == (4, 1)
    case = Case.objects.get(receipt_number="EAC9999103403")
    assert case.client is not None
    assert case.client.name == "Fakey McTestface"
    assert case.client.phone == "+12025550143" and case.client.language == "es"
    assert case.tags == ["family", "priority"] and case.notes == "first line\nsecond line"
    with connection.cursor() as cursor:
        cursor.execute("SELECT personal FROM cases_client")
        stored = [row[0] for row in cursor.fetchall()]
    assert stored and all("Fakey" not in value for value in stored)
    second = import_sheet(firm, sheet, file_name="caseload.csv")
    assert (second.created, second.updated, second.unchanged) == (0, 0, 4)
    assert Client.objects.count() == 4
    later = Case.objects.create(firm=firm, receipt_number="EAC9999103404")
    assert later.pk > case.pk  # ids reserved by the import do not collide afterwards
    assert verify().ok
