"""Huey tasks: thin wrappers that call the monitor's plain functions.

A worker process keeps one USCIS client (and its token) open for its lifetime.
"""

from __future__ import annotations

import atexit
import os
import time
from contextlib import ExitStack
from datetime import timedelta

from django.utils import timezone
from huey import crontab
from huey.contrib.djhuey import db_periodic_task, db_task, lock_task

from casewatch.cases.reminders import remind_pending_receipts
from casewatch.config import uscis_settings
from casewatch.monitor.checks import poll_due
from casewatch.monitor.pacing import Pacer
from casewatch.uscis.connect import official_client
from casewatch.uscis.source import CaseStatusSource

ROUND_SECONDS = 50.0
BATCH = 100

_open = ExitStack()
atexit.register(_open.close)
_source: CaseStatusSource | None = None
_pacer: Pacer | None = None


def _reader() -> tuple[CaseStatusSource, Pacer]:
    global _source, _pacer
    if _source is None or _pacer is None:
        settings = uscis_settings()
        _source = _open.enter_context(official_client(settings))
        _pacer = Pacer(settings.rate_per_second)
    return _source, _pacer


def poll_round() -> int:
    """Check due cases in batches until none is due or the minute is nearly over."""
    source, pacer = _reader()
    started = time.monotonic()
    checked = 0
    while time.monotonic() - started < ROUND_SECONDS:
        report = poll_due(source, pacer=pacer, limit=BATCH)
        checked += report.checked
        if report.checked < BATCH or report.stopped_early:
            break
    return checked


@db_periodic_task(crontab(minute="*"))
@lock_task("poll-due-cases")
def poll_due_cases() -> int:
    return poll_round()


@db_task()
def poll_now() -> int:
    """Run at worker start-up so that new cases are read at once, not at the next minute."""
    return poll_round()


@db_periodic_task(crontab(minute="17"))
def remind_receipts() -> int:
    days = int(os.environ.get("CASEWATCH_RECEIPT_REMINDER_DAYS", "30") or 30)
    return remind_pending_receipts(timezone.now(), after=timedelta(days=days))
