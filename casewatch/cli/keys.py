"""`casewatch keys rotate`: re-encrypt client data with a new key while casewatch runs."""

from __future__ import annotations

import argparse
from typing import Any

from casewatch.cli.bootstrap import prepare_django
from casewatch.cli.output import fail, print_json


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "keys",
        help="rotate the key that encrypts client data",
        description="Key handling for the client data encrypted at rest (docs/security.md).",
    )
    actions = parser.add_subparsers(dest="keys_action", metavar="ACTION", parser_class=type(parser))
    actions.required = True
    rotate = actions.add_parser(
        "rotate",
        help="add a new key and re-encrypt every encrypted value with it",
        description=(
            "Put a new key first in keys/fernet.keys (older keys stay, so running processes "
            "still read everything) and re-encrypt every encrypted column, a batch per "
            "transaction. Run it again to finish an interrupted rotation. With --retire-old, "
            "add no key: drop the older keys, refused while any stored value still needs one."
        ),
    )
    rotate.add_argument("--json", action="store_true", help="print one JSON object")
    rotate.add_argument(
        "--retire-old",
        action="store_true",
        help="drop every key but the newest (only after every process was restarted)",
    )
    rotate.add_argument(
        "--batch-size", type=_positive, default=500, metavar="N", help="rows per transaction"
    )
    rotate.set_defaults(run=run_rotate)


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number, at least 1, got {text!r}")
    return int(text)


def run_rotate(args: argparse.Namespace) -> int:
    prepare_django()
    from casewatch.maintenance.keys import retire_old_keys, rotate

    if args.retire_old:
        retired = retire_old_keys()
        if args.json:
            print_json(retired.as_dict())
        elif retired.ok:
            print(
                f"Retired {retired.retired} old key(s); keys/fernet.keys now holds {retired.keys}.",
                flush=True,
            )
        else:
            print(f"Old keys kept: {retired.problem}", flush=True)
            for table, count in sorted(retired.remaining.items()):
                print(f"  {table}: {count}", flush=True)
        return 0 if retired.ok else 1
    try:
        report = rotate(batch_size=args.batch_size)
    except ValueError as exc:
        return fail(f"cannot rotate: {exc}")
    if args.json:
        print_json(report.as_dict())
    else:
        verb = "Finished the interrupted rotation" if report.resumed else "Rotated to a new key"
        print(
            f"{verb}: {report.rows} row(s) re-encrypted in {report.seconds:.1f} s; "
            f"keys/fernet.keys holds {report.keys} key(s).",
            flush=True,
        )
        for table, count in sorted(report.tables.items()):
            print(f"  {table}: {count}", flush=True)
        for table, count in sorted(report.unreadable.items()):
            print(f"  {table}: {count} value(s) no key can read, left as they were", flush=True)
        print(
            "Processes started before this rotation still encrypt with the old key: restart "
            "them, run `casewatch keys rotate` again, then `casewatch keys rotate --retire-old`.",
            flush=True,
        )
    return 1 if report.unreadable else 0
