"""`casewatch bench pipeline` and `bench quota`: the real worker against a sandbox over HTTP.

Both run the worker's own round (`tasks.poll_once`: the shared limiter, check,
record, schedule) in this process, on a throwaway database (embedded SQLite, or
a fresh database on the PostgreSQL server DATABASE_URL names), against
`casewatch sandbox` started as a child process: the sandbox's CPU is not the
worker's, and its counters are what a rate limit at USCIS would see.
"""

from __future__ import annotations

import argparse
import math
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from casewatch.cli.output import fail, print_json
from casewatch.uscis.client import OfficialClient
from casewatch.uscis.connect import SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET

if TYPE_CHECKING:
    from casewatch.monitor.limiter import Grant, Quota

# Receipts for the quota bench beyond what the limit allows in the time: the worker never runs dry.
QUOTA_SPARE_SHARE = 0.25
SANDBOX_START_TIMEOUT = 60.0


class SandboxError(RuntimeError):
    """The sandbox child process did not start or did not answer; the message says why."""


@dataclass
class SandboxProcess:
    url: str
    process: subprocess.Popen[str]

    def counters(self) -> dict[str, Any]:
        """The sandbox's own tally (its `/` page): requests received and 429s given."""
        response = httpx.get(f"{self.url}/", timeout=10.0)
        response.raise_for_status()
        about: dict[str, Any] = response.json()
        return about


@contextmanager
def sandbox_process(root: Path, rate: float | None) -> Iterator[SandboxProcess]:
    """`casewatch sandbox` on a free port in a child process, stopped on the way out."""
    command = [sys.executable, "-m", "casewatch", "sandbox", "--port", "0"]
    if rate is not None:
        command += ["--rate", repr(rate)]
    log_path = root / "sandbox.log"
    with log_path.open("w", encoding="utf-8") as log:
        process = subprocess.Popen(  # noqa: S603 - our own command, no shell
            command, stdout=subprocess.PIPE, stderr=log, text=True, env=dict(os.environ)
        )
    try:
        url = _announced_url(process, log_path)
        yield SandboxProcess(url=url, process=process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


def _announced_url(process: subprocess.Popen[str], log_path: Path) -> str:
    """The URL the sandbox prints once it listens; a reader thread keeps the wait bounded."""
    assert process.stdout is not None
    stdout = process.stdout
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: lines.put(stdout.readline()), daemon=True).start()
    try:
        line = lines.get(timeout=SANDBOX_START_TIMEOUT)
    except queue.Empty:
        line = ""
    prefix = "casewatch sandbox is running at "
    if not line.startswith(prefix):
        process.kill()
        process.wait()
        reason = log_path.read_text(encoding="utf-8").strip().splitlines()
        raise SandboxError(f"the sandbox did not start: {reason[-1] if reason else 'no output'}")
    return line.removeprefix(prefix).strip().rstrip("/")


@contextmanager
def throwaway_caseload(
    prefix: str, cases: int, daily_budget: int, rate: float | None
) -> Iterator[Path]:
    """A throwaway database holding `cases` fresh cases, and the worker's limits set to match.

    The database is embedded SQLite, or a fresh one on the PostgreSQL server that
    DATABASE_URL names; either is gone afterwards, with the data directory.
    """
    from casewatch.cli.bench import postgres_server, throwaway_data_dir, throwaway_postgres

    server = postgres_server()  # Read first: a throwaway data directory forgets DATABASE_URL.
    root = throwaway_data_dir(prefix=prefix)
    try:
        with throwaway_postgres(server) if server else nullcontext():
            _fill(root, cases, daily_budget, rate)
            yield root
    finally:
        _discard(root)


def _fill(root: Path, cases: int, daily_budget: int, rate: float | None) -> None:
    from casewatch.cli.bench import write_caseload

    os.environ["CASEWATCH_USCIS_DAILY_BUDGET"] = str(daily_budget)
    os.environ["CASEWATCH_USCIS_RATE"] = repr(rate if rate is not None else 10.0)
    os.environ.pop("CASEWATCH_CHECK_INTERVAL_SECONDS", None)  # the default rest between checks
    from casewatch.cli.bootstrap import prepare_django

    prepare_django()
    from casewatch.accounts.firms import default_firm
    from casewatch.cases.intake import import_sheet
    from casewatch.cases.sheet import read_sheet
    from casewatch.uscis.sandbox.world import ERROR_SERIALS

    sheet = root / "caseload.csv"
    write_caseload(sheet, cases, avoid_endings=ERROR_SERIALS.keys())
    import_sheet(default_firm(), read_sheet(sheet), file_name=sheet.name)


@dataclass
class Run:
    checks: int
    seconds: float
    cpu_seconds: float


class WindowedQuota:
    """The shared quota, closed at `ends_at` (epoch seconds): no slot at or after it is used.

    The bench's window ends between two requests, so that the sandbox counts
    exactly the requests sent within it; the limiter underneath is the real one.
    """

    def __init__(self, inner: Quota, ends_at: float) -> None:
        self._inner = inner
        self.clock = inner.clock
        self.ends_at = ends_at

    def reserve(self) -> Grant:
        from casewatch.monitor.limiter import Grant

        grant = self._inner.reserve()
        if grant.granted and grant.at >= self.ends_at:
            return Grant(at=grant.at, wait=grant.wait, refused_until=grant.at)
        return grant

    def back_off(self, seconds: float | None = None) -> None:
        self._inner.back_off(seconds)

    def used_today(self) -> int:
        return self._inner.used_today()

    def resets_at(self) -> datetime:
        return self._inner.resets_at()

    def blocked_until(self) -> float:
        return self._inner.blocked_until()


