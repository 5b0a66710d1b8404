"""`casewatch bench chaos`: real workers through every fault at once, then the books are checked.

`--workers` `casewatch worker` processes check a caseload against a sandbox that
replays a trace (the truth about what changed at USCIS) while it injects faults
(503s, timeouts, 429 storms, malformed and HTML bodies, revoked tokens); the
bench meanwhile SIGKILLs workers (and starts new ones), terminates every
database connection on PostgreSQL (`pg_terminate_backend`), and takes the
WhatsApp, Twilio and SMTP stand-ins down for a while. When every case has been
read at its final status and every notification has settled, the workers stop
and the outcome is judged from witnesses the workers cannot influence: the
trace, the sandbox's request log and the providers' records
(monitor/chaos.py, notify/chaos.py), and `casewatch audit verify`.

The web app (for the providers' delivery callbacks), the sandbox, the channel
fakes and the SMTP stand-in run in this process; the workers are child processes.
The database is embedded SQLite in a throwaway data directory, or the
PostgreSQL database named by --database-url / DATABASE_URL, which must be the
run's own (empty, nobody else connected: every connection to it is terminated)
and is left as the run wrote it, for inspection; Redis (--redis-url /
CASEWATCH_REDIS_URL) must be an empty database too. docs/chaos.md.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import httpx

from casewatch.cli.output import fail, print_json

T = TypeVar("T")

USCIS_PREFIX = "/uscis"
# Per request: faults the workers note and go on from (a storm's 429s each hold every
# worker for their Retry-After, a second).
DEFAULT_FAULTS = "malformed=0.02,token_expiry=0.01,wrong_case=0.005,storm=0.002,storm_length=5"
# A 503 holds every worker for its Retry-After (5 s), a timeout, a 5xx or an HTML error page
# without one for 30 s: those are injected once each, at planned moments, not at random.
ONE_OFFS = {
    "uscis_503": "unavailable",
    "uscis_timeout": "slow",
    "uscis_html": "html",
    "uscis_5xx": "errors",
    "uscis_429_storm": "storm",  # a storm at random may not come in a short run
}
# Longer than the workers' USCIS timeout (RUN_SETTINGS): the slow answer is a timeout.
SLOW_ANSWER_SECONDS = 2.5
# Sandbox days the trace covers: its changes happen over the chaos phase (--seconds).
TRACE_DAYS = 2.0
# Every case with a client is one in CLIENT_EVERY; their channels take turns.
CLIENT_EVERY = 2
CLIENT_PLANS = (["whatsapp", "sms", "email"], ["sms", "email", "whatsapp"], ["email", "sms"])
# Short leases and back-offs, so that a killed worker's work comes back within the run.
RUN_SETTINGS = {
    "CASEWATCH_USCIS_RATE": "60",
    "CASEWATCH_USCIS_DAILY_BUDGET": "5000000",
    "CASEWATCH_USCIS_TIMEOUT": "1.5",
    "CASEWATCH_CLAIM_LEASE_SECONDS": "10",
    "CASEWATCH_DISPATCH_LEASE_SECONDS": "10",
    "CASEWATCH_DISPATCH_GRACE_SECONDS": "8",
    "CASEWATCH_DISPATCH_BACKOFF_SECONDS": "1",
    "CASEWATCH_DISPATCH_BACKOFF_CAP_SECONDS": "6",
    "CASEWATCH_DISPATCH_MAX_ATTEMPTS": "40",
    "CASEWATCH_CHANNEL_TIMEOUT": "3",
}
# A server's own databases: never the run's, whatever the URL says.
SERVER_DATABASES = frozenset({"postgres", "template0", "template1"})
TERMINATE_SQL = (
    "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
)
# When each disruption starts, as a share of the chaos phase; outages last OUTAGE_SHARE of it.
PLAN = (
    (0.05, "uscis_503"),
    (0.15, "db_terminate"),
    (0.20, "whatsapp_outage"),
    (0.22, "uscis_timeout"),
    (0.30, "worker_kill"),
    (0.35, "smtp_down"),
    (0.42, "uscis_html"),
    (0.45, "db_terminate"),
    (0.50, "sms_outage"),
    (0.60, "worker_kill"),
    (0.62, "uscis_5xx"),
    (0.70, "db_terminate"),
    (0.80, "uscis_429_storm"),
)
OUTAGE_SHARE = 0.1
CHANNEL_OF = {"whatsapp_outage": "whatsapp", "sms_outage": "sms", "smtp_down": "email"}
SETTLE_SECONDS = 180.0
# The longest wait for the workers' first read of every case before the changes begin.
FIRST_ROUND_SECONDS = 300.0
# An outage that no send has met yet may last this long past the chaos phase.
OUTAGE_OVERTIME = 60.0


def register(benches: Any) -> None:
    chaos = benches.add_parser(
        "chaos",
        help="run real workers through USCIS faults, kills, dropped connections and outages",
        description=(
            "Workers check a caseload against a sandbox replaying a trace, with USCIS faults, "
            "worker SIGKILLs, every database connection terminated (PostgreSQL) and WhatsApp, "
            "SMS and SMTP outages; then counts false and lost status changes, duplicate and "
            "missing notifications, and verifies the audit chain (docs/chaos.md)."
        ),
    )
    chaos.add_argument("--cases", type=int, default=2000, metavar="N")
    chaos.add_argument(
        "--seconds", type=float, default=180.0, metavar="S", help="length of the chaos phase"
    )
    chaos.add_argument("--workers", type=int, default=2, metavar="K")
    chaos.add_argument(
        "--database-url",
        default=None,
        help="an empty PostgreSQL database for the run (default: DATABASE_URL; none: SQLite)",
    )
    chaos.add_argument(
        "--redis-url", default=None, help="an empty Redis database (default: CASEWATCH_REDIS_URL)"
    )
    chaos.add_argument("--faults", default=DEFAULT_FAULTS, metavar="SPEC", help="USCIS faults")
    chaos.add_argument("--seed", type=int, default=7)
    chaos.add_argument(
        "--keep",
        action="store_true",
        help="keep the data directory (worker logs, the sandbox's request log) and say where",
    )
    chaos.add_argument("--json", action="store_true")
    chaos.set_defaults(run=run_chaos)


@dataclass
class Disruption:
    """One thing the bench broke: what, when it began and ended (epoch s), and what it hit."""

    kind: str
    began: float
    ended: float
    hit: int = 0  # connections terminated; claims the killed worker held
    held: list[str] = field(default_factory=list)  # receipts a killed worker held


class ChaosError(RuntimeError):
    """The run could not go on (a worker died unbidden); the message says where to look."""


@dataclass
class WorkerProcess:
    client_id: str
    process: subprocess.Popen[bytes]
    killed: bool = False  # by the bench, on purpose

    @property
    def name(self) -> str:
        """What it writes into a case's `claimed_by` (monitor.tasks.WORKER)."""
        return f"{socket.gethostname()}:{self.process.pid}"


