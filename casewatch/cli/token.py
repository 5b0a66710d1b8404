"""`casewatch token create`: an API token for the REST API, its secret printed once."""

from __future__ import annotations

import argparse
from typing import Any

from casewatch.cli.bootstrap import prepare_django
from casewatch.cli.output import print_json

SCOPES = ("read", "write")


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "token",
        help="API tokens for the REST API",
        description="Tokens for the REST API (Authorization: Bearer TOKEN); see docs/api.md.",
    )
    actions = parser.add_subparsers(dest="token_command", metavar="ACTION")
    actions.required = True
    create = actions.add_parser(
        "create",
        help="create a token and print it once",
        description=(
            "Create an API token of the firm and print it once: only its hash is kept. "
            "read: look at cases; write: also add and change them and see clients' details."
        ),
    )
    create.add_argument("--firm", metavar="SLUG", help="the firm (default: the only firm)")
    create.add_argument("--scope", required=True, choices=SCOPES, help="read or write")
    create.add_argument("--name", default="", help="a note of what the token is for")
    create.add_argument("--json", action="store_true", help='print {"token", "scope", "firm"}')
    create.set_defaults(run=run_create)


def run_create(args: argparse.Namespace) -> int:
    prepare_django()
    from casewatch.accounts.api_tokens import create_token
    from casewatch.accounts.firms import resolve_firm

    firm = resolve_firm(args.firm)
    issued = create_token(firm, args.scope, name=args.name[:100], actor="cli")
    if args.json:
        print_json({"token": issued.secret, "scope": args.scope, "firm": firm.slug})
        return 0
    print(issued.secret, flush=True)
    return 0