def _run_worker(url: str, rate: float | None, *, cases: int, seconds: float | None) -> Run:
    """The worker's rounds until `cases` checks are made, or for `seconds` of wall time.

    As in `tasks._poll_round`: the circuit is asked first, a back-off is waited
    out, and a round that finds nothing to check is followed by a short pause.
    The policy learns once before the clock starts, as a worker does on start-up.
    """
    from django.utils import timezone

    from casewatch.monitor import tasks
    from casewatch.monitor.health import circuit_allows
    from casewatch.monitor.limiter import shared_quota

    budget = tasks.current_budget()
    shared = shared_quota(rate, budget.calls_per_day)
    tasks.current_policy(timezone.now())
    pause = threading.Event()  # never set: waits that can be cut short by nothing but time
    checks = 0
    with OfficialClient(
        base_url=url,
        token_url=f"{url}/oauth/accesstoken",
        client_id=SANDBOX_CLIENT_ID,
        client_secret=SANDBOX_CLIENT_SECRET,
    ) as source:
        cpu_started, started = time.process_time(), time.perf_counter()
        ends_at = math.inf if seconds is None else shared.clock() + seconds
        bucket: Quota = shared if seconds is None else WindowedQuota(shared, ends_at)
        while True:
            left = ends_at - bucket.clock()
            if left <= 0 or (seconds is None and checks >= cases):
                break
            if not circuit_allows(timezone.now()):
                pause.wait(min(tasks.IDLE_SECONDS, left))
                continue
            held = bucket.blocked_until() - bucket.clock()
            if held > 0:
                pause.wait(min(held, left))
                continue
            report = tasks.poll_once(source, bucket)
            checks += report.checked
            if report.checked == 0:
                if seconds is None:
                    break  # nothing left to check: every case has been read
                pause.wait(min(tasks.IDLE_SECONDS, max(ends_at - bucket.clock(), 0.0)))
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    return Run(checks=checks, seconds=elapsed, cpu_seconds=cpu)


def run_pipeline(args: argparse.Namespace) -> int:
    """Checks per second and worker CPU per check, with nothing but the work itself in the way."""
    if args.cases < 1:
        return fail("--cases must be at least 1")
    # Budget beyond the caseload: the pacing reserve for later in the day must not hold checks back.
    caseload = throwaway_caseload(
        "casewatch-bench-pipeline-", args.cases, daily_budget=2 * args.cases, rate=None
    )
    try:
        with caseload as root, sandbox_process(root, rate=None) as sandbox:
            run = _run_worker(sandbox.url, None, cases=args.cases, seconds=None)
    except (SandboxError, httpx.HTTPError) as exc:
        return fail(str(exc))
    result = {
        "cases": args.cases,
        "checks": run.checks,
        "seconds": round(run.seconds, 3),
        "checks_per_second": round(run.checks / run.seconds, 1) if run.seconds else None,
        "cpu_ms_per_check": round(run.cpu_seconds * 1000 / run.checks, 2) if run.checks else None,
    }
    if args.json:
        print_json(result)
    else:
        print(
            f"Checked {args.cases:,} cases ({run.checks:,} checks) in {run.seconds:.2f} s: "
            f"{result['checks_per_second']} checks/s, "
            f"{result['cpu_ms_per_check']} ms of worker CPU per check."
        )
    return 0


def run_quota(args: argparse.Namespace) -> int:
    """How close to a spike-arrest limit the worker runs without ever being refused."""
    if not args.rate > 0 or not math.isfinite(args.rate):
        return fail("--rate must be greater than 0")
    if not args.seconds > 0 or not math.isfinite(args.seconds):
        return fail("--seconds must be greater than 0")
    cases = math.ceil(args.rate * args.seconds * (1 + QUOTA_SPARE_SHARE)) + 100
    caseload = throwaway_caseload(
        "casewatch-bench-quota-", cases, daily_budget=2 * cases, rate=args.rate
    )
    try:
        with caseload as root, sandbox_process(root, rate=args.rate) as sandbox:
            run = _run_worker(sandbox.url, args.rate, cases=cases, seconds=args.seconds)
            counters = sandbox.counters()
    except (SandboxError, httpx.HTTPError) as exc:
        return fail(str(exc))
    requests = int(counters["requests"])
    achieved = requests / run.seconds if run.seconds else 0.0
    result = {
        "rate_limit": args.rate,
        "seconds": round(run.seconds, 3),
        "requests": requests,
        "achieved_rate": round(achieved, 2),
        "utilization": round(achieved / args.rate, 3),
        "rejected_429": int(counters["rejected_429"]),
    }
    if args.json:
        print_json(result)
    else:
        print(
            f"Sent {requests:,} requests in {run.seconds:.2f} s under a limit of {args.rate:g}/s: "
            f"{achieved:.2f}/s ({achieved / args.rate:.1%} of the limit), "
            f"{result['rejected_429']} refused with 429."
        )
    return 0


def _discard(root: Path) -> None:
    """Close the throwaway database and delete the data directory: a bench leaves nothing behind."""
    import shutil

    from django.apps import apps

    if apps.ready:
        from django.db import connections

        connections.close_all()
    shutil.rmtree(root, ignore_errors=True)
