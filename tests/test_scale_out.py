"""Scale-out and faults, run for real: the issue's "done means".

1. Several `casewatch worker` processes share one caseload — on PostgreSQL with
   Redis (Huey queue and rate-limit bucket), and on the embedded default
   (SQLite, SqliteHuey, the bucket in the database) — against one
   `casewatch sandbox` with a spike arrest. One worker is killed with SIGKILL
   in the middle of the run. Then:
   - no two workers ever asked about one case at once: every lookup the
     sandbox saw came from the worker holding that case's live claim, and a
     claim was only ever taken on a case that was free or whose lease had run
     out;
   - the killed worker's claims ran out after their lease, and the others
     checked those cases afterwards;
   - the shared rate limit held: the sandbox refused nothing with 429;
   - every case has exactly the status events its trace implies, no duplicate;
   - `casewatch audit verify` exits 0.
2. Under every fault the sandbox can inject, the worker records no false
   change: the status events are exactly the true changes, a fault is only an
   observation with an error outcome, outage events follow the rules, and the
   circuit breaker stops the calls.

The proofs rest on witnesses the workers cannot influence: the sandbox's
request log (`--request-log`: which client asked about which receipt, when;
each worker has its own client id), a ledger of every change to a case's claim
written by a trigger installed in the throwaway database, and the trace the
sandbox replays, which is the truth about what changed at USCIS.

PostgreSQL and Redis tests skip when those servers cannot be reached, and fail
instead when CI is set (tests/conftest.py).
"""

from __future__ import annotations

import io
import json
import os
import queue
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

import httpx
import pytest

from casewatch.monitor.chaos import PATH, WINDOW_START, Trace
from tests.conftest import IN_CI

CASEWATCH = [sys.executable, "-m", "casewatch"]
DEFAULT_POSTGRES_URL = "postgres://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379"

# A receipt in every caseload that USCIS does not know: its 404s are never changes.
UNKNOWN_RECEIPT = "EAC2599999999"

FAILURES = frozenset({"unavailable", "auth_failed", "malformed_response"})
READABLE = frozenset({"found", "not_found", "invalid_receipt"})


# --- the truth: a trace --------------------------------------------------------------


def make_trace(cases: int, *, seed: int, days_apart: tuple[float, float]) -> Trace:
    """`cases` I-485s, each starting somewhere early on PATH and moving on every few days."""
    rng = random.Random(seed)
    steps: dict[str, list[tuple[datetime, str]]] = {}
    for number in range(1, cases + 1):
        receipt = f"EAC259{number:07d}"
        first = rng.randrange(0, 4)
        entered = WINDOW_START - timedelta(days=rng.randint(40, 200))
        rows = [(entered.replace(microsecond=0), PATH[first])]
        moment = WINDOW_START + timedelta(days=rng.uniform(0.1, days_apart[0]))
        for title in PATH[first + 1 :]:
            rows.append((moment.replace(microsecond=0), title))
            moment += timedelta(days=rng.uniform(*days_apart))
        steps[receipt] = rows
    end = max(at for rows in steps.values() for at, _ in rows)
    return Trace(steps, WINDOW_START, end)


# --- what the database holds, as plain rows ------------------------------------------


