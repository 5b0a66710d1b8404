"""The `casewatch` command: one entry point, subcommands per cli.md."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

from casewatch import __version__
from casewatch.cli import (
    audit,
    backup,
    bench,
    check,
    classify,
    intake,
    keys,
    mail,
    outbox,
    sandbox,
    simulate,
    status,
    token,
    unlock,
    up,
    worker,
)
from casewatch.cli.output import fail
from casewatch.config import ConfigError, ensure_data_dir

COMMANDS = (
    up,
    worker,
    check,
    classify,
    intake,
    mail,
    outbox,
    sandbox,
    simulate,
    status,
    audit,
    bench,
    keys,  # Key rotation, backup and restore: docs/security.md.
    backup,
    unlock,  # A locked-out login, a lost phone: docs/security.md.
    token,  # API tokens for the REST API: docs/api.md.
)


class Parser(argparse.ArgumentParser):
    """argparse that reports bad usage in one line and exits 2."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: {message} (see '{self.prog} --help')\n")
        sys.exit(2)


def build_parser() -> Parser:
    parser = Parser(prog="casewatch", description="Self-hosted USCIS case tracker.")
    parser.add_argument("--version", action="version", version=f"casewatch {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    commands.required = True
    for command in COMMANDS:
        command.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        ensure_data_dir()  # Works cold: every command starts from a ready data directory.
        result: int = args.run(args)
        return result
    except ConfigError as exc:
        return fail(str(exc))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


def run() -> NoReturn:
    sys.exit(main())
