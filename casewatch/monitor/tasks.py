"""Huey tasks: thin wrappers that run the monitor's plain functions on real time.

A worker process keeps one USCIS client (and its token) and one policy for its
lifetime; the policy relearns from the database every few minutes. The budget,
the circuit and the claims live in the database (or Redis), so any number of
workers share them.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from datetime import datetime, timedelta

from django.db import InterfaceError, OperationalError, connection
from django.utils import timezone
from huey import crontab
from huey.contrib.djhuey import db_periodic_task, db_task

from casewatch.cases.models import Case
from casewatch.cases.reminders import remind_pending_receipts
from casewatch.config import claim_lease_seconds, monitor_settings, uscis_settings
from casewatch.core.history_text import default_phrasebook
from casewatch.core.statuses import default_catalog
from casewatch.monitor.checks import PollReport, poll_due, state_of, watched_cases
from casewatch.monitor.health import FAILURES, READABLE, circuit_allows, note_outcome
from casewatch.monitor.limiter import Quota, acquire, shared_quota
from casewatch.monitor.schedule import AdaptivePolicy, Budget
from casewatch.uscis.connect import official_client
from casewatch.uscis.source import CaseStatusSource, Outcome

ROUND_SECONDS = 50.0
IDLE_SECONDS = 2.0
BATCH = 100
RELEARN_EVERY = timedelta(minutes=10)
# Successful reads in a row are noted for the circuit breaker at most this often.
NOTE_READS_EVERY = timedelta(seconds=1)
WORKER = f"{socket.gethostname()}:{os.getpid()}"

log = logging.getLogger(__name__)

_open = ExitStack()
_source: CaseStatusSource | None = None
_policy: AdaptivePolicy | None = None
_learned_at: datetime | None = None
# One round at a time per process; other processes claim other cases in parallel.
_round = threading.Lock()
# Set when the worker shuts down: a round gives back its claims and ends.
stopping = threading.Event()


def current_budget() -> Budget:
    settings = monitor_settings()
    return Budget(
        calls_per_day=settings.daily_budget,
        rate_per_second=settings.rate_per_second,
        min_interval=timedelta(seconds=settings.min_interval_seconds),
    )


def current_policy(now: datetime) -> AdaptivePolicy:
    """This process's policy, relearned from every worker's observations now and then."""
    global _policy, _learned_at
    if _policy is None:
        _policy = AdaptivePolicy(current_budget())
        # What every answer is read with, loaded as the worker starts, not by its first checks.
        default_catalog()
        default_phrasebook()
    if _learned_at is None or now - _learned_at >= RELEARN_EVERY:
        caseload = [state_of(case) for case in Case.objects.filter(watched_cases())]
        _policy.refresh(now, caseload)
        _learned_at = now
    return _policy


def shut_down(timeout: float = 15.0) -> None:
    """Let a round in progress end (it sees `stopping`), then close the USCIS client."""
    stopping.set()
    if _round.acquire(timeout=timeout):
        _round.release()
    _open.close()


def _reader() -> CaseStatusSource:
    global _source
    if _source is None:
        _source = _open.enter_context(official_client(uscis_settings()))
    return _source


def quota() -> Quota:
    budget = current_budget()
    return shared_quota(budget.rate_per_second, budget.calls_per_day)


def _note(outcome: Outcome, at: datetime) -> None:
    note_outcome(outcome.error, at, message=getattr(outcome, "message", ""))


def _note_read(at: datetime) -> None:
    note_outcome(None, at)


def poll_once(
    source: CaseStatusSource,
    bucket: Quota,
    *,
    now: Callable[[], datetime] = timezone.now,
    sleep: Callable[[float], None] = time.sleep,
) -> PollReport:
    """One batch of the worker's round; `now` and `sleep` are its clock (virtual in tests).

    Requests go out only in the first half of the claims' lease: a wait for a slot
    (a back-off holds every worker, maybe for long) must not outlast the claims, or
    another worker could take a case and both would ask about it. The batch ends
    ("lease") when the time is up, and the round claims afresh. After a failed read
    the batch ends too ("stopping"), so that the circuit breaker is asked before
    the next call rather than after the whole batch.
    """
    began = now()
    policy = current_policy(began)
    # poll_due claims a moment after `began`, for the lease: its claims outlast this.
    send_until = began + timedelta(seconds=claim_lease_seconds()) / 2
    lease_ran_out = failed = False

    def day_start(moment: datetime) -> datetime:
        return bucket.resets_at() - timedelta(days=1)

    def may_send() -> bool:
        nonlocal lease_ran_out
        if now() >= send_until or not acquire(bucket, sleep):
            lease_ran_out = now() >= send_until
            return False
        if now() >= send_until:  # the slot came too late
            lease_ran_out = True
            return False
        return True

    unnoted: datetime | None = None  # the latest read not yet noted
    noted_at: datetime | None = None  # when a read was last noted

    def noted(outcome: Outcome, at: datetime) -> None:
        """Tell the circuit breaker; reads in a row are noted about once a second.

        A read after reads only moves `last_success_at` on, so the latest one of
        a run stands for all of it; the first read of a batch (it may end an outage)
        and every other outcome are noted at once, after the reads before them.
        """
        nonlocal failed, unnoted, noted_at
        failed = failed or outcome.error in FAILURES
        if outcome.error in READABLE and noted_at is not None and at - noted_at < NOTE_READS_EVERY:
            unnoted = at if unnoted is None else max(unnoted, at)
            return
        if unnoted is not None:
            _note_read(unnoted)
            unnoted = None
        _note(outcome, at)
        if outcome.error in READABLE:
            noted_at = at

    report = poll_due(
        source,
        policy=policy,
        now=now,
        may_send=may_send,
        used_today=bucket.used_today,
        day_start=day_start,
        on_outcome=noted,
        back_off=bucket.back_off,
        stopping=lambda: stopping.is_set() or failed,
        limit=BATCH,
        worker=WORKER,
    )
    if unnoted is not None:
        _note_read(unnoted)
    if lease_ran_out and report.stopped_early == "quota":
        report.stopped_early = "lease"
    return report


def poll_round() -> int:
    """Check what the budget allows until nothing is left to do or the minute is nearly over."""
    if not _round.acquire(blocking=False):
        return 0
    try:
        return _poll_round()
    finally:
        _round.release()


def _poll_round() -> int:
    source, bucket = _reader(), quota()
    started = time.monotonic()
    checked = 0
    while not stopping.is_set():
        left = ROUND_SECONDS - (time.monotonic() - started)
        if left <= 0:
            break
        try:
            step = _round_step(source, bucket, left)
        except (OperationalError, InterfaceError) as exc:
            # The database dropped this connection (restarted, or pg_terminate_backend):
            # Django reconnects only once it is closed. What was claimed stays claimed
            # until its lease runs out; the round goes on with a fresh connection.
            log.warning("database connection lost in a round, reconnecting: %s", exc)
            connection.close()
            stopping.wait(min(IDLE_SECONDS, left))
            continue
        if step is None:
            break
        checked += step
    return checked


def _round_step(source: CaseStatusSource, bucket: Quota, left: float) -> int | None:
    """One step of a round with `left` seconds to go: checks made, or None when it ends."""
    held = bucket.blocked_until() - bucket.clock()
    if held > 0:
        # USCIS asked every worker to wait (a 429 or 503, Retry-After): go on the
        # moment the wait is over, in this round if it ends first, else in a poll
        # scheduled for then rather than at the next minute's round.
        if held >= left:
            resume_after(held, bucket.blocked_until())
            return None
        stopping.wait(held)
        return 0
    if not circuit_allows(timezone.now()):
        stopping.wait(min(IDLE_SECONDS, left))
        return 0
    report = poll_once(source, bucket)
    if report.stopped_early == "quota":
        return None  # today's quota is spent (or the claims ran out): the next round claims afresh
    if report.stopped_early not in ("rate_limited", "unavailable") and report.checked == 0:
        stopping.wait(min(IDLE_SECONDS, left))  # nothing may be checked yet: look again soon
    # Backed off after a 429 or 503: the wait is taken at the top of the next step.
    return report.checked


# The moment (epoch seconds on the quota's clock) the last resuming poll was scheduled for.
_resume_at = 0.0
_resume_lock = threading.Lock()


def resume_after(seconds: float, until: float) -> None:
    """Schedule a poll for when a back-off ending at `until` is over, once per back-off."""
    global _resume_at
    with _resume_lock:
        if until <= _resume_at:
            return  # a poll is already due when this back-off ends (or later)
        _resume_at = until
    poll_now.schedule(delay=max(seconds, 0.0))


@db_periodic_task(crontab(minute="*"))
def poll_due_cases() -> int:
    return poll_round()


@db_task()
def poll_now() -> int:
    """Run at worker start-up so that new cases are read at once, not at the next minute,
    and when a back-off ends (`resume_after`)."""
    return poll_round()


@db_periodic_task(crontab(minute="17"))
def remind_receipts() -> int:
    days = int(os.environ.get("CASEWATCH_RECEIPT_REMINDER_DAYS", "30") or 30)
    return remind_pending_receipts(timezone.now(), after=timedelta(days=days))