def utc(value: Any) -> datetime:
    """A database timestamp (aware from PostgreSQL, text from SQLite) as aware UTC."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime), value
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@dataclass(frozen=True)
class Seen:
    """One observation: what asking USCIS about a case gave."""

    receipt: str
    at: datetime
    outcome: str
    status: str
    pk: int


@dataclass(frozen=True)
class Event:
    receipt: str
    status: str
    previous_status: str
    initial: bool
    recovered: bool
    uscis_date: datetime | None
    observation: int | None


@dataclass(frozen=True)
class Outage:
    kind: str
    at: datetime
    details: dict[str, Any]


@dataclass(frozen=True)
class History:
    """Everything the workers wrote that the assertions look at."""

    observations: list[Seen]
    events: list[Event]
    outages: list[Outage]

    def observed(self, receipt: str) -> list[Seen]:
        return [seen for seen in self.observations if seen.receipt == receipt]

    def events_of(self, receipt: str) -> list[Event]:
        return [event for event in self.events if event.receipt == receipt]


OBSERVATIONS_SQL = (
    "SELECT c.receipt_number, o.observed_at, o.outcome, o.status, o.id "
    "FROM cases_observation o JOIN cases_case c ON c.id = o.case_id ORDER BY o.observed_at, o.id"
)
EVENTS_SQL = (
    "SELECT c.receipt_number, e.status, e.previous_status, e.initial, e.recovered, "
    "e.uscis_date, e.observation_id "
    "FROM cases_statusevent e JOIN cases_case c ON c.id = e.case_id ORDER BY e.id"
)
OUTAGES_SQL = "SELECT kind, occurred_at, details FROM monitor_operationalevent ORDER BY id"


def history_from(rows: Callable[[str], list[tuple[Any, ...]]]) -> History:
    return History(
        observations=[
            Seen(str(r), utc(at), str(outcome), str(status), int(pk))
            for r, at, outcome, status, pk in rows(OBSERVATIONS_SQL)
        ],
        events=[
            Event(
                str(r),
                str(status),
                str(previous),
                bool(initial),
                bool(recovered),
                None if date is None else utc(date),
                None if seen is None else int(seen),
            )
            for r, status, previous, initial, recovered, date, seen in rows(EVENTS_SQL)
        ],
        outages=[
            Outage(
                str(kind), utc(at), details if isinstance(details, dict) else json.loads(details)
            )
            for kind, at, details in rows(OUTAGES_SQL)
        ],
    )


# --- what must hold for any run, faults or not ---------------------------------------


def assert_exactly_the_true_changes(history: History, trace: Trace) -> None:
    """Each case's events are the trace's steps from its first successful read to its last.

    The first read gives the initial event; every later step up to the status last
    read is one event, in order, none twice. A step no read showed must have been
    recovered from USCIS's history; one a read showed was seen, dated as USCIS dated it.
    """
    for receipt in trace.receipts:
        path = trace.statuses(receipt)
        shown = [seen.status for seen in history.observed(receipt) if seen.outcome == "found"]
        assert shown, f"{receipt} was never read"
        positions = [path.index(status) for status in shown]
        assert positions == sorted(positions), f"{receipt}: the sandbox went back in time"
        first, last = positions[0], positions[-1]
        expected = [(path[first], "", True, False)]
        previous = path[first]
        for status in path[first + 1 : last + 1]:
            expected.append((status, previous, False, status not in shown))
            previous = status
        events = history.events_of(receipt)
        actual = [(e.status, e.previous_status, e.initial, e.recovered) for e in events]
        assert actual == expected, f"{receipt}: events differ from the true changes"
        for event in events:
            if not event.recovered and not event.initial:
                assert event.uscis_date == trace.changed_at(receipt, event.status), receipt


def assert_faults_are_only_observations(history: History) -> None:
    """An answer that was not a status never made an event and never changed a case."""
    by_pk = {seen.pk: seen for seen in history.observations}
    for event in history.events:
        assert event.observation is not None
        assert by_pk[event.observation].outcome == "found", event
    for seen in history.observations:
        if seen.outcome != "found":
            assert seen.status == "", seen
    unknown = history.observed(UNKNOWN_RECEIPT)
    assert unknown, "the receipt USCIS does not know was never asked about"
    assert {seen.outcome for seen in unknown} <= {"not_found", "rate_limited", *FAILURES}
    assert not history.events_of(UNKNOWN_RECEIPT)


@dataclass(frozen=True)
class Unreadable:
    """A stretch when USCIS could not be read: from the first failure to the next good read."""

    since: datetime
    last_failure: datetime
    until: datetime | None


def unreadable_stretches(history: History) -> list[Unreadable]:
    stretches: list[Unreadable] = []
    since: datetime | None = None
    last: datetime | None = None
    for seen in history.observations:
        if seen.outcome in FAILURES:
            since = since or seen.at
            last = seen.at
        elif seen.outcome in READABLE and since is not None:
            assert last is not None
            stretches.append(Unreadable(since, last, seen.at))
            since = last = None
    if since is not None:
        assert last is not None
        stretches.append(Unreadable(since, last, None))
    return stretches


def assert_outage_events_follow_the_reads(history: History, alert_after: timedelta) -> None:
    """One `uscis_unreadable` for each stretch that lasted the alert time, one `uscis_recovered`
    at the good read that ended it, and nothing for a shorter blip."""
    stretches = {stretch.since: stretch for stretch in unreadable_stretches(history)}
    kinds = [outage.kind for outage in history.outages]
    assert kinds == ["uscis_unreadable", "uscis_recovered"] * (len(kinds) // 2) + (
        ["uscis_unreadable"] if len(kinds) % 2 else []
    ), kinds
    reported = set()
    for outage, after in zip(history.outages[::2], [*history.outages[1::2], None], strict=False):
        since = utc(outage.details["unreadable_since"])
        assert since in stretches, f"an outage reported from {since}, when no read failed"
        stretch = stretches[since]
        assert outage.at - since >= alert_after
        assert stretch.until is None or outage.at <= stretch.until
        if after is not None:
            assert after.at == stretch.until, "recovery is reported at the good read"
        reported.add(since)
    for stretch in stretches.values():
        if stretch.last_failure - stretch.since >= alert_after:
            assert stretch.since in reported, f"an outage from {stretch.since} went unreported"
        if stretch.until is not None and stretch.until - stretch.since < alert_after:
            lasted = stretch.until - stretch.since
            assert stretch.since not in reported, f"a blip of {lasted} was reported as an outage"


# --- services: PostgreSQL, Redis -----------------------------------------------------


def service_missing(reason: str) -> NoReturn:
    """Skip with the reason; in CI, where the services must be there, fail."""
    if IN_CI:
        pytest.fail(f"{reason} (CI is set: the PostgreSQL and Redis services must be running)")
    pytest.skip(reason)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A throwaway database on the PostgreSQL of CASEWATCH_TEST_POSTGRES_URL, dropped after."""
    base = os.environ.get("CASEWATCH_TEST_POSTGRES_URL") or DEFAULT_POSTGRES_URL
    try:
        import psycopg
    except ImportError:
        service_missing("psycopg is not installed (pip install -e '.[dev]')")
    try:
        admin = psycopg.connect(base, autocommit=True, connect_timeout=3)
    except psycopg.Error as exc:
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        service_missing(f"PostgreSQL at {base} is not reachable: {first_line}")
    name = f"casewatch_scale_{uuid.uuid4().hex[:12]}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield urlsplit(base)._replace(path=f"/{name}").geturl()
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A Redis database of its own (a free number, claimed, flushed before and after)."""
    import redis

    configured = os.environ.get("CASEWATCH_REDIS_URL", "").strip()
    base = configured.rsplit("/", 1)[0] if configured.count("/") > 2 else configured
    base = base or DEFAULT_REDIS_URL
    mine = f"casewatch-test:{uuid.uuid4().hex}"
    for number in range(15, 0, -1):
        url = f"{base}/{number}"
        client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5)
        try:
            if client.set("casewatch-test:owner", mine, nx=True, ex=900):
                if client.dbsize() == 1:
                    break
                client.delete("casewatch-test:owner")  # someone's data is there: not free
        except redis.RedisError as exc:
            service_missing(f"Redis at {base} is not reachable: {exc}")
        finally:
            client.close()
    else:
        service_missing(f"Redis at {base} has no free database among 1-15")
    client = redis.Redis.from_url(url, socket_timeout=5)
    try:
        client.flushdb()
        client.set("casewatch-test:owner", mine, ex=900)
        yield url
    finally:
        client.flushdb()
        client.close()


# --- running casewatch -----------------------------------------------------------------


def casewatch_env(data_dir: Path, **settings: str) -> dict[str, str]:
    """The environment of a casewatch process: nothing of ours leaks in but `settings`."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("CASEWATCH_") and k != "DATABASE_URL"
    }
    env["CASEWATCH_DATA_DIR"] = str(data_dir)
    env.update(settings)
    return env


