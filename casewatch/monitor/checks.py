"""Check-and-record: the one function every worker, the simulator and tests call.

A worker claims cases in batches with a lease (`claimed_until`), so two workers
never ask about the same case at once and a killed worker's claims simply
expire. Each check records what USCIS said (cases.history), keeps what the
answer teaches about how long statuses last, and asks the policy when to look
again. Faults never change a status and never push a case's check far away.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cache

from django.db import connection, transaction
from django.db.models import F, Q

from casewatch.cases.history import Recorded, record_outcome, uscis_moment
from casewatch.cases.models import Case, StatusEvent
from casewatch.core.history_text import classify_history
from casewatch.core.statuses import default_catalog
from casewatch.monitor.models import DwellSample
from casewatch.monitor.schedule import CaseState, Policy, calls_to_make
from casewatch.uscis.source import CaseStatusSource, Found, NotFound, Outcome

LEASE = timedelta(minutes=10)
# Not found: new receipts often take days to appear at USCIS. Invalid: rarely fixes itself.
NOT_FOUND_RETRY = timedelta(hours=12)
INVALID_RETRY = timedelta(days=7)
FAULT_RETRY = timedelta(minutes=15)
# Two history steps on the same date lasted somewhere within that day; not zero.
SAME_DAY = 0.25


@cache
def final_statuses() -> tuple[str, ...]:
    return tuple(key for key, status in default_catalog().statuses.items() if status.final)


def watched_cases() -> Q:
    """Cases with a receipt that are active, or archived but not yet in a final state."""
    return Q(receipt_number__isnull=False) & (
        Q(archived_at__isnull=True) | ~Q(status__in=final_statuses())
    )


def _unclaimed(now: datetime) -> Q:
    return Q(claimed_until__isnull=True) | Q(claimed_until__lte=now)


def count_due(now: datetime) -> int:
    return (
        Case.objects.filter(watched_cases())
        .filter(_unclaimed(now))
        .filter(Q(next_check_at__isnull=True) | Q(next_check_at__lte=now))
        .count()
    )


def claim(
    now: datetime,
    limit: int,
    *,
    worker: str = "",
    lease: timedelta = LEASE,
    rested: timedelta = timedelta(0),
) -> list[Case]:
    """Take the `limit` cases next in line (never checked first, then by next check).

    Cases checked less than `rested` ago are left alone even when the budget
    would allow checking them early.
    """
    if limit <= 0:
        return []
    with transaction.atomic():
        line = (
            Case.objects.filter(watched_cases())
            .filter(_unclaimed(now))
            .filter(Q(last_checked_at__isnull=True) | Q(last_checked_at__lte=now - rested))
            .order_by(F("next_check_at").asc(nulls_first=True), "pk")
            .values_list("pk", flat=True)[:limit]
        )
        if connection.features.has_select_for_update_skip_locked:
            ids = list(line.select_for_update(skip_locked=True, of=("self",)))
        else:
            ids = list(line)  # SQLite: IMMEDIATE transactions already serialize writers
        Case.objects.filter(pk__in=ids).update(claimed_until=now + lease, claimed_by=worker[:64])
    return list(Case.objects.filter(pk__in=ids).order_by(F("next_check_at").asc(nulls_first=True)))


def release(cases: Iterable[Case]) -> None:
    """Give back claims this worker will not use, so they come due at once."""
    Case.objects.filter(pk__in=[c.pk for c in cases]).update(claimed_until=None, claimed_by="")


def state_of(case: Case) -> CaseState:
    return CaseState(
        form_type=case.form_type,
        status=case.status,
        status_since=case.uscis_status_since or case.status_since,
        scheduled_at=case.next_check_at,
        last_checked_at=case.last_checked_at,
    )


def check_and_record(
    case: Case, source: CaseStatusSource, policy: Policy, now: datetime
) -> Recorded:
    """Ask USCIS about one claimed case, record the answer, and schedule the next check."""
    assert case.receipt_number is not None
    outcome = source.fetch(case.receipt_number)
    return record_and_schedule(case, outcome, policy, now)


def record_and_schedule(case: Case, outcome: Outcome, policy: Policy, now: datetime) -> Recorded:
    """Record one answer, keep what it teaches, and set the case's next check."""
    before = state_of(case)
    recorded = record_outcome(case, outcome, observed_at=now)
    after = recorded.case
    if isinstance(outcome, Found):
        keep_stays(after, before, recorded)
        when, rate = policy.next_check(state_of(after), now)
    else:
        when, rate = _after_fault(after, outcome, now), after.check_rate
    Case.objects.filter(pk=case.pk).update(
        next_check_at=when, check_rate=rate, claimed_until=None, claimed_by=""
    )
    after.next_check_at, after.check_rate = when, rate
    return recorded


