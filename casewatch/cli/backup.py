"""`casewatch backup` and `casewatch restore`: the database in one file, still encrypted."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from casewatch.cli.bootstrap import prepare_django
from casewatch.cli.output import fail, print_json


def register(commands: Any) -> None:
    backup = commands.add_parser(
        "backup",
        help="write the database to one file (encrypted data stays encrypted; keys NOT included)",
        description=(
            "Write a consistent copy of the database, while casewatch runs, to FILE (a tar "
            "with a manifest). Encrypted values stay encrypted. The keys are NOT included: "
            "keep the data directory's keys/ folder separately; without it the backup "
            "cannot be read."
        ),
    )
    backup.add_argument("file", type=Path, metavar="FILE", help="the backup to write (new file)")
    backup.add_argument("--json", action="store_true", help="print one JSON object")
    backup.set_defaults(run=run_backup)
    restore = commands.add_parser(
        "restore",
        help="restore a backup into an empty data directory or database",
        description=(
            "Restore FILE into an empty installation whose keys/ folder is the one of the "
            "installation that wrote the backup. Refused (exit 2, nothing written) when the "
            "database already holds firms, users or audit entries, or the file is damaged."
        ),
    )
    restore.add_argument("file", type=Path, metavar="FILE", help="a file `casewatch backup` wrote")
    restore.add_argument("--json", action="store_true", help="print one JSON object")
    restore.set_defaults(run=run_restore)


def run_backup(args: argparse.Namespace) -> int:
    prepare_django()
    from casewatch.maintenance.backup import KEYS_WARNING, BackupError, create_backup

    try:
        report = create_backup(args.file)
    except BackupError as exc:
        return fail(f"cannot back up: {exc}")
    # Said on stderr too, so that it shows even when stdout goes to a script.
    sys.stderr.write(f"casewatch: WARNING: {KEYS_WARNING}\n")
    sys.stderr.flush()
    if args.json:
        print_json(report.as_dict())
    else:
        print(
            f"Backed up {report.rows} rows ({report.vendor}) to {report.path}.\n"
            f"WARNING: {KEYS_WARNING}",
            flush=True,
        )
    return 0


def run_restore(args: argparse.Namespace) -> int:
    prepare_django()
    from casewatch.maintenance.backup import BackupError, restore_backup

    try:
        report = restore_backup(args.file)
    except BackupError as exc:
        return fail(f"cannot restore: {exc}")
    if args.json:
        print_json(report.as_dict())
    else:
        print(
            f"Restored {report.rows} rows from {report.path} (written {report.created_at} "
            f"by casewatch {report.casewatch_version}). Check it with `casewatch audit verify`.",
            flush=True,
        )
    return 0