def run_casewatch(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CASEWATCH, *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


@dataclass
class Sandbox:
    url: str
    process: subprocess.Popen[str]
    request_log: Path

    def counters(self) -> dict[str, Any]:
        about: dict[str, Any] = httpx.get(f"{self.url}/", timeout=10).json()
        return about

    def lookups(self) -> list[dict[str, Any]]:
        text = self.request_log.read_text(encoding="utf-8")
        return [json.loads(line) for line in text.splitlines() if line.strip()]


@contextmanager
def sandbox_process(
    tmp: Path, trace: Trace, *, speed: float, rate: float | None = None, faults: str = ""
) -> Iterator[Sandbox]:
    """`casewatch sandbox --trace` on a free port, its clock `speed` times real time."""
    trace_file = tmp / "trace.csv"
    trace_file.write_text(trace.csv(), encoding="utf-8")
    log = tmp / "requests.jsonl"
    command = [
        *CASEWATCH,
        "sandbox",
        "--port",
        "0",
        "--trace",
        str(trace_file),
        "--start",
        WINDOW_START.isoformat(),
        "--clock-speed",
        repr(speed),
        "--request-log",
        str(log),
    ]
    if rate is not None:
        command += ["--rate", repr(rate)]
    if faults:
        command += ["--faults", faults]
    with (tmp / "sandbox.err").open("w") as errors:
        process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
            env=casewatch_env(tmp / "sandbox-data"),
        )
    lines: queue.Queue[str] = queue.Queue()
    assert process.stdout is not None
    stdout = process.stdout
    threading.Thread(target=lambda: lines.put(stdout.readline()), daemon=True).start()
    try:
        try:
            line = lines.get(timeout=60)
        except queue.Empty:
            line = ""
        prefix = "casewatch sandbox is running at "
        assert line.startswith(prefix), (tmp / "sandbox.err").read_text()
        yield Sandbox(line.removeprefix(prefix).strip().rstrip("/"), process, log)
    finally:
        stop(process)
        stdout.close()


def stop(process: subprocess.Popen[Any], timeout: float = 30) -> int:
    """SIGTERM, then a grace period; a process that does not stop is killed (and fails)."""
    if process.poll() is None:
        process.terminate()
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise AssertionError(f"process {process.pid} did not stop on SIGTERM") from None


