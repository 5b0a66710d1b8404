"""Words for the codes the pages show: categories, urgencies, USCIS read problems, and
what the import and the receipt parser say about a file, a row or a receipt.

The codes are a contract (spec/status-categories.md) and stay as they are in data and
in CSS classes; what a person reads is one of these, in their language.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

from casewatch.core.wording import Wording

CATEGORY_LABELS: Mapping[str, Promise] = {
    "received": _("Received"),
    "biometrics": _("Biometrics"),
    "in_review": _("In review"),
    "evidence_requested": _("Evidence requested"),
    "evidence_received": _("Evidence received"),
    "intent_to_deny": _("Intent to deny"),
    "interview_scheduled": _("Interview scheduled"),
    "interview_completed": _("Interview completed"),
    "transferred": _("Transferred"),
    "approved": _("Approved"),
    "document_production": _("Document in production"),
    "document_mailed": _("Document mailed"),
    "document_delivered": _("Document delivered"),
    "returned_mail": _("Returned mail"),
    "denied": _("Denied"),
    "rejected": _("Rejected"),
    "revoked": _("Revoked"),
    "withdrawn": _("Withdrawn"),
    "closed": _("Closed"),
    "appeal": _("Appeal"),
    "on_hold": _("On hold"),
    "admin": _("Administrative"),
    "unknown": _("Not understood"),
}

URGENCY_LABELS: Mapping[str, Promise] = {
    "action": _("Action needed"),
    "progress": _("Progress"),
    "info": _("For the record"),
    "review": _("Needs a look"),
}

PROBLEM_LABELS: Mapping[str, Promise] = {
    "not_found": _("USCIS does not know this receipt number."),
    "invalid_receipt": _("USCIS says this receipt number is not valid."),
    "rate_limited": _("USCIS asked us to slow down; the check will be repeated."),
    "unavailable": _("USCIS could not be reached; the check will be repeated."),
    "auth_failed": _("USCIS refused casewatch's credentials."),
    "malformed_response": _("USCIS answered with something casewatch could not read."),
}


# What casewatch.core.receipts and casewatch.cases.sheet say about a receipt, a row, a cell
# or a file (their MESSAGES), by message id, in the page's language. Each sentence has the
# same placeholders as its English original; tests hold the two together.
WORDINGS: Mapping[str, Promise] = {
    "receipt.empty": _("empty receipt number"),
    "receipt.length": _(
        "a receipt number has 13 characters (3 letters and 10 digits); %(number)s has %(length)s"
    ),
    "receipt.letters": _("a receipt number starts with 3 letters; %(number)s does not"),
    "receipt.digits": _("a receipt number ends with 10 digits; %(number)s does not"),
    "receipt.unknown_prefix": _(
        "unknown receipt prefix %(prefix)s: not a USCIS office casewatch knows"
    ),
    "row.no_receipt": _("no receipt number; row skipped"),
    "row.bad_receipt": _("%(problem)s; row skipped"),
    "row.receipt_warning": _("%(problem)s; the case is tracked"),
    "row.repeat": _("receipt %(receipt)s already appears on line %(line)s; imported once"),
    "row.repeat_differs": _(
        "receipt %(receipt)s already appears on line %(line)s; imported once (this line's "
        "other details differ from that line's and were not imported)"
    ),
    "row.overflow": _(
        "this line has values to the right of the last named column (a comma or semicolon "
        "inside an unquoted value can cause this); they were ignored, so check this line's "
        "other values"
    ),
    "cell.dropped": _("%(problem)s; the case is tracked without it"),
    "cell.spreadsheet_error": _("the cell shows the spreadsheet error %(text)s"),
    "form.unknown": _("not a USCIS form number casewatch recognizes (like I-485 or N-400)"),
    "client_id.too_long": _("longer than %(limit)s characters"),
    "name.no_letters": _("has no letters, so it cannot be a name"),
    "name.formula": _(
        "starts with %(char)s, which a spreadsheet would run as a formula; it is kept as "
        "plain text, so check the name is right"
    ),
    "email.several": _("holds more than one e-mail address; the first one is kept"),
    "email.invalid": _("not a valid e-mail address (%(detail)s)"),
    "email.empty": _("empty"),
    "phone.invalid": _("not a valid phone number"),
    "phone.invalid_because": _("not a valid phone number (%(detail)s)"),
    "phone.several": _("holds more than one phone number; the first one is kept"),
    "phone.unknown_country": _("unknown country code"),
    "phone.not_a_number": _("it does not look like a phone number"),
    "phone.too_short": _("too short"),
    "phone.too_long": _("too long"),
    "phone.no_area_code": _("the area code is missing"),
    "phone.wrong_length": _("it has the wrong number of digits"),
    "phone.no_such_number": _(
        "no such number exists; check the area code and digits, and write numbers outside "
        "the US with + and the country code"
    ),
    "language.several": _("names more than one language; the first one is kept"),
    "language.unknown": _(
        "not a language casewatch knows (write a code like es or a name like Spanish)"
    ),
    "file.unreadable": _("cannot read the file (%(detail)s)"),
    "file.not_a_sheet": _("this is not a CSV file or an Excel .xlsx workbook: %(problem)s"),
    "file.xls": _(
        "it is an old-style Excel 97-2003 .xls workbook (or another old Office file); "
        "save it as .xlsx or CSV and import that"
    ),
    "file.pdf": _("it is a PDF document, not a spreadsheet"),
    "file.png": _("it is a PNG image, not a spreadsheet"),
    "file.jpeg": _("it is a JPEG image, not a spreadsheet"),
    "file.rtf": _("it is an RTF document, not a spreadsheet"),
    "file.gzip": _("it is a gzip archive; unpack it first"),
    "file.empty": _("the file is empty"),
    "file.first_sheet_empty": _("the first worksheet is empty"),
    "file.not_text": _("this does not look like a CSV file or an Excel workbook"),
    "file.not_text_named_xlsx": _(
        "this does not look like a CSV file or an Excel workbook (its name ends in .xlsx "
        "but it is not a readable workbook: damaged?)"
    ),
    "file.utf16_damaged": _(
        "the file starts like UTF-16 text (Excel's “Unicode text”) but is damaged"
    ),
    "file.csv_line": _(
        "line %(line)s cannot be read as CSV (%(detail)s); an unmatched quote can cause this"
    ),
    "file.no_worksheet": _("the workbook has no worksheet"),
    "file.first_sheet_only": _(
        "%(problem)s (only the first worksheet, %(title)s, is read; the workbook has %(count)s)"
    ),
    "file.workbook_unreadable": _("the Excel workbook cannot be read (%(detail)s)"),
    "file.workbook_damaged": _("the file looks like an Excel workbook but is damaged (%(detail)s)"),
    "file.opendocument": _(
        "this is an OpenDocument or Apple Numbers file; export it as .xlsx or CSV and import that"
    ),
    "file.zip": _("this is a zip archive, not an Excel .xlsx workbook"),
    "file.unpacks_too_big": _(
        "the workbook unpacks to more than %(limit)s MB; split it into smaller files"
    ),
    "file.data_first_row": _(
        "no receipt number column: the first row looks like data (it holds %(receipt)s), "
        "not headers; add a header row with a column named 'Receipt Number'"
    ),
    "file.no_receipt_column": _(
        "no receipt number column; the headers found are %(headers)s (name the column "
        "'Receipt Number', 'Receipt #' or 'Case Number')"
    ),
    "file.no_receipt_column_more": _(
        "no receipt number column; the headers found are %(headers)s and %(more)s more "
        "(name the column 'Receipt Number', 'Receipt #' or 'Case Number')"
    ),
}


def in_words(message: object, data: Mapping[str, Any] | None = None) -> str:
    """A message of the reader, the validator or the receipt parser in the page's language.

    `message` is the text as raised (a Wording remembers its id and values) or, for a
    message kept as JSON, its English with `data` (Wording.as_data()). A message without
    an id (an older stored result) is shown as it is, in English.
    """
    if isinstance(message, Wording):
        return _worded(message.code, message.params, str(message))
    if data:
        return _worded(data.get("code", ""), data.get("params") or {}, str(message))
    return str(message)


def is_worded(message: object, data: Mapping[str, Any] | None = None) -> bool:
    """Whether `in_words` says this message in the page's language (else: in English)."""
    if isinstance(message, Wording):
        return message.code in WORDINGS
    return bool(data) and str((data or {}).get("code", "")) in WORDINGS


def _worded(code: str, params: Mapping[str, Any], english: str) -> str:
    sentence = WORDINGS.get(code)
    if sentence is None:
        return english
    values = {name: _value(value) for name, value in params.items()}
    return str(sentence) % values


def _value(value: object) -> object:
    if isinstance(value, Wording):
        return in_words(value)
    if isinstance(value, Mapping) and "code" in value:
        return _worded(str(value["code"]), value.get("params") or {}, "")
    return value
