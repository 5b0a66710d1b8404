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
    """Exit 0, or 1 when a row was rejected; 2 (one line on stderr, nothing imported)
    when the file is missing, too large (CASEWATCH_MAX_IMPORT_MB) or not a sheet."""
    prepare_django()
    from casewatch.accounts.firms import resolve_firm
    from casewatch.cases.intake import import_sheet
    from casewatch.cases.sheet import SheetError, read_sheet
    from casewatch.config import import_limit_bytes

    path: Path = args.file
    if not path.is_file():
        return fail(f"cannot read {path}: no such file")
    size, limit = path.stat().st_size, import_limit_bytes()
    if size > limit:
        return fail(
            f"cannot import {path.name}: it is {_megabytes(size)}, larger than the "
            f"{_megabytes(limit)} casewatch import reads (CASEWATCH_MAX_IMPORT_MB); "
            "split it into smaller files; nothing was imported"
        )
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


def _megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MB"


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