def run_chaos(args: argparse.Namespace) -> int:
    from casewatch.cli.bench import throwaway_data_dir
    from casewatch.uscis.sandbox.faults import FaultSpecError, parse_faults

    if args.cases < 10:
        return fail("--cases must be at least 10")
    if not args.seconds >= 20:
        return fail("--seconds must be at least 20")
    if args.workers < 1:
        return fail("--workers must be at least 1")
    try:
        parse_faults(args.faults)
    except FaultSpecError as exc:
        return fail(str(exc))
    database_url = args.database_url or os.environ.get("DATABASE_URL", "").strip() or None
    redis_url = args.redis_url or os.environ.get("CASEWATCH_REDIS_URL", "").strip() or None
    if database_url and not database_url.startswith(("postgres://", "postgresql://")):
        return fail("--database-url must name a PostgreSQL database (postgres://…)")
    root = throwaway_data_dir(prefix="casewatch-bench-chaos-")
    if args.keep:
        import atexit
        import shutil

        atexit.unregister(shutil.rmtree)
        print(f"casewatch: keeping the chaos run's files in {root}", file=sys.stderr)
    problem = _claim_services(database_url, redis_url)
    if problem:
        return fail(problem)
    os.environ.update(RUN_SETTINGS)
    os.environ["CASEWATCH_CHECK_INTERVAL_SECONDS"] = repr(max(5.0, args.seconds / 8))
    from casewatch.uscis.sandbox.smtp_fake import SmtpFake

    smtp = SmtpFake()
    os.environ["CASEWATCH_SMTP_URL"] = smtp.url
    os.environ["CASEWATCH_MAIL_FROM"] = "casewatch@chaos.example"
    try:
        result = Run(args, root, database_url, redis_url, smtp).go()
    except (ChaosError, httpx.HTTPError, OSError) as exc:
        return fail(f"the chaos run broke off: {exc}")
    finally:
        smtp.stop()
    if args.json:
        print_json(result)
    else:
        print(_human(result))
    return 0


