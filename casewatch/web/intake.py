"""Bringing cases in from the web: one case, a spreadsheet, or a pasted list of receipts.

Everything goes through the code `casewatch import` uses (casewatch.cases.sheet reads
and validates, casewatch.cases.intake writes), so a file gives the same cases, the
same problems and the same audit entries on the web as on the command line. The
wizard's preview is that import's dry run; the commit is the import itself, refused
if its figures are not the ones the preview showed. The uploaded file waits between
the steps encrypted under the data directory (casewatch.web.held_files), never in
the session.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from django.contrib import messages
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.functional import Promise
from django.utils.html import format_html
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from casewatch.accounts.models import Firm, Membership
from casewatch.accounts.permissions import Action, may
from casewatch.cases.intake import (
    LOOKUP_CHUNK,
    DuplicateCase,
    ImportSummary,
    add_case,
    import_sheet,
)
from casewatch.cases.models import Case
from casewatch.cases.sheet import (
    NoReceiptColumn,
    RawRow,
    RowResult,
    Sheet,
    SheetError,
    read_sheet_bytes,
)
from casewatch.cases.uploads import upload_refused
from casewatch.core.receipts import normalize_receipt, split_receipt_list
from casewatch.core.wording import Wording
from casewatch.web import held_files
from casewatch.web.access import staff_view
from casewatch.web.intake_forms import (
    COLUMN_LABELS,
    AddCaseForm,
    MappingForm,
    ReceiptsForm,
    UploadForm,
)
from casewatch.web.labels import in_words, is_worded
from casewatch.web.uploads import too_big_message

UPLOAD = "import"
# Rows shown as they will be stored, and problems or duplicates listed, before "and N more".
PREVIEW_ROWS = 20
LISTED = 200
PASTED_NAME = "pasted list of receipts"

# What became of a row, in the words of the preview and the result pages.
OUTCOMES: dict[str, Promise] = {
    "new": gettext_lazy("New case"),
    "known": gettext_lazy("Already a case of the firm: only empty fields are filled in"),
    "rejected": gettext_lazy("Skipped: no valid receipt number"),
    "repeat": gettext_lazy("Imported once: the receipt is on an earlier line too"),
    "kept": gettext_lazy("Kept; check it"),
    "dropped": gettext_lazy("Left out; the case is tracked without it"),
    "row": gettext_lazy("Check this line"),
}


def _actor(membership: Membership) -> str:
    return membership.user.get_username()


@staff_view(Action.CHANGE_CASES)
def intake_home(request: HttpRequest, membership: Membership) -> HttpResponse:
    """The four ways in, side by side."""
    return render(
        request,
        "intake/home.html",
        {"firm": membership.firm, "may_check": may(membership.role, Action.CHECK_STATUS)},
    )


# --- one case ------------------------------------------------------------------------


@staff_view(Action.CHANGE_CASES, change=Action.CHANGE_CASES)
def add_one_case(request: HttpRequest, membership: Membership) -> HttpResponse:
    """A case typed in by hand, with or without its receipt; a tracked receipt is refused."""
    firm = membership.firm
    form = AddCaseForm(firm, request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        assert form.row is not None
        try:
            case = add_case(
                firm,
                form.row,
                attorney=form.cleaned_data.get("attorney"),
                paralegal=form.cleaned_data.get("paralegal"),
                actor=_actor(membership),
            )
        except DuplicateCase as duplicate:
            form.add_error(
                "receipt_number",
                format_html(
                    '{} <a href="{}">{}</a>',
                    _("%(receipt)s is already a case of the firm.")
                    % {"receipt": duplicate.case.receipt_number},
                    reverse("case-detail", args=[duplicate.case.pk]),
                    _("Open it"),
                ),
            )
        else:
            messages.success(request, _("The case was added."))
            if form.kept_with_warning:
                fields = ", ".join(str(COLUMN_LABELS[c]) for c in form.kept_with_warning)
                messages.warning(
                    request,
                    _("Check these fields, kept as casewatch understood them: %(fields)s.")
                    % {"fields": fields},
                )
            return redirect("case-detail", case.pk)
    return render(request, "intake/add_case.html", {"firm": firm, "form": form})


# --- the import wizard -------------------------------------------------------------------


@staff_view(Action.CHANGE_CASES, change=Action.CHANGE_CASES)
def import_upload(request: HttpRequest, membership: Membership) -> HttpResponse:
    """Step 1: the file, kept encrypted; its columns guessed as `casewatch import` guesses.

    A file over the limit was dropped unread by the upload handler: 413, saying so.
    """
    form = UploadForm(request.POST or None, request.FILES or None)
    problem = ""
    if request.method == "POST" and upload_refused(request):
        context = {"firm": membership.firm, "form": UploadForm(), "problem": too_big_message()}
        return render(request, "intake/upload.html", context, status=413)
    if request.method == "POST" and form.is_valid():
        upload = form.cleaned_data["file"]
        data = upload.read()
        name = str(upload.name or "upload")[:200]
        mapping: dict[int, str] | None = None
        try:
            sheet = read_sheet_bytes(data, name)
        except NoReceiptColumn:
            sheet, mapping = None, {}
        except SheetError as exc:
            problem = _reason(exc)
        if not problem:
            if sheet is not None:
                mapping = sheet.mapping
            token = held_files.hold(
                membership, UPLOAD, data, {"name": name, "mapping": _stored(mapping)}
            )
            return redirect("intake-import-review", token)
    return render(
        request,
        "intake/upload.html",
        {"firm": membership.firm, "form": form, "problem": problem},
    )


def _stored(mapping: dict[int, str] | None) -> dict[str, str] | None:
    return None if mapping is None else {str(k): v for k, v in mapping.items()}


def _mapping(meta: dict[str, Any]) -> dict[int, str]:
    return {int(k): v for k, v in (meta.get("mapping") or {}).items()}


@dataclass
class _Upload:
    token: str
    meta: dict[str, Any]
    sheet: Sheet | None
    problem: str = ""


def _open_upload(token: str, membership: Membership) -> _Upload:
    """The held file read with its chosen columns (404 when gone or someone else's)."""
    meta = held_files.meta_of(token, membership, UPLOAD)
    if meta.get("result") is not None:
        return _Upload(token, meta, None)
    data = held_files.data_of(token, membership, UPLOAD)
    try:
        sheet = read_sheet_bytes(data, meta["name"], mapping=_mapping(meta))
    except SheetError as exc:
        return _Upload(token, meta, None, _reason(exc))
    return _Upload(token, meta, sheet)


def _reason(exc: SheetError) -> str:
    """Why a file cannot be read, in the page's language."""
    return in_words(exc.args[0] if exc.args else str(exc))


@staff_view(Action.CHANGE_CASES, change=Action.CHANGE_CASES)
def import_review(request: HttpRequest, membership: Membership, token: str) -> HttpResponse:
    """Step 2: which column is what (a POST changes it), then the dry run, row by row."""
    upload = _open_upload(token, membership)
    if upload.meta.get("result") is not None:
        return redirect("intake-import-done", token)
    if upload.sheet is None:
        return render(
            request,
            "intake/upload.html",
            {"firm": membership.firm, "form": UploadForm(), "problem": upload.problem},
        )
    sheet = upload.sheet
    initial = {MappingForm.field_name(p): t for p, t in sheet.mapping.items()}
    form = MappingForm(sheet.headers, request.POST or None, initial=initial)
    if request.method == "POST":
        if form.is_valid():
            upload.meta["mapping"] = _stored(form.mapping())
            held_files.update_meta(token, upload.meta)
            return redirect("intake-import-review", token)
        return render(request, "intake/review.html", _review(upload, form, membership, None))
    summary = None
    if "receipt_number" in sheet.columns:
        summary = import_sheet(membership.firm, sheet, file_name=upload.meta["name"], dry_run=True)
    return render(request, "intake/review.html", _review(upload, form, membership, summary))


def _review(
    upload: _Upload, form: MappingForm, membership: Membership, summary: ImportSummary | None
) -> dict[str, Any]:
    assert upload.sheet is not None
    context: dict[str, Any] = {
        "firm": membership.firm,
        "token": upload.token,
        "name": upload.meta["name"],
        "sheet": upload.sheet,
        "form": form,
        "summary": summary,
        "ignored": upload.sheet.ignored_columns,
    }
    if summary is None:
        return context
    results = summary.results
    known = known_cases(membership.firm, [r.receipt_number for r in results if r.receipt_number])
    context.update(
        rows=[_preview_row(result, known) for result in results[:PREVIEW_ROWS]],
        problems=_labelled(_problems(results)[:LISTED]),
        problem_count=len(summary.errors),
        duplicates=[
            {"line": r.line, "receipt": r.receipt_number, "case": known[r.receipt_number]}
            for r in results
            if r.receipt_number in known
        ][:LISTED],
        duplicate_count=sum(1 for r in results if r.receipt_number in known),
        fingerprint=_fingerprint(summary),
        listed=LISTED,
    )
    return context


def known_cases(firm: Firm, receipts: Sequence[str | None]) -> dict[str, int]:
    """Which of these receipts the firm already tracks, and as which case."""
    wanted = sorted({r for r in receipts if r})
    found: dict[str, int] = {}
    for start in range(0, len(wanted), LOOKUP_CHUNK):
        chunk = wanted[start : start + LOOKUP_CHUNK]
        for receipt, pk in Case.objects.filter(firm=firm, receipt_number__in=chunk).values_list(
            "receipt_number", "pk"
        ):
            assert receipt is not None
            found[receipt] = pk
    return found


def _preview_row(result: RowResult, known: dict[str, int]) -> dict[str, Any]:
    if result.receipt_number is None:
        outcome = "rejected" if result.rejected else "repeat"
    else:
        outcome = "known" if result.receipt_number in known else "new"
    return {
        "result": result,
        "outcome": outcome,
        "outcome_label": OUTCOMES[outcome],
        "case": known.get(result.receipt_number or ""),
        "errors": _labelled(_problem(result, error.as_dict()) for error in result.errors),
    }


def _problems(results: Iterable[RowResult]) -> list[dict[str, Any]]:
    return [_problem(r, error.as_dict()) for r in results for error in r.errors]


def _problem(result: RowResult, error: dict[str, Any]) -> dict[str, Any]:
    """One reported problem, with what became of the row or the value (JSON: it is kept)."""
    column = error["column"]
    if result.receipt_number is None:
        outcome = "rejected" if result.rejected else "repeat"
    elif column is None:
        outcome = "row"
    elif column == "receipt_number" or getattr(result, column, ""):
        outcome = "kept"
    else:
        outcome = "dropped"
    message = error["message"]
    return {
        "line": error["row"],
        "column": column or "",
        "value": error["value"],
        "message": message,
        # The message's id and values, kept so that the result page can word it later.
        "wording": message.as_data() if isinstance(message, Wording) else None,
        "outcome": outcome,
    }


def _labelled(problems: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Problems with their column, outcome and message in the words of the page's language
    (a message kept without its id stays in English, and says so: `message_lang`)."""
    return [
        {
            **problem,
            "column_label": COLUMN_LABELS.get(problem["column"], problem["column"]),
            "outcome_label": OUTCOMES[problem["outcome"]],
            "message_label": in_words(problem["message"], problem.get("wording")),
            "message_lang": "" if is_worded(problem["message"], problem.get("wording")) else "en",
        }
        for problem in problems
    ]


def _fingerprint(summary: ImportSummary) -> str:
    """What an import would do, as one value: the commit must do exactly this."""
    figures = {k: v for k, v in summary.as_dict().items() if k != "dry_run"}
    return hashlib.sha256(json.dumps(figures, sort_keys=True).encode()).hexdigest()


class _NotAsPreviewed(Exception):
    """Raised inside the commit's transaction to undo an import the preview did not show."""


@staff_view(Action.CHANGE_CASES, change=Action.CHANGE_CASES)
def import_commit(request: HttpRequest, membership: Membership, token: str) -> HttpResponse:
    """Step 3: the import itself, in one transaction, only if it does what the preview said."""
    if request.method != "POST":
        return redirect("intake-import-review", token)
    upload = _open_upload(token, membership)
    if upload.meta.get("result") is not None:
        return redirect("intake-import-done", token)
    sheet = upload.sheet
    if sheet is None or "receipt_number" not in sheet.columns:
        return redirect("intake-import-review", token)
    try:
        with transaction.atomic():
            summary = import_sheet(
                membership.firm, sheet, file_name=upload.meta["name"], actor=_actor(membership)
            )
            if _fingerprint(summary) != request.POST.get("fingerprint", ""):
                raise _NotAsPreviewed
    except _NotAsPreviewed:
        messages.error(
            request,
            _(
                "The firm's cases changed since this preview was made, so nothing was "
                "imported. Here is the preview as things stand now."
            ),
        )
        return redirect("intake-import-review", token)
    held_files.drop_data(token)
    upload.meta["result"] = {
        **{k: v for k, v in summary.as_dict().items() if k != "errors"},
        "problems": _problems(summary.results),
    }
    upload.meta.pop("mapping", None)
    held_files.update_meta(token, upload.meta)
    return redirect("intake-import-done", token)


@staff_view(Action.CHANGE_CASES)
def import_done(request: HttpRequest, membership: Membership, token: str) -> HttpResponse:
    """Step 4: what the import did, and every row it could not take, with the reason."""
    meta = held_files.meta_of(token, membership, UPLOAD)
    result = meta.get("result")
    if result is None:
        return redirect("intake-import-review", token)
    problems = _labelled(result["problems"])
    return render(
        request,
        "intake/done.html",
        {
            "firm": membership.firm,
            "name": meta["name"],
            "result": result,
            "rejected": [p for p in problems if p["outcome"] == "rejected"],
            "repeats": [p for p in problems if p["outcome"] == "repeat"],
            "kept": [p for p in problems if p["outcome"] not in ("rejected", "repeat")],
        },
    )


@staff_view(Action.CHANGE_CASES, change=Action.CHANGE_CASES)
def import_discard(request: HttpRequest, membership: Membership, token: str) -> HttpResponse:
    """Forget an upload now rather than in a day."""
    held_files.meta_of(token, membership, UPLOAD)
    if request.method == "POST":
        held_files.drop(token)
        messages.success(request, _("The uploaded file was deleted. Nothing was imported."))
        return redirect("intake-import")
    return redirect("intake-import-review", token)


# --- a pasted list of receipts ---------------------------------------------------------


@staff_view(Action.CHANGE_CASES, change=Action.CHANGE_CASES)
def paste_receipts(request: HttpRequest, membership: Membership) -> HttpResponse:
    """Each valid receipt the firm does not track yet becomes a case (receipt only).

    The list is imported as a one-column sheet, so the import's rules, its single
    transaction and its audit entries apply unchanged.
    """
    firm = membership.firm
    form = ReceiptsForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        items = split_receipt_list(form.cleaned_data["receipts"])
        if not items:
            form.add_error("receipts", _("Paste at least one receipt number."))
        else:
            rows = [RawRow(n, {"receipt_number": item}) for n, item in enumerate(items, 1)]
            sheet = Sheet(columns={"receipt_number": "receipt"}, ignored_columns=[], rows=rows)
            numbers = [normalize_receipt(item) for item in items]
            before = known_cases(firm, numbers)
            summary = import_sheet(firm, sheet, file_name=PASTED_NAME, actor=_actor(membership))
            after = known_cases(firm, numbers)
            return render(
                request, "intake/pasted.html", _pasted(firm, items, summary, before, after)
            )
    return render(request, "intake/paste.html", {"firm": firm, "form": form})


def _pasted(
    firm: Firm,
    items: list[str],
    summary: ImportSummary,
    before: dict[str, int],
    after: dict[str, int],
) -> dict[str, Any]:
    """Each pasted item: a new case, a case the firm had, a repeat, or not a receipt."""
    created: list[dict[str, Any]] = []
    duplicates: list[dict[str, Any]] = []
    invalid: list[dict[str, Any]] = []
    repeats: list[dict[str, Any]] = []
    for result in summary.results:
        text = items[result.line - 1]
        receipt = result.receipt_number
        if receipt is not None:
            entry = {"item": result.line, "receipt": receipt, "case": after.get(receipt)}
            (duplicates if receipt in before else created).append(entry)
        elif result.rejected:
            message = result.errors[0].message
            invalid.append(
                {
                    "item": result.line,
                    "text": text,
                    "message": in_words(message),
                    "message_lang": "" if is_worded(message) else "en",
                }
            )
        else:
            repeats.append({"item": result.line, "text": text})
    return {
        "firm": firm,
        "summary": summary,
        "created": created,
        "duplicates": duplicates,
        "invalid": invalid,
        "repeats": repeats,
    }
