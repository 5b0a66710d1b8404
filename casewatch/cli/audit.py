"""`casewatch audit verify`: is the audit log still exactly what the application wrote?"""

from __future__ import annotations

import argparse
from typing import Any

from casewatch.cli import audit_export
from casewatch.cli.bootstrap import prepare_django
from casewatch.cli.output import print_json


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "audit",
        help="check or export the tamper-evident audit log",
        description="The audit log is a keyed hash chain; these commands check and export it.",
    )
    actions = parser.add_subparsers(
        dest="audit_action", metavar="ACTION", parser_class=type(parser)
    )
    actions.required = True
    verify = actions.add_parser(
        "verify",
        help="check every entry of the audit chain",
        description=(
            "Check the whole audit chain. Exit 1, naming the first broken link, when any "
            "entry was altered, inserted or removed behind the application's back."
        ),
    )
    verify.add_argument("--json", action="store_true", help="print one JSON object")
    verify.set_defaults(run=run_verify)
    audit_export.register(actions)


def run_verify(args: argparse.Namespace) -> int:
    prepare_django()
    from casewatch.audit.chain import verify  # Models load only once Django is set up.

    report = verify()
    if args.json:
        print_json(report.as_dict())
    elif report.ok:
        noun = "entry" if report.entries == 1 else "entries"
        print(f"Audit chain intact: {report.entries} {noun}.", flush=True)
    else:
        print(
            f"Audit chain BROKEN at entry {report.first_broken_seq}: {report.problem}", flush=True
        )
    return 0 if report.ok else 1
