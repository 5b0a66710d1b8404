"""`casewatch classify`: what the normalizer makes of USCIS titles."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from rich.table import Table

from casewatch.cli.output import print_json_lines, stdout_is_terminal, terminal
from casewatch.core.statuses import classify


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "classify",
        help="map USCIS status titles to canonical statuses",
        description="Titles from the arguments or, with none, one per line on stdin.",
    )
    parser.add_argument("titles", nargs="*", metavar="TITLE")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    titles = list(args.titles)
    if not titles:
        text = sys.stdin.buffer.read().decode("utf-8-sig", errors="replace")
        titles = [line.strip("\r") for line in text.splitlines() if line.strip()]
    results = [classify(title) for title in titles]
    if args.json:
        print_json_lines([r.as_dict() for r in results])
    elif stdout_is_terminal():
        table = Table()
        for column in ("Title", "Status", "Category", "Urgency", "Confidence"):
            table.add_column(column)
        for r in results:
            table.add_row(r.input, r.status, r.category, r.urgency, f"{r.confidence:.2f}")
        terminal().print(table)
    else:
        for r in results:
            print(f"{r.category}\t{r.urgency}\t{r.status}\t{r.confidence:.3f}\t{r.input}")
    return 0
