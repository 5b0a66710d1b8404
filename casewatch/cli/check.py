"""`casewatch check`: a one-off status check of any number of receipts."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from casewatch.cli.output import errors, fail, print_json, stdout_is_terminal, terminal
from casewatch.config import uscis_settings
from casewatch.core.receipts import split_receipt_list
from casewatch.monitor.bulk_check import CheckResult, check_receipts, result_json
from casewatch.monitor.pacing import Pacer
from casewatch.uscis.connect import official_client
from casewatch.uscis.source import Found


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "check",
        help="check the USCIS status of receipt numbers now",
        description="Check receipts once. Without USCIS credentials, casewatch's sandbox answers.",
    )
    parser.add_argument("receipts", nargs="*", metavar="RECEIPT")
    parser.add_argument("--file", type=Path, help="a file of receipts, one per line")
    parser.add_argument("--json", action="store_true", help="print one JSON array")
    parser.add_argument("--lang", choices=("en", "es"), default="en", help="language of titles")
    parser.set_defaults(run=run)


def _read_inputs(args: argparse.Namespace) -> list[str] | str:
    inputs = list(args.receipts)
    if args.file is not None:
        try:
            raw = args.file.read_bytes()
        except OSError as exc:
            return f"cannot read {args.file}: {exc.strerror}"
        for encoding in ("utf-8-sig", "utf-16", "latin-1"):
            try:
                text = raw.decode(encoding)
                break
            except UnicodeDecodeError:
                continue
        inputs += split_receipt_list(text)
    return inputs


def run(args: argparse.Namespace) -> int:
    inputs = _read_inputs(args)
    if isinstance(inputs, str):
        return fail(inputs)
    if not inputs:
        return fail("no receipt numbers given (pass them as arguments or with --file)")
    settings = uscis_settings()
    pacer = Pacer(settings.rate_per_second)
    show_progress = sys.stderr.isatty() and not args.json and len(inputs) > 1
    with official_client(settings) as client:
        if show_progress:
            with Progress(
                TextColumn("checking"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=errors(),
                transient=True,
            ) as progress:
                task = progress.add_task("check", total=len(inputs))
                results = check_receipts(
                    inputs, client, pacer, on_result=lambda _r: progress.advance(task)
                )
        else:
            results = check_receipts(inputs, client, pacer)
        source = "sandbox" if settings.uses_builtin_sandbox else client.source
    if args.json:
        print_json([result_json(r, source) for r in results])
    else:
        _print_human(results, args.lang, source)
    return 0 if all(r.ok for r in results) else 1


def _title(result: CheckResult, lang: str) -> str:
    outcome = result.outcome
    if isinstance(outcome, Found):
        status = outcome.status
        return (status.title_es if lang == "es" else status.title_en) or status.title_en
    return f"{outcome.error}: {getattr(outcome, 'message', '')}"


def _print_human(results: list[CheckResult], lang: str, source: str) -> None:
    if not stdout_is_terminal():
        for r in results:
            form = r.outcome.status.form_type if isinstance(r.outcome, Found) else "-"
            category = r.classification.category if r.classification else "-"
            print(f"{r.receipt_number}\t{form}\t{category}\t{_title(r, lang)}")
        return
    heading = "USCIS" if source == "uscis" else "casewatch sandbox (not real USCIS data)"
    table = Table(title=f"Case status from {heading}")
    for column in ("Receipt", "Form", "Status", "Category", "Urgency"):
        table.add_column(column)
    for r in results:
        form = r.outcome.status.form_type if isinstance(r.outcome, Found) else ""
        c = r.classification
        style = "red" if not r.ok else ("bold yellow" if c and c.urgency == "action" else None)
        table.add_row(
            r.receipt_number,
            form,
            _title(r, lang),
            c.category if c else "",
            c.urgency if c else "",
            style=style,
        )
    terminal().print(table)