def _after_fault(case: Case, outcome: Outcome, now: datetime) -> datetime:
    if isinstance(outcome, NotFound):
        return now + NOT_FOUND_RETRY
    if outcome.error == "invalid_receipt":
        return now + INVALID_RETRY
    # USCIS could not be read: the case stays due, the circuit breaker paces retries.
    scheduled = case.next_check_at or now
    return min(scheduled, now + FAULT_RETRY)


def keep_stays(case: Case, before: CaseState, recorded: Recorded) -> None:
    """Store each stay this answer reveals the end of: the scheduler's evidence."""
    events = recorded.events
    if not events:
        return
    samples: list[DwellSample] = []
    first = events[0]
    if first.initial:
        samples += _stays_from_history(case, recorded)
    elif before.status_since is not None and before.status:
        samples.append(_sample(case, before.status, before.status_since, first))
    for earlier, later in itertools.pairwise(events):
        if earlier.uscis_date is not None:
            samples.append(_sample(case, earlier.status, earlier.uscis_date, later))
    DwellSample.objects.bulk_create(samples, ignore_conflicts=True)


def _sample(case: Case, status: str, began: datetime, ended_by: StatusEvent) -> DwellSample:
    ended = ended_by.uscis_date or ended_by.observed_at
    days = (ended - began) / timedelta(days=1)
    if ended_by.recovered:
        days = max(days, SAME_DAY)  # a recovered step is dated to the day only
    return DwellSample(
        case=case,
        form_type=case.form_type,
        status=status,
        next_status=ended_by.status,
        next_urgency=ended_by.urgency,
        started_at=began,
        days=max(days, 0.0),
    )


def _stays_from_history(case: Case, recorded: Recorded) -> list[DwellSample]:
    """Completed stays before tracking began, from the dates in `hist_case_status`."""
    steps = []
    for entry in recorded.observation.history or []:
        on = entry.get("date")
        if not on:
            continue
        meaning = classify_history(entry.get("text_en", ""), entry.get("text_es", ""))
        if meaning.is_unknown:
            continue
        steps.append((history_moment(on), meaning.status, meaning.urgency))
    steps.sort(key=lambda step: step[0])
    samples = []
    for (began, status, _), (ended, next_status, urgency) in itertools.pairwise(steps):
        if next_status == status:
            continue
        samples.append(
            DwellSample(
                case=case,
                form_type=case.form_type,
                status=status,
                next_status=next_status,
                next_urgency=urgency,
                started_at=began,
                days=max((ended - began) / timedelta(days=1), SAME_DAY),
            )
        )
    return samples


def history_moment(on: str) -> datetime:
    """A history date (no time given) read as midday at USCIS."""
    moment = uscis_moment(datetime.fromisoformat(on[:10]).replace(hour=12))
    assert moment is not None
    return moment


@dataclass
class PollReport:
    checked: int = 0
    changes: int = 0
    faults: int = 0
    stopped_early: str = ""
    events: list[int] = field(default_factory=list)


def poll_due(
    source: CaseStatusSource,
    *,
    policy: Policy,
    now: Callable[[], datetime],
    may_send: Callable[[], bool],
    used_today: Callable[[], int],
    day_start: Callable[[datetime], datetime],
    on_outcome: Callable[[Outcome, datetime], None] = lambda outcome, at: None,
    back_off: Callable[[float], None] = lambda seconds: None,
    stopping: Callable[[], bool] = lambda: False,
    limit: int = 200,
    worker: str = "",
) -> PollReport:
    """One round: claim what the budget allows now, check it, record it.

    `may_send` blocks until the shared limiter gives a slot (False: today's
    quota is spent). A 429 or 503 backs every worker off and ends the round.
    """
    start = now()
    due_calls, early_calls = calls_to_make(
        due=count_due(start),
        used_today=used_today(),
        budget=policy.budget.calls_per_day,
        pace=policy.pace(start, day_start(start)),
        early_fill=policy.early_fill,
    )
    claimed = claim(
        start, min(due_calls + early_calls, limit), worker=worker, rested=policy.budget.min_interval
    )
    report = PollReport()
    for index, case in enumerate(claimed):
        if stopping():
            release(claimed[index:])
            report.stopped_early = "stopping"
            break
        if not may_send():
            release(claimed[index:])
            report.stopped_early = "quota"
            break
        checked_at = now()
        assert case.receipt_number is not None
        outcome = source.fetch(case.receipt_number)
        on_outcome(outcome, checked_at)
        recorded = record_and_schedule(case, outcome, policy, checked_at)
        report.checked += 1
        report.changes += len(recorded.events)
        report.events += [event.pk for event in recorded.events]
        if not isinstance(outcome, Found):
            report.faults += 1
        if outcome.error in ("rate_limited", "unavailable"):
            back_off(getattr(outcome, "retry_after", None) or 30.0)
            release(claimed[index + 1 :])
            report.stopped_early = outcome.error
            break
    return report
