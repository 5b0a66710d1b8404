"""A caseload in at once: a list of cases, or the firm's spreadsheet, by the import's rules.

Both are `casewatch import` exactly (casewatch.cases.intake.import_sheet): a row with
a valid receipt is never dropped for a bad optional field, invalid receipts are
reported and skipped, repeats are imported once, known receipts are only filled in,
everything valid goes in in one transaction, and the answer is the import's report.
Sending the same list or file twice changes nothing the second time.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from ninja import Field, Router, Schema
from ninja.decorators import decorate_view
from ninja.files import UploadedFile
from ninja.params.functions import File, Form

from casewatch.accounts.api_tokens import token_actor
from casewatch.api.auth import token_of
from casewatch.api.cases import IDEMPOTENCY_KEY, POSTED, ProblemOut, tags_cell
from casewatch.api.idempotency import idempotent
from casewatch.api.problems import Problem
from casewatch.cases.intake import ImportSummary, import_sheet
from casewatch.cases.sheet import RawRow, Sheet, SheetError, read_sheet_bytes
from casewatch.cases.uploads import upload_limit, upload_refused

router = Router(tags=["import"])

# More than this in one list: send the rest in another request, or upload the file.
MAX_BULK_CASES = 5_000


class BulkCase(Schema):
    """One row of the caseload, its fields named as the import's columns."""

    receipt_number: str = Field("", max_length=200)
    form_type: str = Field("", max_length=200)
    client_id: str = Field("", max_length=200, description="the firm's own client id")
    client_name: str = Field("", max_length=300)
    client_email: str = Field("", max_length=320)
    client_phone: str = Field("", max_length=60)
    client_language: str = Field("", max_length=60)
    attorney: str = Field("", max_length=300, description="a name or e-mail, as in the import")
    paralegal: str = Field("", max_length=300, description="a name or e-mail, as in the import")
    tags: list[str] = Field(default_factory=list, max_length=50)
    notes: str = Field("", max_length=10_000)


class BulkIn(Schema):
    cases: list[BulkCase] = Field(max_length=MAX_BULK_CASES)
    dry_run: bool = Field(False, description="report what would happen; store nothing")


class RowErrorOut(Schema):
    row: int = Field(description="the item's place in the list, or the file's line (from 1)")
    column: str | None
    value: str
    message: str


class ImportReport(Schema):
    rows: int
    created: int
    updated: int
    unchanged: int
    rejected: int = Field(description="rows skipped for a missing or invalid receipt")
    errors: list[RowErrorOut] = Field(description="every problem, warnings included")
    staff_added: list[str] = Field(description="attorneys and paralegals new to the firm")
    dry_run: bool
    ignored_columns: list[str] = Field(description="a file's columns casewatch does not use")


# The upload's fields; a missing file is answered by the operation, saying what to send.
SPREADSHEET = File(None, description="the CSV or XLSX file")
DRY_RUN = Form(False, description="report what would happen; store nothing")

IMPORTED = {200: ImportReport, **POSTED, 413: ProblemOut}


def _report(summary: ImportSummary, ignored: list[str]) -> dict[str, Any]:
    return {**summary.as_dict(), "ignored_columns": ignored}


@router.post("/cases/bulk", response=IMPORTED, url_name="api-cases-bulk")
@decorate_view(idempotent)
def bulk_create(
    request: HttpRequest, bulk: BulkIn, idempotency_key: str | None = IDEMPOTENCY_KEY
) -> dict[str, Any]:
    """Add or fill in many cases at once, as `casewatch import` does with a file.

    `row` in the report is the case's place in `cases`, from 1. A list that is all
    invalid is still answered 200 with its report: nothing was stored.
    """
    token = token_of(request)
    rows = [
        RawRow(
            place,
            {
                **{
                    name: value.strip()
                    for name, value in case.dict().items()
                    if isinstance(value, str)
                },
                "tags": tags_cell(case.tags),
            },
        )
        for place, case in enumerate(bulk.cases, 1)
    ]
    sheet = Sheet(columns={}, ignored_columns=[], rows=rows, kind="api")
    summary = import_sheet(
        token.firm,
        sheet,
        file_name=f"API list of {len(rows)}",
        actor=token_actor(token),
        dry_run=bulk.dry_run,
    )
    return _report(summary, [])


@router.post("/cases/import", response=IMPORTED, url_name="api-cases-import")
@decorate_view(idempotent)
def import_file(
    request: HttpRequest,
    file: UploadedFile | None = SPREADSHEET,
    dry_run: bool = DRY_RUN,
    idempotency_key: str | None = IDEMPOTENCY_KEY,
) -> dict[str, Any]:
    """Import the firm's spreadsheet (CSV or XLSX, as `casewatch import` reads them).

    A file that cannot be read as a sheet is a 422 saying why; one over the upload
    limit (CASEWATCH_MAX_UPLOAD_MB) a 413. Either way nothing is imported.
    """
    token = token_of(request)
    if upload_refused(request):
        raise Problem(
            413,
            f"The file is larger than the {upload_limit() // (1024 * 1024)} MB the API takes "
            "(CASEWATCH_MAX_UPLOAD_MB); nothing was imported. Split it into smaller files.",
        )
    if file is None:
        raise Problem(
            422,
            "Send the spreadsheet as the multipart field 'file'.",
            errors=[{"field": "file", "in": "form", "message": "a CSV or XLSX file is required"}],
        )
    name = file.name or "upload"
    try:
        sheet = read_sheet_bytes(file.read(), name)
    except SheetError as exc:
        raise Problem(
            422,
            f"{name} cannot be imported: {exc}; nothing was imported.",
            errors=[{"field": "file", "in": "form", "message": str(exc)}],
        ) from None
    summary = import_sheet(
        token.firm, sheet, file_name=name, actor=token_actor(token), dry_run=dry_run
    )
    return _report(summary, sheet.ignored_columns)