@dataclass
class Worker:
    """One `casewatch worker` process, asking USCIS with a client id of its own."""

    client_id: str
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def name(self) -> str:
        """What it writes into `claimed_by` (tasks.WORKER)."""
        return f"{socket.gethostname()}:{self.process.pid}"

    def errors(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


def start_worker(tmp: Path, env: dict[str, str], number: int) -> Worker:
    client_id = f"worker-{number}"
    log = tmp / f"{client_id}.err"
    with log.open("w") as errors:
        process = subprocess.Popen(
            # One thread: a process runs one round at a time anyway, and with a spare
            # thread it may take the other workers' round tasks off the shared queue.
            [*CASEWATCH, "worker", "--threads", "1"],
            env={
                **env,
                "CASEWATCH_USCIS_CLIENT_ID": client_id,
                "CASEWATCH_USCIS_CLIENT_SECRET": "scale-out-test",
            },
            stdout=subprocess.DEVNULL,
            stderr=errors,
        )
    return Worker(client_id, process, log)


def wait_for(
    what: str, condition: Callable[[], bool], timeout: float, workers: Sequence[Worker]
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        for worker in workers:
            assert worker.process.poll() is None, f"{worker.client_id} died:\n{worker.errors()}"
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.1)


# --- the database seen from outside: plain SQL on PostgreSQL or SQLite -----------------


class Database:
    """The throwaway database, read (and given its claim ledger) by plain SQL."""

    def __init__(self, url: str | None, sqlite_file: Path | None) -> None:
        self.url, self.sqlite_file = url, sqlite_file

    @property
    def is_postgres(self) -> bool:
        return self.url is not None

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        if self.url is not None:
            import psycopg

            with psycopg.connect(self.url) as db:
                return list(db.execute(sql).fetchall())
        import sqlite3

        assert self.sqlite_file is not None
        with sqlite3.connect(self.sqlite_file, timeout=30) as db:
            return db.execute(sql).fetchall()

    def install_claim_ledger(self) -> None:
        """A trigger that writes every change to a case's claim, stamped by the database clock."""
        if self.url is not None:
            import psycopg

            with psycopg.connect(self.url, autocommit=True) as db:
                db.execute(POSTGRES_LEDGER)
            return
        import sqlite3

        assert self.sqlite_file is not None
        with sqlite3.connect(self.sqlite_file, timeout=30) as db:
            db.executescript(SQLITE_LEDGER)


POSTGRES_LEDGER = """
CREATE TABLE test_claim_ledger (
    id bigserial PRIMARY KEY, case_id bigint NOT NULL, old_by text, old_until timestamptz,
    new_by text, new_until timestamptz, at timestamptz NOT NULL DEFAULT clock_timestamp());
CREATE FUNCTION test_note_claim() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO test_claim_ledger (case_id, old_by, old_until, new_by, new_until)
    VALUES (NEW.id, OLD.claimed_by, OLD.claimed_until, NEW.claimed_by, NEW.claimed_until);
    RETURN NULL;
END $$;
CREATE TRIGGER test_note_claim AFTER UPDATE ON cases_case FOR EACH ROW
WHEN (OLD.claimed_by IS DISTINCT FROM NEW.claimed_by
      OR OLD.claimed_until IS DISTINCT FROM NEW.claimed_until)
EXECUTE FUNCTION test_note_claim();
"""
SQLITE_LEDGER = """
CREATE TABLE test_claim_ledger (
    id INTEGER PRIMARY KEY AUTOINCREMENT, case_id INTEGER NOT NULL, old_by TEXT,
    old_until TEXT, new_by TEXT, new_until TEXT, at TEXT NOT NULL);
CREATE TRIGGER test_note_claim AFTER UPDATE ON cases_case FOR EACH ROW
WHEN OLD.claimed_by IS NOT NEW.claimed_by OR OLD.claimed_until IS NOT NEW.claimed_until
BEGIN
    INSERT INTO test_claim_ledger (case_id, old_by, old_until, new_by, new_until, at)
    VALUES (NEW.id, OLD.claimed_by, OLD.claimed_until, NEW.claimed_by, NEW.claimed_until,
            strftime('%Y-%m-%d %H:%M:%f', 'now'));
END;
"""


@dataclass(frozen=True)
class Claim:
    """A claim taken on a case: by whom, when (database clock), until when, over what."""

    receipt: str
    by: str
    at: datetime
    until: datetime
    previous_by: str
    previous_until: datetime | None


def claims_taken(database: Database) -> list[Claim]:
    rows = database.rows(
        "SELECT c.receipt_number, l.new_by, l.at, l.new_until, l.old_by, l.old_until "
        "FROM test_claim_ledger l JOIN cases_case c ON c.id = l.case_id "
        "WHERE l.new_by <> '' ORDER BY l.id"
    )
    return [
        Claim(str(r), str(by), utc(at), utc(until), str(old_by or ""), old and utc(old))
        for r, by, at, until, old_by, old in rows
    ]


# --- the scale-out scenario ----------------------------------------------------------

CASES = 30
# The sandbox refuses a lookup less than 1/20 s after the last one. The workers may
# make 10 a second between them: the headroom absorbs the scheduling jitter of a
# loaded machine, and three workers each allowed 10 a second would still break the
# limit at once unless they share one bucket.
SANDBOX_RATE = 20.0
WORKER_RATE = 10.0
LEASE_SECONDS = 6.0
SPEED = 43_200.0  # a real second is half a day at USCIS


@dataclass
class KillRun:
    trace: Trace
    workers: list[Worker]
    victim: Worker
    killed_at: datetime
    orphaned: dict[str, datetime]  # receipt -> when the killed worker's claim ran out
    lookups: list[dict[str, Any]]
    counters: dict[str, Any]
    claims: list[Claim]
    history: History
    audit: subprocess.CompletedProcess[str]
    exit_codes: dict[str, int] = field(default_factory=dict)


def import_caseload(tmp: Path, receipts: Sequence[str], settings: dict[str, str]) -> dict[str, str]:
    """`casewatch import` the receipts cold; the environment the workers then share."""
    data_dir = tmp / "data"  # shared by all: the keys (the audit chain's among them)
    env = casewatch_env(
        data_dir,
        CASEWATCH_USCIS_RATE=repr(WORKER_RATE),
        CASEWATCH_USCIS_DAILY_BUDGET="5000000",
        CASEWATCH_CHECK_INTERVAL_SECONDS="1.5",
        CASEWATCH_CLAIM_LEASE_SECONDS=repr(LEASE_SECONDS),
        **settings,
    )
    caseload = tmp / "caseload.csv"
    caseload.write_text("receipt\n" + "".join(f"{r}\n" for r in receipts), encoding="utf-8")
    imported = run_casewatch("import", str(caseload), "--json", env=env)
    assert imported.returncode == 0, imported.stderr
    assert json.loads(imported.stdout)["created"] == len(receipts)
    return env


def run_workers_and_kill_one(
    tmp: Path, database: Database, settings: dict[str, str], workers: int
) -> KillRun:
    """Import a caseload, start `workers` workers against one sandbox, SIGKILL one mid-run,
    let the others go on past its lease, stop them, and gather what every witness saw."""
    trace = make_trace(CASES, seed=len(settings) + workers, days_apart=(1.5, 3.5))
    env = import_caseload(tmp, trace.receipts, settings)
    database.install_claim_ledger()

    with sandbox_process(tmp, trace, speed=SPEED, rate=SANDBOX_RATE) as sandbox:
        env["CASEWATCH_USCIS_BASE_URL"] = sandbox.url
        running = [start_worker(tmp, env, number) for number in range(1, workers + 1)]
        try:
            names = {worker.name for worker in running}
            wait_for(
                "every worker has claimed cases",
                lambda: {c.by for c in claims_taken(database)} >= names,
                60,
                running,
            )
            time.sleep(2)  # all of them at work for a while
            victim, orphaned = kill_a_worker_holding_claims(database, running)
            killed_at = datetime.now(UTC)

            def orphans_checked_again() -> bool:
                rows = database.rows(
                    "SELECT receipt_number, last_checked_at FROM cases_case "
                    "WHERE last_checked_at IS NOT NULL"
                )
                checked = {str(r): utc(at) for r, at in rows}
                return all(r in checked and checked[r] >= until for r, until in orphaned.items())

            wait_for(
                "the others have checked the killed worker's cases",
                orphans_checked_again,
                LEASE_SECONDS + 70,  # a round that ended early resumes on Huey's next minute
                [w for w in running if w is not victim],
            )
            time.sleep(1)
        finally:
            exit_codes = {}
            for worker in running:
                if worker.process.poll() is None:
                    exit_codes[worker.client_id] = stop(worker.process)
        counters = sandbox.counters()
    lookups = sandbox.lookups()
    audit = run_casewatch("audit", "verify", "--json", env=env)
    return KillRun(
        trace=trace,
        workers=running,
        victim=victim,
        killed_at=killed_at,
        orphaned=orphaned,
        lookups=lookups,
        counters=counters,
        claims=claims_taken(database),
        history=history_from(database.rows),
        audit=audit,
        exit_codes=exit_codes,
    )


def kill_a_worker_holding_claims(
    database: Database, running: Sequence[Worker]
) -> tuple[Worker, dict[str, datetime]]:
    """SIGKILL the worker holding the most claims; return it and its claims (receipt -> end).

    Each candidate is frozen (SIGSTOP) while its claims are read, so that what is read is
    what it holds when it dies; one that holds none just goes on (SIGCONT).
    """
    by_name = {worker.name: worker for worker in running}
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        holding = live_claims(database)
        for name in sorted(holding, key=lambda n: -holding[n]):
            worker = by_name[name]
            worker.process.send_signal(signal.SIGSTOP)
            rows = database.rows(
                "SELECT receipt_number, claimed_until FROM cases_case "
                f"WHERE claimed_by = '{worker.name}'"
            )
            if rows:
                worker.process.send_signal(signal.SIGKILL)
                worker.process.wait(timeout=10)
                return worker, {str(r): utc(until) for r, until in rows}
            worker.process.send_signal(signal.SIGCONT)
        time.sleep(0.1)
    raise AssertionError("no worker held claims for 20 seconds")


def live_claims(database: Database) -> dict[str, int]:
    now = datetime.now(UTC)
    rows = database.rows("SELECT claimed_by, claimed_until FROM cases_case WHERE claimed_by <> ''")
    held: Counter[str] = Counter()
    for by, until in rows:
        if until is not None and utc(until) > now:
            held[str(by)] += 1
    return dict(held)


def assert_no_case_was_asked_about_by_two_workers_at_once(run: KillRun) -> None:
    """Every lookup came from the worker holding the case's latest claim, before it ran out;
    and every claim was taken on a case that was free or whose claim had run out."""
    lease = timedelta(seconds=LEASE_SECONDS)
    for claim in run.claims:
        assert claim.previous_by == "" or (
            claim.previous_until is not None and claim.previous_until <= claim.until - lease
        ), f"{claim.by} took {claim.receipt} from {claim.previous_by} before its claim ran out"
    by_receipt: dict[str, list[Claim]] = defaultdict(list)
    for claim in run.claims:
        by_receipt[claim.receipt].append(claim)
    name_of = {worker.client_id: worker.name for worker in run.workers}
    for lookup in run.lookups:
        asked_at = datetime.fromtimestamp(lookup["at"], UTC)
        answered_at = datetime.fromtimestamp(lookup["done"], UTC)
        earlier = [c for c in by_receipt[lookup["receipt"]] if c.at <= answered_at]
        assert earlier, f"{lookup['client_id']} asked about {lookup['receipt']} unclaimed"
        holder = earlier[-1]
        assert holder.by == name_of[lookup["client_id"]], (
            f"{lookup['client_id']} asked about {lookup['receipt']} at {asked_at} "
            f"while {holder.by} held it"
        )
        assert asked_at < holder.until, f"{lookup} was sent after its claim ran out"


def assert_the_workers_worked_side_by_side(run: KillRun) -> None:
    """Not one worker at a time: a lookup by one came between two by another within a
    second, so both were in the middle of a batch, holding claims, at the same moment."""
    order = sorted((lookup["at"], lookup["client_id"]) for lookup in run.lookups)
    side_by_side = {
        frozenset((a, b))
        for (first, a), (_, b), (third, c) in zip(order, order[1:], order[2:], strict=False)
        if a == c != b and third - first < 1.0
    }
    assert side_by_side, "the workers never worked at the same time"


def assert_the_killed_workers_cases_went_to_the_others_after_its_lease(run: KillRun) -> None:
    assert run.orphaned, "the killed worker held no claim when it died"
    victim_id = run.victim.client_id
    for receipt, lease_end in run.orphaned.items():
        later = sorted(
            (lookup["at"], lookup["client_id"])
            for lookup in run.lookups
            if lookup["receipt"] == receipt and lookup["at"] > run.killed_at.timestamp()
        )
        assert later, f"{receipt}, claimed by the killed worker, was never checked again"
        first_at, first_by = later[0]
        assert first_by != victim_id
        assert datetime.fromtimestamp(first_at, UTC) >= lease_end, (
            f"{receipt} was asked about before the killed worker's lease ran out"
        )


def assert_the_run_was_whole(run: KillRun) -> None:
    """Every worker asked USCIS; the survivors stopped cleanly on SIGTERM; nothing crashed."""
    asking = Counter(lookup["client_id"] for lookup in run.lookups)
    assert set(asking) == {worker.client_id for worker in run.workers}, asking
    for worker in run.workers:
        if worker is not run.victim:
            assert run.exit_codes[worker.client_id] == 0, worker.errors()
            assert "Traceback" not in worker.errors(), worker.errors()
    assert {lookup["status"] for lookup in run.lookups} == {200}
    assert {seen.outcome for seen in run.history.observations} == {"found"}


def assert_the_rate_limit_held(run: KillRun) -> None:
    assert run.counters["rejected_429"] == 0, run.counters
    assert run.counters["requests"] == len(run.lookups)


def assert_the_killed_workers_work_was_done_once_within_the_rate(run: KillRun) -> None:
    """What every scale-out profile must show after a worker is SIGKILLed mid-batch."""
    assert_the_run_was_whole(run)
    assert_the_workers_worked_side_by_side(run)
    assert_no_case_was_asked_about_by_two_workers_at_once(run)
    assert_the_killed_workers_cases_went_to_the_others_after_its_lease(run)
    assert_the_rate_limit_held(run)
    assert_exactly_the_true_changes(run.history, run.trace)
    assert run.audit.returncode == 0, run.audit.stdout + run.audit.stderr
    assert json.loads(run.audit.stdout)["ok"] is True


@pytest.mark.slow
@pytest.mark.postgres
def test_three_workers_on_postgresql_and_redis_share_the_caseload_and_outlive_a_killed_one(
    tmp_path: Path, postgres_url: str, redis_url: str
) -> None:
    import redis

    database = Database(postgres_url, None)
    run = run_workers_and_kill_one(
        tmp_path,
        database,
        {"DATABASE_URL": postgres_url, "CASEWATCH_REDIS_URL": redis_url},
        workers=3,
    )
    assert_the_killed_workers_work_was_done_once_within_the_rate(run)
    # The budget was shared through Redis, not the database.
    bucket = redis.Redis.from_url(redis_url).hgetall("casewatch:quota:uscis")
    assert int(bucket[b"used"]) >= len(run.lookups)
    assert database.rows("SELECT count(*) FROM monitor_quotabucket") == [(0,)]


@pytest.mark.slow
def test_two_workers_on_the_embedded_default_share_the_caseload_and_outlive_a_killed_one(
    tmp_path: Path,
) -> None:
    database = Database(None, tmp_path / "data" / "casewatch.sqlite3")
    run = run_workers_and_kill_one(tmp_path, database, {}, workers=2)
    assert_the_killed_workers_work_was_done_once_within_the_rate(run)
    # The budget was shared through the database, and the queue lived beside it.
    assert database.rows("SELECT count(*) FROM monitor_quotabucket") == [(1,)]
    assert (tmp_path / "data" / "queue.sqlite3").exists()


# Faults that leave the worker's round going: a 429 or 503 ends the round until the next
# minute (the virtual-time tests below cover those). No spike arrest either: the client
# retries a refused token at once, outside the limiter's pacing, and would be refused.
ROUND_KEEPING_FAULTS = "malformed=0.1,token_expiry=0.1,wrong_case=0.1,slow=0.1,delay=0.05,seed=11"


@pytest.mark.slow
def test_a_worker_process_against_a_faulty_sandbox_records_only_the_true_changes(
    tmp_path: Path,
) -> None:
    trace = make_trace(12, seed=5, days_apart=(1.5, 3.5))
    env = import_caseload(tmp_path, [*trace.receipts, UNKNOWN_RECEIPT], {})
    database = Database(None, tmp_path / "data" / "casewatch.sqlite3")
    with sandbox_process(tmp_path, trace, speed=SPEED, faults=ROUND_KEEPING_FAULTS) as sandbox:
        env["CASEWATCH_USCIS_BASE_URL"] = sandbox.url
        worker = start_worker(tmp_path, env, 1)
        try:
            wait_for(
                "a few days have passed at USCIS",
                lambda: database.rows("SELECT count(*) FROM cases_observation")[0][0] >= 60,
                45,
                [worker],
            )
        finally:
            assert stop(worker.process) == 0, worker.errors()
        injected = sandbox.counters()["faults_injected"]
    assert "Traceback" not in worker.errors(), worker.errors()
    history = history_from(database.rows)
    assert {"malformed", "token_expiry", "wrong_case", "slow"} <= set(injected), injected

    assert_exactly_the_true_changes(history, trace)
    assert_faults_are_only_observations(history)
    errors = {seen.outcome for seen in history.observations} - {"found", "not_found"}
    assert errors and errors <= {"malformed_response", "auth_failed"}
    assert_outage_events_follow_the_reads(history, timedelta(minutes=120))
    audit = run_casewatch("audit", "verify", "--json", env=env)
    assert audit.returncode == 0, audit.stdout + audit.stderr


# --- faults: the worker's own batches in virtual time ----------------------------------
#
# Each fault runs days of USCIS time in a second or two: the sandbox (over real HTTP)
# and the worker share a clock that only moves when the worker waits.

CHECK_EVERY = timedelta(hours=6)
IDLE = timedelta(minutes=15)  # how far the clock moves while the circuit is open
FAULT_DAYS = 4
ALERT_AFTER = timedelta(minutes=90)


@dataclass(frozen=True)
class FaultCase:
    spec: str  # as `casewatch sandbox --faults` takes it
    outcomes: frozenset[str]  # the error outcomes the fault may leave
    timeout: float = 5.0  # the client's, in real seconds


FAULT_CASES = {
    "unavailable": FaultCase("unavailable=0.3", frozenset({"unavailable"})),
    "outage": FaultCase("outage=0.5,window=0.05", frozenset({"unavailable"})),
    "slow": FaultCase("slow=0.3,delay=0.02", frozenset()),  # late, but a status
    "timeout": FaultCase("slow=0.1,delay=0.3", frozenset({"unavailable"}), timeout=0.1),
    "storm": FaultCase("storm=0.05,storm_length=4", frozenset({"rate_limited"})),
    "malformed": FaultCase("malformed=0.3", frozenset({"malformed_response"})),
    "html": FaultCase("html=0.3", frozenset({"malformed_response", "unavailable"})),
    "token_expiry": FaultCase("token_expiry=0.3", frozenset({"auth_failed"})),
    "errors": FaultCase("errors=0.3,shapes=1", frozenset({"unavailable"})),
    "wrong_case": FaultCase("wrong_case=0.3", frozenset({"malformed_response"})),
    "random": FaultCase(
        "random=0.4,storm_length=3,delay=0.02,shapes=1",
        frozenset({"unavailable", "rate_limited", "malformed_response", "auth_failed"}),
    ),
}


def test_every_fault_the_sandbox_can_inject_is_tried() -> None:
    from casewatch.uscis.sandbox.faults import MIXABLE, FaultKind, parse_faults

    tried: set[FaultKind] = set()
    for case in FAULT_CASES.values():
        plan = parse_faults(case.spec)
        tried |= {kind for kind, rate in plan.rates.items() if rate > 0}
        if plan.mix > 0:
            assert set(MIXABLE) <= set(FaultKind)
    assert tried == set(FaultKind)


class VirtualWorker:
    """The round `casewatch worker` runs (tasks._poll_round), on a virtual clock.

    The same batches (tasks.poll_once: the shared limiter, claims, check, record,
    schedule, outcomes noted for the circuit breaker); where the real worker would
    wait, the clock moves on instead.
    """

    def __init__(self, source: Any, clock: Any) -> None:
        from casewatch.monitor.limiter import DatabaseQuota

        self.source, self.clock = source, clock
        self.bucket = DatabaseQuota(1.0, None, clock=lambda: clock.now().timestamp())

    def sleep(self, seconds: float) -> None:
        self.clock.advance(timedelta(seconds=max(seconds, 0.0)))

    def run_until(self, until: datetime) -> None:
        from casewatch.monitor import tasks
        from casewatch.monitor.health import circuit_allows

        while self.clock.now() < until:
            held = self.bucket.blocked_until() - self.bucket.clock()
            if held > 0:
                # Backed off (Retry-After): the worker goes on when the wait is over.
                self.sleep(held)
                continue
            if not circuit_allows(self.clock.now()):
                self.clock.advance(IDLE)
                continue
            report = tasks.poll_once(self.source, self.bucket, now=self.clock.now, sleep=self.sleep)
            now = self.clock.now()
            if report.stopped_early == "quota":
                # The round ends; the next one starts on the next minute.
                self.clock.set(now.replace(second=0, microsecond=0) + timedelta(minutes=1))
            elif report.stopped_early in ("rate_limited", "unavailable"):
                continue
            elif report.checked == 0:
                # Idle until the case checked longest ago may be checked again.
                self.clock.set(min(until, max(now + timedelta(minutes=1), self.next_work())))

    def next_work(self) -> datetime:
        from django.db.models import Min

        from casewatch.cases.models import Case

        oldest: datetime | None = Case.objects.aggregate(at=Min("last_checked_at"))["at"]
        return self.clock.now() if oldest is None else oldest + CHECK_EVERY


@pytest.fixture
def worker_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """A budget that lets every case be checked every six hours, and a fresh policy."""
    from casewatch.monitor import tasks

    monkeypatch.setenv("CASEWATCH_USCIS_DAILY_BUDGET", "100000")
    monkeypatch.setenv("CASEWATCH_USCIS_RATE", "1")
    monkeypatch.setenv("CASEWATCH_CHECK_INTERVAL_SECONDS", str(CHECK_EVERY.total_seconds()))
    monkeypatch.setenv("CASEWATCH_USCIS_OUTAGE_ALERT_MINUTES", str(ALERT_AFTER.seconds // 60))
    monkeypatch.setattr(tasks, "_policy", None)
    monkeypatch.setattr(tasks, "_learned_at", None)


@contextmanager
def sandbox_in_thread(trace: Trace, spec: str, timeout: float) -> Iterator[tuple[Any, Any, Any]]:
    """The sandbox replaying `trace` on a manual clock, over HTTP; and a client for it."""
    from casewatch.core.clock import ManualClock
    from casewatch.uscis.sandbox.app import SandboxApp
    from casewatch.uscis.sandbox.faults import parse_faults
    from casewatch.uscis.sandbox.server import serve_in_thread
    from casewatch.uscis.sandbox.world import TraceWorld
    from tests.conftest import client_for

    clock = ManualClock(WINDOW_START)
    app = SandboxApp(
        TraceWorld.from_csv(trace.csv()),
        clock,
        faults=parse_faults(spec),
        request_log=io.StringIO(),
    )
    with serve_in_thread(app) as server, client_for(server, timeout=timeout) as client:
        yield app, client, clock


def track(trace: Trace) -> None:
    from casewatch.accounts.firms import default_firm
    from casewatch.cases.models import Case

    firm = default_firm()
    for receipt in [*trace.receipts, UNKNOWN_RECEIPT]:
        Case.objects.create(firm=firm, receipt_number=receipt, form_type="I-485")


def recorded_history() -> History:
    from django.db import connection

    def rows(sql: str) -> list[tuple[Any, ...]]:
        with connection.cursor() as cursor:
            cursor.execute(sql)
            return list(cursor.fetchall())

    return history_from(rows)


def sandbox_lookups(app: Any) -> list[dict[str, Any]]:
    text = app.request_log.getvalue()
    return [json.loads(line) for line in text.splitlines()]


def assert_the_circuit_stopped_the_calls(history: History) -> None:
    """Five failed reads in a row open the circuit: no call is made during the cool-down,
    but those already on their way (a batch keeps a few requests in flight)."""
    from casewatch.monitor import checks
    from casewatch.monitor.health import COOL_DOWN, FAILURES_TO_OPEN

    in_flight = getattr(checks, "FETCHERS", 1) - 1
    failures = 0
    for index, seen in enumerate(history.observations):
        if seen.outcome in READABLE:
            failures = 0
        elif seen.outcome in FAILURES:
            failures += 1
            if failures == FAILURES_TO_OPEN:
                later = history.observations[index + 1 :]
                during = [s for s in later if s.at < seen.at + COOL_DOWN]
                assert len(during) <= in_flight, (
                    f"{len(during)} calls in the cool-down after the circuit opened at {seen.at}"
                )


@pytest.mark.django_db
@pytest.mark.parametrize("fault", list(FAULT_CASES))
def test_under_every_fault_the_history_holds_only_the_true_changes(
    fault: str, worker_settings: None
) -> None:
    case = FAULT_CASES[fault]
    trace = make_trace(5, seed=sum(map(ord, fault)), days_apart=(1.0, 2.0))
    track(trace)
    with sandbox_in_thread(trace, case.spec, case.timeout) as (app, client, clock):
        VirtualWorker(client, clock).run_until(WINDOW_START + timedelta(days=FAULT_DAYS))
    history = recorded_history()
    injected = Counter(lookup["fault"] for lookup in sandbox_lookups(app) if lookup["fault"])
    assert injected, "the sandbox injected nothing"

    assert_exactly_the_true_changes(history, trace)
    assert_faults_are_only_observations(history)
    errors = {seen.outcome for seen in history.observations} - {"found", "not_found"}
    assert errors <= case.outcomes
    if case.outcomes and fault != "token_expiry":
        assert errors, "the fault never reached the worker"
    if fault == "token_expiry":  # a revoked token is replaced and the read tried once more
        failed = sum(seen.outcome == "auth_failed" for seen in history.observations)
        assert failed < injected["token_expiry"]
    assert_outage_events_follow_the_reads(history, ALERT_AFTER)
    assert_the_circuit_stopped_the_calls(history)


SUSTAINED = {
    "outage": ("outage=1", "unavailable"),  # 503 for every request
    "unreadable": ("malformed=1", "malformed_response"),  # 200s that are not a status
    "credentials": ("token_expiry=1", "auth_failed"),  # every token refused
}


@pytest.mark.django_db
@pytest.mark.parametrize("failure", list(SUSTAINED))
def test_a_long_failure_is_reported_once_ends_once_stops_the_calls_and_changes_nothing(
    failure: str, worker_settings: None
) -> None:
    from casewatch.monitor.health import health_snapshot
    from casewatch.uscis.sandbox.faults import FaultInjector, parse_faults

    spec, outcome = SUSTAINED[failure]
    trace = make_trace(10, seed=7, days_apart=(1.0, 2.0))
    track(trace)
    # The worker starts while USCIS fails: its first batch holds the whole caseload.
    down_until = WINDOW_START + timedelta(hours=8)
    with sandbox_in_thread(trace, spec, 5.0) as (app, client, clock):
        worker = VirtualWorker(client, clock)
        worker.run_until(down_until)
        app.faults = FaultInjector(parse_faults(""))
        worker.run_until(WINDOW_START + timedelta(days=FAULT_DAYS))
    history = recorded_history()

    assert [outage.kind for outage in history.outages] == ["uscis_unreadable", "uscis_recovered"]
    unreadable, recovered = history.outages
    assert WINDOW_START + ALERT_AFTER <= unreadable.at <= down_until
    # The first good read: when the case asked about longest ago may be asked again.
    assert down_until <= recovered.at <= down_until + CHECK_EVERY
    assert_outage_events_follow_the_reads(history, ALERT_AFTER)
    during = [s for s in history.observations if s.at < down_until]
    assert during and {seen.outcome for seen in during} == {outcome}
    assert_the_circuit_stopped_the_calls(history)
    assert_exactly_the_true_changes(history, trace)
    assert_faults_are_only_observations(history)
    assert health_snapshot()["circuit"] == "closed"


@pytest.mark.django_db
def test_a_worker_held_back_past_its_lease_asks_about_none_of_the_cases_it_claimed(
    worker_settings: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another worker was told to stop for ten minutes (a 503 with Retry-After): this one
    waits for its slot far beyond its one-minute claims, and a third worker takes them."""
    from casewatch.cases.models import Case
    from casewatch.monitor import tasks
    from casewatch.monitor.checks import claim

    monkeypatch.setenv("CASEWATCH_CLAIM_LEASE_SECONDS", "60")
    monkeypatch.setattr(tasks, "WORKER", "worker-a")
    trace = make_trace(4, seed=3, days_apart=(1.0, 2.0))
    track(trace)
    taken: list[Any] = []
    with sandbox_in_thread(trace, "", 5.0) as (app, client, clock):
        worker = VirtualWorker(client, clock)
        lease_ends = clock.now() + timedelta(seconds=60)

        def sleep(seconds: float) -> None:
            worker.sleep(seconds)
            if clock.now() >= lease_ends and not taken:
                taken.extend(claim(clock.now(), 10, worker="worker-b"))

        worker.bucket.back_off(600)
        report = tasks.poll_once(client, worker.bucket, now=clock.now, sleep=sleep)

    assert len(taken) == len(trace.receipts) + 1, "worker-b took every lapsed claim"
    asked = [lookup["receipt"] for lookup in sandbox_lookups(app)]
    assert asked == [], "worker-a asked about cases worker-b now holds"
    assert (report.checked, report.stopped_early) == (0, "lease")
    assert Case.objects.filter(claimed_by="worker-b").count() == len(taken), (
        "worker-a gave back claims that were worker-b's"
    )
