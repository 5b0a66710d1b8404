"""`casewatch mail`: read the e-mail kept in the data directory when no SMTP server is set."""

from __future__ import annotations

import argparse
from typing import Any

from casewatch.cli.bootstrap import prepare_django
from casewatch.cli.output import print_json
from casewatch.config import ConfigError


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "mail",
        help="read e-mail kept (encrypted) in the data directory when no SMTP server is set",
        description=(
            "Without CASEWATCH_SMTP_URL, casewatch sends no e-mail: each message (invitations, "
            "password resets, notifications) is kept encrypted under mail/ in the data "
            "directory. This lists them, newest last, or prints one with --show."
        ),
    )
    parser.add_argument("--json", action="store_true", help="print one JSON array")
    parser.add_argument("--last", type=int, metavar="N", help="only the N newest messages")
    parser.add_argument(
        "--show", metavar="NUMBER", type=int, help="print message NUMBER of the list in full"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    prepare_django()
    from django.conf import settings

    from casewatch.notify.mail_capture import captured

    if not str(settings.EMAIL_BACKEND).endswith("EncryptedFileBackend"):
        raise ConfigError("CASEWATCH_SMTP_URL is set: e-mail goes to that server, none is kept")
    messages = list(captured())
    numbered = list(enumerate(messages, start=1))
    if args.show is not None:
        if not 1 <= args.show <= len(messages):
            raise ConfigError(f"--show {args.show}: there are {len(messages)} kept message(s)")
        mail = messages[args.show - 1]
        for header in ("Date", "From", "To", "Subject"):
            print(f"{header}: {mail.message.get(header, '')}")
        print()
        print(mail.text(), flush=True)
        return 0
    if args.last is not None:
        numbered = numbered[-max(args.last, 0) :] if args.last > 0 else []
    if args.json:
        print_json(
            [
                {"number": n, "date": m.date, "to": m.to, "subject": m.subject, "body": m.text()}
                for n, m in numbered
            ]
        )
        return 0
    if not numbered:
        print("No e-mail kept yet.", flush=True)
        return 0
    for n, mail in numbered:
        print(f"{n}\t{mail.date}\t{mail.to}\t{mail.subject}", flush=False)
    return 0
