"""Cells the product writes into CSV files people open in Excel, LibreOffice or Sheets.

One rule, here and nowhere else (OWASP "CSV Injection"): a cell a spreadsheet
would run as a formula is written as text by putting a single quote before it.
Every CSV or XLSX writer of casewatch passes each cell through `safe_cell`.
"""

from __future__ import annotations

# What a spreadsheet takes as the start of a formula: OWASP's list (= + - @, tab and
# carriage return), and the full-width forms some East Asian Excel versions also run.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "＝", "＋", "－", "＠")


def safe_cell(value: object) -> str:
    """The cell as text a spreadsheet shows and never runs; None is an empty cell.

    Any value whose text starts with one of FORMULA_STARTS gets a leading "'",
    numbers included: as OWASP advises, a negative amount ("-5") or a phone number
    ("+12025550142") is prefixed too, because a cell like "-2+3+cmd|..." starts
    the same way and the rule cannot tell them apart safely. Spreadsheets hide the
    quote and show the value as text, so nothing a person reads changes.
    """
    if value is None:
        return ""
    text = str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text
