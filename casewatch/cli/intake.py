"""`casewatch import`: a firm's caseload from a CSV or XLSX file, exactly once."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from casewatch.cli.bootstrap import prepare_django
from casewatch.cli.output import fail, print_json


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "import",
        help="track every receipt in a CSV or XLSX file",
        description="Rows with a valid receipt are tracked; every problem is reported.",
    )
    parser.add_argument("file", metavar="FILE", type=Path)
    parser.add_argument("--firm", metavar="SLUG", help="the firm (default: the only one)")
    parser.add_argument("--dry-run", action="store_true", help="report, but store nothing")
    parser.add_argument("--json", action="store_true", help="print one JSON summary")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    prepare_django()
    from casewatch.accounts.firms import resolve_firm
    from casewatch.cases.intake import import_sheet
    from casewatch.cases.sheet import SheetError, read_sheet

    path: Path = args.file
    if not path.is_file():
        return fail(f"cannot read {path}: no such file")
    firm = resolve_firm(args.firm)
    try:
        sheet = read_sheet(path)
    except SheetError as exc:
        return fail(f"cannot import {path.name}: {exc}; nothing was imported")
    summary = import_sheet(firm, sheet, file_name=path.name, dry_run=args.dry_run)
    if args.json:
        print_json(summary.as_dict())
    else:
        _print_human(summary.as_dict(), path.name, sheet.ignored_columns)
    return 1 if summary.rejected else 0


def _print_human(summary: dict[str, Any], name: str, ignored: list[str]) -> None:
    verb = "would be" if summary["dry_run"] else "were"
    print(
        f"{name}: {summary['rows']} rows; {summary['created']} cases {verb} created, "
        f"{summary['updated']} updated, {summary['unchanged']} unchanged, "
        f"{summary['rejected']} rows rejected."
    )
    if ignored:
        print(f"Columns not used: {', '.join(ignored)}")
    if summary["staff_added"]:
        print(f"New staff to invite: {', '.join(summary['staff_added'])}")
    for error in summary["errors"]:
        column = f" {error['column']}" if error["column"] else ""
        print(f"  line {error['row']}{column}: {error['message']} (value: {error['value']!r})")