def _claim_services(database_url: str | None, redis_url: str | None) -> str | None:
    """Point the run at its database and Redis, which must be empty; else why not."""
    if database_url:
        problem = _database_problem(database_url)
        if problem:
            return problem
        os.environ["DATABASE_URL"] = database_url
    if redis_url:
        import redis

        try:
            size = redis.Redis.from_url(redis_url, socket_timeout=5).dbsize()
        except redis.RedisError as exc:
            return f"cannot use the Redis in --redis-url: {exc}"
        if size:
            return f"the chaos run needs an empty Redis database (FLUSHDB it): it holds {size} keys"
        os.environ["CASEWATCH_REDIS_URL"] = redis_url
    return None


def _database_problem(url: str) -> str | None:
    """Why the run may not use this database, or None. It terminates every connection to
    it, so the database must be one nobody else uses: not a server's own, no other session
    connected, and empty."""
    try:
        import psycopg
    except ImportError:
        return "DATABASE_URL names PostgreSQL, but psycopg is not installed"
    try:
        with psycopg.connect(url, connect_timeout=10) as db:
            name, tables, others = db.execute(
                "SELECT current_database(), "
                "(SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'), "
                "(SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid())"
            ).fetchone() or ("", 0, 0)
    except psycopg.Error as exc:
        return f"cannot use the database in --database-url: {str(exc).strip().splitlines()[0]}"
    if name in SERVER_DATABASES:
        return f"the chaos run needs a database of its own (createdb chaos), not {name!r}"
    if others:
        return (
            f"{others} other sessions are connected to {name!r}: the chaos run terminates every "
            "connection to its database, so it needs one nobody else uses"
        )
    if tables:
        return f"the chaos run needs an empty database (dropdb/createdb it): {name!r} has tables"
    return None


