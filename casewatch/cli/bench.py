"""`casewatch bench …`: figures for the speed targets, measured on a throwaway database."""

from __future__ import annotations

import argparse
import atexit
import csv
import os
import random
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from casewatch.cli import bench_chaos, bench_monitor, bench_web
from casewatch.cli.output import print_json
from casewatch.config import ConfigError

PREFIXES = ("EAC", "WAC", "LIN", "SRC", "NBC", "MSC", "IOE")
FORMS = ("I-130", "I-485", "I-765", "I-131", "N-400", "I-129F", "I-751", "I-90")
LANGUAGES = ("en", "es", "pt", "zh", "vi", "fr", "ht", "")
ATTORNEYS = ("Attorney Example One", "Attorney Example Two", "attorney.three@example.com")


def register(commands: Any) -> None:
    parser = commands.add_parser("bench", help="measure speed on a throwaway database")
    benches = parser.add_subparsers(dest="bench", metavar="BENCH", required=True)
    imports = benches.add_parser("import", help="import a generated caseload of N rows")
    imports.add_argument("--rows", type=int, default=50_000)
    imports.add_argument("--json", action="store_true")
    imports.set_defaults(run=run_import)
    pipeline = benches.add_parser(
        "pipeline",
        help="check N cases once with the real worker against a local sandbox",
        description=(
            "The worker's own rounds (limiter, check, record) against a sandbox in its own "
            "process over HTTP, with no rate limit and real database writes: on a throwaway "
            "SQLite database, or in a throwaway database on the PostgreSQL server that "
            "DATABASE_URL names."
        ),
    )
    pipeline.add_argument("--cases", type=int, default=1000, metavar="N")
    pipeline.add_argument("--json", action="store_true")
    pipeline.set_defaults(run=bench_monitor.run_pipeline)
    quota = benches.add_parser(
        "quota",
        help="run the real worker for S seconds against a sandbox limited to R requests/s",
        description=(
            "How much of a spike-arrest limit the worker uses, and whether it ever trips it: "
            "the sandbox runs with --rate R and the worker with the same limit."
        ),
    )
    quota.add_argument("--rate", type=float, default=10.0, metavar="R")
    quota.add_argument("--seconds", type=float, default=10.0, metavar="S")
    quota.add_argument("--json", action="store_true")
    quota.set_defaults(run=bench_monitor.run_quota)
    bench_web.register(benches)
    bench_chaos.register(benches)


def write_caseload(
    path: Path, rows: int, *, seed: int = 7, avoid_endings: Collection[str] = ()
) -> None:
    """A realistic sheet of obviously fake clients, one unique receipt per row.

    `avoid_endings`: serial endings left out (the sandbox answers some with errors).
    """
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(
            [
                "Receipt Number",
                "Form",
                "Client ID",
                "Client Name",
                "Email",
                "Phone",
                "Language",
                "Attorney",
                "Tags",
                "Notes",
            ]
        )
        spare = rows // 100 + 20 if avoid_endings else 0
        serials = rng.sample(range(10**9, 10**10), rows + spare)
        serials = [s for s in serials if str(s)[-4:] not in avoid_endings][:rows]
        for n, serial in enumerate(serials):
            out.writerow(
                [
                    f"{PREFIXES[n % len(PREFIXES)]}{serial}",
                    FORMS[n % len(FORMS)],
                    f"C{n:07d}",
                    f"Testclient Number{n}",
                    f"testclient{n}@example.com",
                    f"+1202555{n % 100:04d}",
                    LANGUAGES[n % len(LANGUAGES)],
                    ATTORNEYS[n % len(ATTORNEYS)],
                    "bench" if n % 3 else "bench, priority",
                    "",
                ]
            )


def throwaway_data_dir(*, prefix: str = "casewatch-bench-", fast: bool = False) -> Path:
    """Benchmarks and simulations never touch the firm's own data: a fresh embedded default.

    `fast` skips fsync: a crash only loses a database that is thrown away anyway.
    The directory is removed when the command ends.
    """
    root = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    os.environ["CASEWATCH_DATA_DIR"] = str(root / "data")
    os.environ.pop("DATABASE_URL", None)
    os.environ.pop("CASEWATCH_REDIS_URL", None)
    if fast:
        os.environ["CASEWATCH_SQLITE_THROWAWAY"] = "1"
    return root


def postgres_server() -> str | None:
    """The PostgreSQL server DATABASE_URL names, if it names one."""
    url = os.environ.get("DATABASE_URL", "").strip()
    return url if url.startswith(("postgres://", "postgresql://")) else None


@contextmanager
def throwaway_postgres(server: str) -> Iterator[str]:
    """A fresh database on `server` for one bench, DATABASE_URL pointing at it, dropped after.

    The server's own databases are never touched: the bench's writes go to
    `casewatch_bench_<random>`, which is dropped however the bench ends.
    """
    try:
        import psycopg
        from psycopg import sql
    except ImportError as exc:
        raise ConfigError(
            "DATABASE_URL names PostgreSQL, but psycopg is not installed "
            "(pip install 'casewatch[postgres]')"
        ) from exc
    name = f"casewatch_bench_{secrets.token_hex(6)}"
    try:
        with psycopg.connect(server, autocommit=True, connect_timeout=10) as admin:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    except psycopg.Error as exc:
        raise ConfigError(
            f"cannot create a throwaway database on the PostgreSQL server in DATABASE_URL: "
            f"{_first_line(exc)}"
        ) from exc
    os.environ["DATABASE_URL"] = urlsplit(server)._replace(path=f"/{name}").geturl()
    try:
        yield name
    finally:
        os.environ["DATABASE_URL"] = server
        _close_django_connections()
        with psycopg.connect(server, autocommit=True, connect_timeout=10) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def _close_django_connections() -> None:
    """Let go of the throwaway database before it is dropped (if Django ever opened it)."""
    from django.apps import apps

    if apps.ready:
        from django.db import connections

        connections.close_all()


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def run_import(args: argparse.Namespace) -> int:
    if args.rows < 1:
        sys.stderr.write("casewatch: --rows must be at least 1\n")
        return 2
    root = throwaway_data_dir()
    from casewatch.cli.bootstrap import prepare_django

    prepare_django()
    from casewatch.accounts.firms import default_firm
    from casewatch.cases.intake import import_sheet
    from casewatch.cases.sheet import read_sheet

    sheet_path = root / "caseload.csv"
    write_caseload(sheet_path, args.rows)
    firm = default_firm()
    started = time.perf_counter()
    summary = import_sheet(firm, read_sheet(sheet_path), file_name=sheet_path.name)
    seconds = time.perf_counter() - started
    result = {
        "rows": args.rows,
        "seconds": round(seconds, 3),
        "rows_per_second": round(args.rows / seconds, 1) if seconds else None,
        "created": summary.created,
        "errors": len(summary.errors),
    }
    if args.json:
        print_json(result)
    else:
        print(
            f"Imported {args.rows:,} rows in {seconds:.2f} s "
            f"({result['rows_per_second']:,} rows/s; {summary.created:,} cases created)."
        )
    return 0
