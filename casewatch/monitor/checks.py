"""Check-and-record: the one function every poller, the simulator and tests call.

For now the cadence is fixed (the adaptive scheduler replaces `next_check_after`):
every active case is asked about once per interval, spread so the whole caseload
fits the daily USCIS budget, final statuses less often. Due cases are claimed
with a lease (their next check pushed past the lease) so that two workers never
ask about the same case at once, and a crashed worker's claims come due again.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from casewatch.cases.history import Recorded, record_outcome
from casewatch.cases.models import Case
from casewatch.core.statuses import default_catalog
from casewatch.monitor.pacing import Pacer
from casewatch.uscis.source import CaseStatusSource, Found, RateLimited, Unavailable

LEASE = timedelta(minutes=10)
FAULT_RETRY = timedelta(minutes=30)
FINAL_STATUS_FACTOR = 7


@dataclass(frozen=True)
class Cadence:
    """How often to ask: at least `minimum` apart, and within `daily_budget` calls a day."""

    minimum: timedelta
    daily_budget: int

    @classmethod
    def from_environment(cls) -> Cadence:
        minimum = float(os.environ.get("CASEWATCH_CHECK_INTERVAL_SECONDS", "3600") or 3600)
        budget = int(os.environ.get("CASEWATCH_USCIS_DAILY_BUDGET", "10000") or 10000)
        return cls(timedelta(seconds=max(minimum, 1.0)), max(budget, 1))

    def interval(self, active_cases: int) -> timedelta:
        spread = timedelta(days=1) * active_cases / self.daily_budget
        return max(self.minimum, spread)


def next_check_after(
    case: Case, recorded: Recorded, now: datetime, interval: timedelta
) -> datetime:
    outcome = recorded.observation.outcome
    if outcome != "found":
        return now + max(FAULT_RETRY, interval / 4) if outcome != "not_found" else now + interval
    status = default_catalog().statuses.get(case.status)
    if status is not None and status.final:
        return now + interval * FINAL_STATUS_FACTOR
    return now + interval


def claim_due(now: datetime, limit: int) -> list[Case]:
    """Take up to `limit` due cases for this worker, pushing their next check past a lease."""
    with transaction.atomic():
        due = (
            Case.objects.filter(receipt_number__isnull=False)
            .filter(Q(next_check_at__lte=now) | Q(next_check_at__isnull=True))
            .order_by(F("next_check_at").asc(nulls_first=True), "pk")
            .values_list("pk", flat=True)[:limit]
        )
        ids = list(due.select_for_update(skip_locked=True)) if _locks_rows() else list(due)
        Case.objects.filter(pk__in=ids).update(next_check_at=now + LEASE)
    return list(Case.objects.filter(pk__in=ids).order_by("pk"))


def _locks_rows() -> bool:
    from django.db import connection

    return bool(connection.features.has_select_for_update_skip_locked)


@dataclass
class PollReport:
    checked: int = 0
    changes: int = 0
    faults: int = 0
    stopped_early: str = ""
    events: list[int] = field(default_factory=list)


def check_case(case: Case, source: CaseStatusSource, *, now: datetime | None = None) -> Recorded:
    """Ask USCIS about one case and record what it said."""
    assert case.receipt_number is not None
    outcome = source.fetch(case.receipt_number)
    return record_outcome(case, outcome, observed_at=now or timezone.now())


def poll_due(
    source: CaseStatusSource,
    *,
    pacer: Pacer,
    cadence: Cadence | None = None,
    limit: int = 200,
    now: datetime | None = None,
) -> PollReport:
    """Check the cases that are due, at the paced rate; a 429 or 503 ends the round."""
    cadence = cadence or Cadence.from_environment()
    start = now or timezone.now()
    report = PollReport()
    active = Case.objects.filter(receipt_number__isnull=False, archived_at__isnull=True)
    interval = cadence.interval(active.count())
    for case in claim_due(start, limit):
        pacer.wait()
        checked_at = now or timezone.now()
        assert case.receipt_number is not None
        outcome = source.fetch(case.receipt_number)
        recorded = record_outcome(case, outcome, observed_at=checked_at)
        report.checked += 1
        if recorded.event is not None:
            report.changes += 1
            report.events.append(recorded.event.pk)
        if not isinstance(outcome, Found):
            report.faults += 1
        case.refresh_from_db(fields=["status", "category"])
        when = next_check_after(case, recorded, checked_at, interval)
        Case.objects.filter(pk=case.pk).update(next_check_at=when)
        if isinstance(outcome, RateLimited | Unavailable):
            wait = outcome.retry_after or 60.0
            pacer.pause(wait)
            _release_unchecked(start, after=case.pk)
            report.stopped_early = outcome.error
            break
    return report


def _release_unchecked(now: datetime, *, after: int) -> None:
    """Claims this round will not use come due again at once, not after the lease."""
    Case.objects.filter(pk__gt=after, next_check_at=now + LEASE).update(next_check_at=now)