class Run:
    """One chaos run, from an empty database to the figures."""

    def __init__(
        self,
        args: argparse.Namespace,
        root: Path,
        database_url: str | None,
        redis_url: str | None,
        smtp: Any,
    ) -> None:
        self.args, self.root = args, root
        self.database_url, self.redis_url, self.smtp = database_url, redis_url, smtp
        self.workers: list[WorkerProcess] = []
        self.disruptions: list[Disruption] = []
        self.started = self.chaos_began = time.time()

    # -- the run -----------------------------------------------------------------
    def go(self) -> dict[str, Any]:
        from casewatch.cli.bootstrap import prepare_django
        from casewatch.monitor.chaos import make_trace

        prepare_django()
        self.trace = make_trace(self.args.cases, days=TRACE_DAYS, seed=self.args.seed)
        self._fill()
        with self._services() as url:
            self.url = url
            self.env = self._worker_env(url)
            try:
                for _ in range(self.args.workers):
                    self._start_worker()
                self._first_round(time.time() + FIRST_ROUND_SECONDS)
                self.clock.run()  # only now does USCIS move any case on
                self.chaos_began = time.time()
                self._disrupt(self.chaos_began)
                settled = self._settle(self.chaos_began + self.args.seconds + SETTLE_SECONDS)
            finally:
                self._stop_workers()
            accepted = self._accepted()
        return self._figures(settled, accepted)

    def _fill(self) -> None:
        """The caseload, an admin who hears by app and e-mail, clients on every channel."""
        import csv
        import io

        from django.contrib.auth import get_user_model
        from django.db import transaction

        from casewatch.accounts.firms import default_firm
        from casewatch.accounts.models import Membership, Role
        from casewatch.cases.intake import import_sheet
        from casewatch.cases.models import Client
        from casewatch.cases.sheet import read_sheet_bytes
        from casewatch.cli.demo import CONSENT_WORDING
        from casewatch.notify.consent import record_consent
        from casewatch.notify.models import ContactPlan, MessagingPolicy, StaffContact

        firm = default_firm()
        out = io.StringIO()
        sheet = csv.writer(out)
        sheet.writerow(["receipt_number", "form_type", "client_id", "client_name",
                        "client_email", "client_phone", "client_language"])  # fmt: skip
        for n, receipt in enumerate(self.trace.receipts):
            if n % CLIENT_EVERY:
                sheet.writerow([receipt, "I-485", "", "", "", "", ""])
                continue
            sheet.writerow([receipt, "I-485", f"CHAOS-{n:05d}", f"Chaos Testclient {n}",
                            f"chaos.client{n}@example.com", f"+1202555{n % 10000:04d}",
                            "es" if n % 3 else "en"])  # fmt: skip
        now = datetime.now(UTC)
        with transaction.atomic():
            user = get_user_model().objects.create(
                username="chaos.admin", email="chaos.admin@example.com", first_name="Chaos"
            )
            user.set_unusable_password()
            user.save()
            member = Membership.objects.create(firm=firm, user=user, role=Role.ADMIN)
            StaffContact.objects.create(membership=member, channels=["in_app", "email"])
            MessagingPolicy.objects.update_or_create(firm=firm, defaults={"quiet_hours": False})
            import_sheet(
                firm,
                read_sheet_bytes(out.getvalue().encode(), "chaos.csv"),
                file_name="chaos.csv",
                actor="bench",
                now=now,
            )
            for n, client in enumerate(Client.objects.filter(firm=firm).order_by("reference")):
                plan = CLIENT_PLANS[n % len(CLIENT_PLANS)]
                ContactPlan.objects.create(client=client, channels=plan)
                for channel in plan:
                    record_consent(
                        client,
                        channel,
                        granted=True,
                        at=now,
                        actor="bench",
                        method="form",
                        wording=CONSENT_WORDING.format(firm=firm.name),
                        language="en",
                    )

    def _services(self) -> Any:
        """The web app, the sandbox and the channel fakes on one local port, as `casewatch up`."""
        from contextlib import contextmanager

        from django.db import connections
        from werkzeug.middleware.dispatcher import DispatcherMiddleware

        from casewatch.cli.sandbox import channel_fakes, point_fakes_at
        from casewatch.core.clock import ScaledClock
        from casewatch.uscis.sandbox.app import SandboxApp
        from casewatch.uscis.sandbox.faults import parse_faults
        from casewatch.uscis.sandbox.server import serve_in_thread
        from casewatch.uscis.sandbox.world import TraceWorld
        from casewatch.wsgi import application

        @contextmanager
        def running() -> Any:
            self.request_log = self.root / "requests.jsonl"
            speed = TRACE_DAYS * 86_400 / self.args.seconds
            self.clock = ScaledClock(start=self.trace.start, speed=speed, running=False)
            spec = f"{self.args.faults},delay={SLOW_ANSWER_SECONDS},seed={self.args.seed}"
            with self.request_log.open("a", encoding="utf-8") as log:
                self.sandbox = SandboxApp(
                    TraceWorld.from_csv(self.trace.csv()),
                    self.clock,
                    faults=parse_faults(spec),
                    request_log=log,
                )
                self.fakes = channel_fakes(None, callback_delay=0.3)
                connections.close_all()
                server = serve_in_thread(
                    DispatcherMiddleware(application, {USCIS_PREFIX: self.sandbox, **self.fakes})
                )
                point_fakes_at(self.fakes, server.url)
                try:
                    yield server.url
                finally:
                    for fake in self.fakes.values():
                        fake.stop()
                    server.stop()

        return running()

    def _worker_env(self, url: str) -> dict[str, str]:
        from casewatch.config import BUILTIN_TWILIO_PREFIX, BUILTIN_WHATSAPP_PREFIX

        env = dict(os.environ)
        env.update(
            CASEWATCH_USCIS_BASE_URL=f"{url}{USCIS_PREFIX}",
            CASEWATCH_WHATSAPP_BASE_URL=f"{url}{BUILTIN_WHATSAPP_PREFIX}",
            CASEWATCH_TWILIO_BASE_URL=f"{url}{BUILTIN_TWILIO_PREFIX}",
            CASEWATCH_WEB_URL=url,
            CASEWATCH_USCIS_CLIENT_SECRET="chaos-bench",  # noqa: S106 - the sandbox takes any
        )
        return env

    def _start_worker(self) -> WorkerProcess:
        client_id = f"chaos-worker-{len(self.workers) + 1}"
        with (self.root / f"{client_id}.log").open("w") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "casewatch", "worker", "--threads", "1"],
                env={**self.env, "CASEWATCH_USCIS_CLIENT_ID": client_id},
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        worker = WorkerProcess(client_id, process)
        self.workers.append(worker)
        return worker

    def _alive(self) -> list[WorkerProcess]:
        return [w for w in self.workers if w.process.poll() is None]

    # -- breaking things -----------------------------------------------------------
    def _disrupt(self, began: float) -> None:
        from casewatch.uscis.sandbox.faults import FaultKind

        outage = max(8.0, OUTAGE_SHARE * self.args.seconds)
        outages: list[threading.Thread] = []
        for share, kind in PLAN:
            self._sleep_until(began + share * self.args.seconds)
            if kind == "db_terminate":
                if self.database_url:
                    self._terminate_connections()
            elif kind == "worker_kill":
                self._kill_a_worker()
            elif kind in ONE_OFFS:
                self.sandbox.faults.force(FaultKind(ONE_OFFS[kind]))
            else:
                ends = began + self.args.seconds + OUTAGE_OVERTIME
                thread = threading.Thread(
                    target=self._outage, args=(kind, outage, ends), daemon=True
                )
                thread.start()
                outages.append(thread)
        self._sleep_until(began + self.args.seconds)
        for thread in outages:
            thread.join()

    def _sleep_until(self, moment: float) -> None:
        while time.time() < moment:
            for worker in self.workers:
                if worker.process.poll() is not None and not worker.killed:
                    raise ChaosError(f"{worker.client_id} died unbidden (--keep keeps its log)")
            time.sleep(min(0.5, max(0.0, moment - time.time())))

    def _terminate_connections(self) -> None:
        import psycopg

        assert self.database_url is not None
        at = time.time()
        with psycopg.connect(self.database_url, autocommit=True) as db:
            row = db.execute(TERMINATE_SQL).fetchone()
        self.disruptions.append(Disruption("db_terminate", at, at, hit=int(row[0]) if row else 0))

    def _kill_a_worker(self) -> None:
        """SIGKILL the worker holding the most claims (frozen while read); start another."""
        from casewatch.cases.models import Case

        alive = self._alive()
        counts = Counter(
            _retrying(lambda: list(Case.objects.exclude(claimed_by="").values_list(
                "claimed_by", flat=True)))
        )  # fmt: skip
        victim = max(alive, key=lambda w: counts.get(w.name, 0))
        victim.process.send_signal(signal.SIGSTOP)
        held = _retrying(lambda: _unchecked_claims(victim.name))
        at = time.time()
        victim.process.send_signal(signal.SIGKILL)
        victim.process.wait(timeout=30)
        victim.killed = True
        self.disruptions.append(Disruption("worker_kill", at, at, hit=len(held), held=held))
        self._start_worker()

    def _outage(self, kind: str, least: float, until: float) -> None:
        """Take a channel's provider down for `least` seconds, and on until a send has met
        the outage (sends come in bursts, and not at all while USCIS holds the workers
        back), but not past `until`; then bring it back. Runs in a thread."""
        from django.db import connection

        channel = CHANNEL_OF[kind]
        began = time.time()
        try:
            while True:
                self._provider(channel, down=True)
                now = time.time()
                if now >= began + least and (
                    now >= until or _retrying(partial(_refused_between, channel, began, now))
                ):
                    break
                time.sleep(1.0)
        finally:
            self._provider(channel, down=False)
            self.disruptions.append(Disruption(kind, began, time.time()))
            connection.close()

    def _provider(self, channel: str, *, down: bool) -> None:
        """Down: the provider refuses sends (503) for the next few seconds; else it is back."""
        from casewatch.config import BUILTIN_TWILIO_PREFIX, BUILTIN_WHATSAPP_PREFIX

        if channel == "email":
            if down:
                self.smtp.down()
            else:
                self.smtp.up()
            return
        prefix = BUILTIN_WHATSAPP_PREFIX if channel == "whatsapp" else BUILTIN_TWILIO_PREFIX
        fault = {"outage": 503, "seconds": 3} if down else {"clear": True}
        httpx.post(f"{self.url}{prefix}/_fake/faults", json=fault, timeout=10).raise_for_status()

    # -- waiting for the books to close ---------------------------------------------------
    def _first_round(self, deadline: float) -> None:
        """Wait until the workers have read every case once (or `deadline`), the sandbox's
        clock standing still: a firm tracks its cases before they move, and a change made
        before a case's first read is only its first status, with nothing to tell anyone.
        On a slow or loaded machine the first round takes longer; the changes wait for it.
        """
        from casewatch.cases.models import Case

        while time.time() < deadline:
            if not _retrying(Case.objects.filter(last_read_at__isnull=True).exists):
                return
            self._sleep_until(time.time() + 1)

    def _settle(self, deadline: float) -> bool:
        """Wait until every case is read at its final status and every notification settled."""
        while time.time() < deadline:
            if _retrying(self._settled):
                return True
            self._sleep_until(time.time() + 2)
        return False

    def _settled(self) -> bool:
        from casewatch.cases.models import Case, StatusEvent
        from casewatch.monitor.chaos import caught_up
        from casewatch.notify.chaos import SETTLED
        from casewatch.notify.models import Notification

        current = {str(r): s for r, s in Case.objects.values_list("receipt_number", "status")}
        if caught_up(self.trace, current) < len(self.trace.steps):
            return False
        unrouted = StatusEvent.objects.filter(routed_at__isnull=True).exists()
        waiting = Notification.objects.exclude(status__in=SETTLED).exists()
        return not unrouted and not waiting

    def _stop_workers(self) -> None:
        for worker in self._alive():
            worker.process.terminate()
        for worker in self.workers:
            try:
                worker.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait()

    def _accepted(self) -> list[Any]:
        from casewatch.config import BUILTIN_TWILIO_PREFIX, BUILTIN_WHATSAPP_PREFIX
        from casewatch.notify.chaos import Accepted, sms_accepted, whatsapp_accepted

        def messages(prefix: str) -> list[dict[str, Any]]:
            answer = httpx.get(f"{self.url}{prefix}/_fake/messages", timeout=30)
            answer.raise_for_status()
            found: list[dict[str, Any]] = answer.json()
            return found

        mail = [Accepted("email", "", m.message_id, m.at) for m in self.smtp.messages()]
        return [
            *whatsapp_accepted(messages(BUILTIN_WHATSAPP_PREFIX)),
            *sms_accepted(messages(BUILTIN_TWILIO_PREFIX)),
            *mail,
        ]

    # -- the figures ---------------------------------------------------------------------
    def _figures(self, settled: bool, accepted: list[Any]) -> dict[str, Any]:
        from django.db import connection

        from casewatch.monitor.chaos import judge_changes, summary, uscis_recoveries
        from casewatch.notify.chaos import expected_keys, judge_notifications

        connection.close()  # it may have been terminated with the rest
        lookups = [
            json.loads(line)
            for line in self.request_log.read_text(encoding="utf-8").splitlines()
            if line.strip()
        ]
        observations, events, entries, unrouted = _retrying(_rows)
        verdict = judge_changes(self.trace, observations, events)
        due = _retrying(lambda: expected_keys(e.pk for e in events if not e.initial))
        notified = judge_notifications(entries, due, unrouted, accepted)
        injected, recoveries = uscis_recoveries(lookups)
        recoveries += self._recoveries(lookups, accepted)
        faults: Counter[str] = Counter(injected)
        faults.update(d.kind for d in self.disruptions)
        audit = self._audit_ok()
        outages = Counter(d.kind for d in self.disruptions if d.kind.endswith(("outage", "down")))
        result: dict[str, Any] = {
            "cases": self.args.cases,
            "workers": self.args.workers,
            "database": "postgresql" if self.database_url else "sqlite",
            "queue": "redis" if self.redis_url else "sqlite",
            "checks_attempted": len(lookups),
            "faults_injected": dict(sorted(faults.items())),
            "worker_kills": faults["worker_kill"],
            "connections_terminated": sum(
                d.hit for d in self.disruptions if d.kind == "db_terminate"
            ),
            "channel_outages": dict(sorted(outages.items())),
            "sends_refused_in_outages": {
                d.kind: d.hit for d in self.disruptions if d.kind in outages
            },
            "recoveries": len(recoveries),
            "time_to_recover_seconds": summary(recoveries),
            "status_changes": verdict.true_changes,
            "false_changes": verdict.false_changes,
            "lost_changes": verdict.lost_changes,
            "notifications": len(entries),
            "told_by_channel": dict(sorted(notified.told_by_channel.items())),
            "duplicate_notifications": notified.duplicate,
            "missing_notifications": notified.missing,
            "email_resent_same_message_id": notified.email_resent_same_message_id,
            "audit_chain_ok": audit,
            "settled": settled,
            "elapsed_seconds": round(time.time() - self.started, 1),
            "disruptions": [
                {
                    "kind": d.kind,
                    "at_seconds": round(d.began - self.chaos_began, 1),
                    "seconds": round(d.ended - d.began, 1),
                    "hit": d.hit,
                }
                for d in sorted(self.disruptions, key=lambda d: d.began)
            ],
        }
        problems = verdict.examples + notified.examples
        if problems:
            result["examples"] = problems
        return result

    def _recoveries(self, lookups: list[dict[str, Any]], accepted: list[Any]) -> list[Any]:
        """Kills: until every case the worker held was read again. Dropped connections: until
        a read was next recorded. Outages: until the provider next took a message."""
        from casewatch.monitor.chaos import Recovery
        from casewatch.notify.chaos import channel_recovery

        good = [(float(x["done"]), x["receipt"]) for x in lookups if _good(x)]
        recorded = _retrying(_work_done_at)
        recoveries = []
        for d in self.disruptions:
            back: float | None = None
            if d.kind == "worker_kill":
                firsts = [
                    min((at for at, r in good if r == receipt and at >= d.ended), default=None)
                    for receipt in d.held or [""]
                ]
                if d.held and None not in firsts:
                    back = max(at for at in firsts if at is not None)
                elif not d.held:
                    back = min((at for at, _ in good if at >= d.ended), default=None)
            elif d.kind == "db_terminate":
                back = min((at for at in recorded if at >= d.ended), default=None)
            else:
                channel = CHANNEL_OF[d.kind]
                d.hit = _retrying(partial(_refused_between, channel, d.began, d.ended))
                if d.hit:  # nothing waited for the provider: nothing to recover
                    back = channel_recovery(accepted, channel, d.ended)
            if back is not None:
                recoveries.append(Recovery(d.kind, d.ended, back))
        return recoveries

    def _audit_ok(self) -> bool:
        verify = subprocess.run(
            [sys.executable, "-m", "casewatch", "audit", "verify", "--json"],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        return verify.returncode == 0 and bool(json.loads(verify.stdout or "{}").get("ok"))


def _unchecked_claims(worker: str) -> list[str]:
    """The cases `worker` holds a live claim on and has not read under it yet."""
    from datetime import timedelta

    from casewatch.cases.models import Case
    from casewatch.config import claim_lease_seconds

    now = datetime.now(UTC)
    lease = timedelta(seconds=claim_lease_seconds())
    held = Case.objects.filter(claimed_by=worker, claimed_until__gt=now)
    return [
        str(receipt)
        for receipt, until, checked in held.values_list(
            "receipt_number", "claimed_until", "last_checked_at"
        )
        if until is not None and (checked is None or checked < until - lease)
    ]


def _refused_between(channel: str, began: float, ended: float) -> int:
    """Sends on `channel` that failed (and will be retried) while its provider was down."""
    from casewatch.notify.models import DeliveryAttempt

    return DeliveryAttempt.objects.filter(
        notification__channel=channel,
        outcome="transient",
        started_at__gte=datetime.fromtimestamp(began, UTC),
        started_at__lte=datetime.fromtimestamp(ended, UTC),
    ).count()


def _good(lookup: dict[str, Any]) -> bool:
    return lookup["status"] == 200 and not lookup.get("fault")


def _retrying(query: Callable[[], T]) -> T:
    """Run a query; once more on a fresh connection if the bench's own was terminated."""
    from django.db import InterfaceError, OperationalError, connection

    try:
        return query()
    except (OperationalError, InterfaceError):
        connection.close()
        return query()


def _work_done_at() -> list[float]:
    """When the workers wrote something of use: a status read, a notification sent."""
    from casewatch.cases.models import Observation
    from casewatch.notify.models import Notification

    reads = Observation.objects.filter(outcome="found").values_list("observed_at", flat=True)
    sends = Notification.objects.filter(sent_at__isnull=False).values_list("sent_at", flat=True)
    return sorted(at.timestamp() for at in [*reads, *sends] if at is not None)


def _rows() -> tuple[list[Any], list[Any], list[Any], int]:
    from casewatch.cases.models import Observation, StatusEvent
    from casewatch.monitor.chaos import Event, Seen
    from casewatch.notify.chaos import Entry
    from casewatch.notify.models import Notification

    observations = [
        Seen(str(r), outcome, status, pk)
        for r, outcome, status, pk in Observation.objects.order_by("observed_at", "id").values_list(
            "case__receipt_number", "outcome", "status", "id"
        )
    ]
    events = [
        Event(str(r), status, previous, initial, seen, pk)
        for r, status, previous, initial, seen, pk in StatusEvent.objects.order_by(
            "id"
        ).values_list(
            "case__receipt_number", "status", "previous_status", "initial", "observation_id", "id"
        )
    ]
    entries = [
        Entry(pk, event, channel, status, key, provider_id or "", fallback_of)
        for pk, event, channel, status, key, provider_id, fallback_of in (
            Notification.objects.values_list(
                "id", "event_id", "channel", "status", "idempotency_key",
                "provider_message_id", "fallback_of_id",
            )
        )
    ]  # fmt: skip
    unrouted = StatusEvent.objects.filter(routed_at__isnull=True).count()
    return observations, events, entries, unrouted


def _human(result: dict[str, Any]) -> str:
    recover = result["time_to_recover_seconds"]
    return (
        f"{result['checks_attempted']:,} checks of {result['cases']:,} cases with "
        f"{sum(result['faults_injected'].values()):,} faults injected "
        f"({result['worker_kills']} workers killed, {result['connections_terminated']} "
        f"database connections terminated); {result['recoveries']} recoveries, "
        f"median {recover['median']} s, max {recover['max']} s.\n"
        f"False changes {result['false_changes']}, lost changes {result['lost_changes']} "
        f"of {result['status_changes']}; duplicate notifications "
        f"{result['duplicate_notifications']}, missing {result['missing_notifications']} "
        f"of {result['notifications']}; audit chain "
        f"{'intact' if result['audit_chain_ok'] else 'BROKEN'}; "
        f"{result['elapsed_seconds']} s."
    )
