"""Bringing a caseload in through the API: a list of cases, or the firm's spreadsheet,
judged and reported exactly as `casewatch import` does."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client as Browser

from casewatch.accounts.api_tokens import create_token
from casewatch.accounts.models import Firm
from casewatch.audit.models import AuditEntry
from casewatch.cases.models import Case
from tests.test_api import API, Integration, problem

pytestmark = pytest.mark.django_db

MESSY_SHEET = (
    b"Receipt #,Form,Client Name,Email,Tags\r\n"
    b"EAC2690000101,I-485,Fakey McTestface,fakey@example.test,family\r\n"
    b"eac 269 000 0102,I-130,Testy O'Fake,not-an-address,\r\n"
    b"EAC269000010,I-765,Nobody Real,,\r\n"
    b"EAC2690000101,I-485,Fakey McTestface,fakey@example.test,family\r\n"
)


@pytest.fixture
def firm() -> Firm:
    return Firm.objects.create(name="Alpha", slug="alpha")


@pytest.fixture
def writer(firm: Firm) -> Integration:
    return Integration(create_token(firm, "write", actor="test").secret)


def upload(
    integration: Integration, content: bytes, name: str = "caseload.csv", **fields: Any
) -> Any:
    return integration.browser.post(
        f"{API}/cases/import",
        {"file": SimpleUploadedFile(name, content), **fields},
        headers=integration.headers,
    )


def test_a_list_of_cases_is_imported_with_the_import_s_report(
    writer: Integration, firm: Firm
) -> None:
    answer = writer.post(
        "/cases/bulk",
        {
            "cases": [
                {"receipt_number": "EAC2690000101", "form_type": "I-485", "tags": ["family"]},
                {"receipt_number": "EAC2690000102", "client_email": "not-an-address"},
                {"receipt_number": "nonsense", "client_name": "Fakey McTestface"},
            ]
        },
    )
    assert answer.status_code == 200, answer.content
    report = answer.json()
    assert {k: report[k] for k in ("rows", "created", "updated", "unchanged", "rejected")} == {
        "rows": 3,
        "created": 2,
        "updated": 0,
        "unchanged": 0,
        "rejected": 1,
    }
    assert {(e["row"], e["column"]) for e in report["errors"]} == {
        (2, "client_email"),
        (3, "receipt_number"),
    }
    assert report["dry_run"] is False
    case = Case.objects.get(firm=firm, receipt_number="EAC2690000101")
    assert (case.form_type, case.tags) == ("I-485", ["family"])
    # The case with a bad e-mail is tracked all the same; only the e-mail was dropped.
    assert Case.objects.filter(firm=firm, receipt_number="EAC2690000102").exists()


def test_the_same_list_twice_changes_nothing_the_second_time(writer: Integration) -> None:
    body = {"cases": [{"receipt_number": "EAC2690000101", "client_name": "Fakey McTestface"}]}
    assert writer.post("/cases/bulk", body).json()["created"] == 1
    again = writer.post("/cases/bulk", body).json()
    assert (again["created"], again["updated"], again["unchanged"]) == (0, 0, 1)


def test_a_dry_run_reports_and_stores_nothing(writer: Integration, firm: Firm) -> None:
    answer = writer.post(
        "/cases/bulk", {"cases": [{"receipt_number": "EAC2690000101"}], "dry_run": True}
    )
    assert (answer.json()["created"], answer.json()["dry_run"]) == (1, True)
    assert not Case.objects.filter(firm=firm).exists()


def test_a_spreadsheet_is_read_as_casewatch_import_reads_it(
    writer: Integration, firm: Firm
) -> None:
    answer = upload(writer, MESSY_SHEET)
    assert answer.status_code == 200, answer.content
    report = answer.json()
    assert (report["rows"], report["created"], report["rejected"]) == (4, 2, 1)
    where = {(e["row"], e["column"]) for e in report["errors"]}
    # Lines of the file: a bad e-mail (kept case), a short receipt, a repeat of line 2.
    assert {(3, "client_email"), (4, "receipt_number"), (5, "receipt_number")} <= where
    assert set(Case.objects.filter(firm=firm).values_list("receipt_number", flat=True)) == {
        "EAC2690000101",
        "EAC2690000102",
    }
    assert AuditEntry.objects.filter(action="import.completed", firm_id=firm.pk).count() == 1
    again = upload(writer, MESSY_SHEET).json()
    assert (again["created"], again["updated"], again["unchanged"]) == (0, 0, 2)


def test_the_report_names_the_columns_it_did_not_use(writer: Integration) -> None:
    sheet = b"receipt,favourite colour\nEAC2690000101,teal\n"
    assert upload(writer, sheet).json()["ignored_columns"] == ["favourite colour"]


def test_a_file_that_is_not_a_sheet_is_refused_saying_why(writer: Integration, firm: Firm) -> None:
    body = problem(upload(writer, b"%PDF-1.7 not a sheet", "caseload.pdf"), 422)
    assert "nothing was imported" in body["detail"]
    assert body["errors"][0]["field"] == "file"
    body = problem(upload(writer, b"name,form\nFakey,I-485\n"), 422)
    assert "receipt" in body["detail"].lower()
    assert not Case.objects.filter(firm=firm).exists()


def test_a_request_without_a_file_says_what_to_send(writer: Integration) -> None:
    answer = writer.browser.post(f"{API}/cases/import", {}, headers=writer.headers)
    assert problem(answer, 422)["errors"][0]["field"] == "file"


def test_a_file_over_the_upload_limit_is_refused_unread(
    writer: Integration, firm: Firm, settings: Any
) -> None:
    settings.CASEWATCH_MAX_UPLOAD_BYTES = 1024
    sheet = b"receipt\n" + b"EAC2690000101\n" * 200
    body = problem(upload(writer, sheet), 413)
    assert "nothing was imported" in body["detail"]
    assert not Case.objects.filter(firm=firm).exists()


def test_a_list_too_large_to_read_is_a_problem_not_a_crash(
    writer: Integration, settings: Any
) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    cases = [{"receipt_number": f"EAC26900{n:05d}"} for n in range(100)]
    body = problem(writer.post("/cases/bulk", {"cases": cases}), 413)
    assert "nothing was changed" in body["detail"]


def test_a_retried_upload_with_its_key_is_imported_once(writer: Integration, firm: Firm) -> None:
    first = writer.browser.post(
        f"{API}/cases/import",
        {"file": SimpleUploadedFile("caseload.csv", MESSY_SHEET)},
        headers={**writer.headers, "Idempotency-Key": "load-1"},
    )
    replay = writer.browser.post(
        f"{API}/cases/import",
        {"file": SimpleUploadedFile("caseload.csv", MESSY_SHEET)},
        headers={**writer.headers, "Idempotency-Key": "load-1"},
    )
    assert replay["Idempotent-Replayed"] == "true"
    assert json.loads(replay.content) == json.loads(first.content)
    other = writer.browser.post(
        f"{API}/cases/import",
        {"file": SimpleUploadedFile("caseload.csv", MESSY_SHEET + b"EAC2690000199\r\n")},
        headers={**writer.headers, "Idempotency-Key": "load-1"},
    )
    problem(other, 409)


def test_a_read_token_cannot_import(firm: Firm) -> None:
    reader = Integration(create_token(firm, "read", actor="test").secret)
    problem(reader.post("/cases/bulk", {"cases": [{"receipt_number": "EAC2690000101"}]}), 403)
    problem(upload(reader, MESSY_SHEET), 403)
    assert not Case.objects.filter(firm=firm).exists()


def test_cases_are_added_to_the_token_s_firm_only(writer: Integration) -> None:
    beta = Firm.objects.create(name="Beta", slug="beta")
    Case.objects.create(firm=beta, receipt_number="EAC2690000101")
    report = writer.post("/cases/bulk", {"cases": [{"receipt_number": "EAC2690000101"}]}).json()
    # Another firm tracking the receipt is none of this firm's business: it is created here.
    assert report["created"] == 1
    assert Case.objects.filter(receipt_number="EAC2690000101").count() == 2


def test_no_token_no_import() -> None:
    answer = Browser().post(f"{API}/cases/bulk", "{}", content_type="application/json")
    problem(answer, 401)
