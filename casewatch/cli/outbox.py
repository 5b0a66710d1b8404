"""`casewatch outbox`: every notification, to whom (staff or client), how, and how far it got."""

from __future__ import annotations

import argparse
from typing import Any

from casewatch.cli.bootstrap import prepare_django
from casewatch.cli.output import print_json, stdout_is_terminal, terminal
from casewatch.config import ConfigError

COLUMNS = ("id", "case", "recipient_kind", "channel", "language", "status", "attempts")


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "outbox",
        help="list notifications and their delivery",
        description=(
            "Every notification casewatch created: recipient kind, channel, language, "
            "status (pending, held, suppressed, sending, sent, delivered, read, failed), "
            "provider message id and times."
        ),
    )
    parser.add_argument("--json", action="store_true", help="print one JSON array")
    parser.add_argument("--case", metavar="RECEIPT", help="only this case's notifications")
    parser.add_argument("--firm", metavar="SLUG", help="only this firm's (default: every firm)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from casewatch.core.receipts import InvalidReceipt, parse_receipt

    receipt = None
    if args.case is not None:
        try:
            receipt = parse_receipt(args.case).number
        except InvalidReceipt as exc:
            raise ConfigError(f"--case {args.case!r}: {exc}") from exc
    prepare_django()
    from casewatch.accounts.firms import resolve_firm
    from casewatch.notify.outbox import outbox_entries

    firm_id = resolve_firm(args.firm).pk if args.firm else None
    entries = list(outbox_entries(firm_id=firm_id, receipt=receipt))
    if args.json:
        print_json(entries)
        return 0
    if not entries:
        print("No notifications yet.", flush=True)
        return 0
    if stdout_is_terminal():
        from rich.table import Table

        table = Table(*COLUMNS, "sent", "delivered")
        for entry in entries:
            table.add_row(
                *(str(entry[column] or "") for column in COLUMNS),
                entry["sent_at"] or "",
                entry["delivered_at"] or "",
            )
        terminal().print(table)
    else:
        for entry in entries:
            print("\t".join(str(entry[column] or "") for column in COLUMNS), flush=False)
    return 0
