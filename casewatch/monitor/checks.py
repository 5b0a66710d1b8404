"""Check-and-record: the one function every worker, the simulator and tests call.

A worker claims cases in batches with a lease (`claimed_until`), so two workers
never ask about the same case at once and a killed worker's claims simply
expire. Each check records what USCIS said (cases.history), keeps what the
answer teaches about how long statuses last, and asks the policy when to look
again. Faults never change a status and never push a case's check far away.
"""

from __future__ import annotations

import itertools
import threading
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cache

from django.db import DEFAULT_DB_ALIAS, connection, connections, transaction
from django.db.models import F, Q

from casewatch.bulk import insert_instances
from casewatch.cases.history import (
    Answer,
    Recorded,
    prepare_records,
    save_records,
    uscis_moment,
)
from casewatch.cases.models import Case, StatusEvent
from casewatch.config import claim_lease_seconds
from casewatch.core.history_text import classify_history
from casewatch.core.statuses import default_catalog
from casewatch.monitor.models import DwellSample
from casewatch.monitor.schedule import CaseState, Policy, calls_to_make
from casewatch.uscis.source import CaseStatusSource, Found, NotFound, NotSent, Outcome

# The default lease; CASEWATCH_CLAIM_LEASE_SECONDS sets the one workers use.
LEASE = timedelta(minutes=10)
# Not found: new receipts often take days to appear at USCIS. Invalid: rarely fixes itself.
NOT_FOUND_RETRY = timedelta(hours=12)
INVALID_RETRY = timedelta(days=7)
FAULT_RETRY = timedelta(minutes=15)
# Two history steps on the same date lasted somewhere within that day; not zero.
SAME_DAY = 0.25
# Requests in flight at once: enough to hide the network's latency, few enough to stop
# soon after a 429 (the answers to requests already sent are kept).
FETCHERS = 4
# Answers are recorded this many at a time, or once the oldest waited this long.
RECORD_EVERY = 50
RECORD_WITHIN = timedelta(seconds=2)
# How long recording waits for the requests in flight (seconds): ample for one to be sent.
SEND_GRACE = 0.01


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
    lease: timedelta | None = None,
    rested: timedelta = timedelta(0),
) -> list[Case]:
    """Take the `limit` cases next in line (never checked first, then by next check).

    Cases checked less than `rested` ago are left alone even when the budget
    would allow checking them early. The claims last `lease` (default: the
    CASEWATCH_CLAIM_LEASE_SECONDS setting), until `now + lease`.
    """
    if limit <= 0:
        return []
    if lease is None:
        lease = timedelta(seconds=claim_lease_seconds())
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
    """Give back claims this worker will not use, so they come due at once.

    Only a claim still as `claim` made it is given back: one that ran out and was
    taken by another worker meanwhile is theirs (the copies hold the claim as made).
    """
    held: dict[tuple[str, datetime | None], list[int]] = {}
    for case in cases:
        held.setdefault((case.claimed_by, case.claimed_until), []).append(case.pk)
    for (by, until), ids in held.items():
        Case.objects.filter(pk__in=ids, claimed_by=by, claimed_until=until).update(
            claimed_until=None, claimed_by=""
        )


def state_of(case: Case) -> CaseState:
    return CaseState(
        form_type=case.form_type,
        status=case.status,
        status_since=case.uscis_status_since or case.status_since,
        tracked_since=case.status_since,
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
    (recorded,) = record_and_schedule_many([Answer(case, outcome, now)], policy)
    return recorded


# The scheduling columns `record_and_schedule_many` writes beside what recording sets.
SCHEDULE_FIELDS = ("next_check_at", "check_rate", "claimed_until", "claimed_by")


def record_and_schedule_many(answers: Sequence[Answer], policy: Policy) -> list[Recorded]:
    """`record_and_schedule` for a batch, in one transaction: the same rows, far fewer statements.

    The policy is asked about each case in the batch's order, as one by one. A
    crash before the commit keeps nothing; the claims run out and the cases are
    checked again.
    """
    if not answers:
        return []
    with transaction.atomic():
        recorded = prepare_records(answers)
        samples: list[DwellSample] = []
        for answer, kept in zip(answers, recorded, strict=True):
            after, now = kept.case, answer.observed_at
            if isinstance(answer.outcome, Found):
                samples += revealed_stays(after, state_of(answer.case), kept)
                when, rate = policy.next_check(state_of(after), now)
            else:
                when, rate = _after_fault(after, answer.outcome, now), after.check_rate
            after.next_check_at, after.check_rate = when, rate
            after.claimed_until, after.claimed_by = None, ""
        insert_instances(samples, ignore_conflicts=True)
        save_records(recorded, also=SCHEDULE_FIELDS)
    return recorded


def _after_fault(case: Case, outcome: Outcome, now: datetime) -> datetime:
    if isinstance(outcome, NotFound):
        return now + NOT_FOUND_RETRY
    if outcome.error == "invalid_receipt":
        return now + INVALID_RETRY
    # USCIS could not be read: the case stays due, the circuit breaker paces retries.
    scheduled = case.next_check_at or now
    return min(scheduled, now + FAULT_RETRY)


def revealed_stays(case: Case, before: CaseState, recorded: Recorded) -> list[DwellSample]:
    """Each stay this answer reveals the end of (the scheduler's evidence), unsaved."""
    events = recorded.events
    if not events:
        return []
    samples: list[DwellSample] = []
    first = events[0]
    if first.initial:
        samples += _stays_from_history(case, recorded)
    elif before.status_since is not None and before.status:
        samples.append(
            _sample(case, before.status, before.status_since, first, seen_from=before.tracked_since)
        )
    for earlier, later in itertools.pairwise(events):
        if earlier.uscis_date is not None:
            samples.append(_sample(case, earlier.status, earlier.uscis_date, later))
    return samples


def _sample(
    case: Case,
    status: str,
    began: datetime,
    ended_by: StatusEvent,
    *,
    seen_from: datetime | None = None,
) -> DwellSample:
    """One completed stay; `seen_from` is when tracking first saw the case in it."""
    ended = ended_by.uscis_date or ended_by.observed_at
    days = (ended - began) / timedelta(days=1)
    unseen = (seen_from - began) / timedelta(days=1) if seen_from is not None else 0.0
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
        unseen_days=min(max(unseen, 0.0), max(days, 0.0)),
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
    fetchers: int = FETCHERS,
) -> PollReport:
    """One round: claim what the budget allows now, check it, record it.

    Each request goes out from a pool thread the moment that thread has its
    slot: `may_send` blocks until the shared limiter gives one (False: none may
    be taken, as when today's quota is spent), so nothing can delay a request
    between the limiter's lateness check and its sending. Slots are taken one
    request at a time in the claimed order, a retry with a fresh token taking
    its own; `may_send` runs on this thread's database connection, never while
    this thread uses it. Up to `fetchers` requests are in flight at once (the
    round's first goes alone). Answers are taken in the order asked, noted
    (`on_outcome`) and recorded a few dozen at a time in one transaction. A 429
    or 503 backs every worker off and ends the round: the answers to requests
    already sent are still kept, unsent claims are given back. Should the round
    fail midway, what was heard but not yet recorded is asked again when the
    claims run out.
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
    if not claimed:
        return report
    in_flight: deque[_Asked] = deque()
    heard: list[Answer] = []  # Answers taken, in the claimed order, not yet recorded.
    unsent: list[Case] = []  # Claims dispatched whose request never went out.
    fetchers = max(fetchers, 1)

    def hear(most_in_flight: int) -> None:
        """Take the answers that are in, in the order asked; wait till `most_in_flight` are left."""
        while in_flight and (len(in_flight) > most_in_flight or in_flight[0].outcome.done()):
            asked = in_flight.popleft()
            sent = asked.outcome.result()
            if sent is None:
                unsent.append(asked.case)
                report.stopped_early = report.stopped_early or sender.halted
                continue
            at, outcome = sent
            with sender.database:
                on_outcome(outcome, at)
                heard.append(Answer(asked.case, outcome, at))
                if outcome.error in ("rate_limited", "unavailable") and not report.stopped_early:
                    back_off(getattr(outcome, "retry_after", None) or 30.0)
                    report.stopped_early = outcome.error
                    sender.halt(outcome.error)

    def keep() -> None:
        if not heard:
            return
        with sender.database:
            sender.let_requests_leave()
            kept = record_and_schedule_many(heard, policy)
        for recorded in kept:
            report.checked += 1
            report.changes += len(recorded.events)
            report.events += [event.pk for event in recorded.events]
            if recorded.observation.outcome != "found":
                report.faults += 1
        heard.clear()

    dispatched = 0
    with _Sender(source, may_send, now, fetchers) as sender:
        for case in claimed:
            if dispatched == 1:
                # The round's first request goes alone and is recorded before the next is
                # sent, as one by one: it may have met a 429 or an outage that no further
                # request should run into.
                hear(0)
                keep()
            else:
                hear(fetchers - 1)
            if report.stopped_early:
                break
            if heard and (
                len(heard) >= RECORD_EVERY or now() - heard[0].observed_at >= RECORD_WITHIN
            ):
                # Recording holds the interpreter and the database for a while: let the
                # requests in flight leave (and usually finish) first.
                wait([asked.outcome for asked in in_flight], timeout=SEND_GRACE)
                hear(len(in_flight))
                keep()
            if stopping():
                report.stopped_early = "stopping"
                break
            in_flight.append(_Asked(case, sender.ask(case)))
            dispatched += 1
        if report.stopped_early:
            sender.halt(report.stopped_early)
        hear(0)
    keep()
    release(unsent + claimed[dispatched:])
    return report


@dataclass(frozen=True)
class _Asked:
    """A claimed case handed to a pool thread, and what came of it: when it was asked
    (its observation's time) and the answer, or None when no request went out."""

    case: Case
    outcome: Future[tuple[datetime, Outcome] | None]


class _Sender:
    """The pool threads that send a round's requests, each the moment its slot is taken.

    Slots are taken in turn (tickets in the order asked), so requests leave in the
    claimed order and a clock that only `may_send` moves (the simulator's, the
    tests') moves for one request at a time. A thread takes its slot on the round's
    database connection (the shared bucket may be a row), under `database`, which
    the round's own thread holds whenever it uses that connection: one connection,
    one user at a time, as SQLite needs and a test's transaction allows.
    """

    def __init__(
        self,
        source: CaseStatusSource,
        may_send: Callable[[], bool],
        now: Callable[[], datetime],
        fetchers: int,
    ) -> None:
        self._source = source
        self._may_send = may_send
        self._now = now
        self._pool = ThreadPoolExecutor(max_workers=fetchers, thread_name_prefix="uscis")
        self._turns = threading.Condition()
        self._issued = 0  # tickets handed out
        self._serving = 0  # the ticket whose turn it is
        self.halted = ""  # why no further request may go out, once none may
        self.database = threading.Lock()
        self._connection = connections[DEFAULT_DB_ALIAS]
        self._sending = 0  # requests given a slot whose answer is not in yet

    def __enter__(self) -> _Sender:
        self._connection.inc_thread_sharing()
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is not None:
            self.halt("stopping")
        try:
            self._pool.shutdown(wait=True)
        finally:
            self._connection.dec_thread_sharing()

    def ask(self, case: Case) -> Future[tuple[datetime, Outcome] | None]:
        """Send a request about `case` from a pool thread as soon as its turn and slot come."""
        return self._pool.submit(self._send, self._ticket(), case)

    def let_requests_leave(self) -> None:
        """Wait (holding `database`, so that no slot is given meanwhile) until the requests
        given a slot are answered, or SEND_GRACE passed: recording holds the interpreter,
        and a request it delayed would reach USCIS late for its slot."""
        with self._turns:
            self._turns.wait_for(lambda: self._sending == 0, timeout=SEND_GRACE)

    def halt(self, reason: str) -> None:
        """No request that has not yet taken its slot goes out."""
        with self._turns:
            self.halted = self.halted or reason

    def _send(self, ticket: int, case: Case) -> tuple[datetime, Outcome] | None:
        taken: list[datetime] = []

        def pace() -> bool:
            """The source's request is about to go out: its slot (a retry takes a new turn)."""
            moment = self._slot(ticket if not taken else self._ticket())
            if moment is None:
                return False
            taken.append(moment)
            return True

        assert case.receipt_number is not None
        try:
            outcome = self._source.fetch(case.receipt_number, pace=pace)
        except NotSent:
            return None
        finally:
            if not taken:
                self._pass(ticket)  # no request took this turn (refused, or no token)
            with self._turns:
                self._sending -= len(taken)
                self._turns.notify_all()
        if outcome.error in ("rate_limited", "unavailable"):
            self.halt(outcome.error)  # the round's thread backs everyone off when it hears it
        return (taken[0] if taken else self._now()), outcome

    def _ticket(self) -> int:
        with self._turns:
            self._issued += 1
            return self._issued - 1

    def _slot(self, ticket: int) -> datetime | None:
        """Wait for this ticket's turn, then for a slot; the moment it came, or None."""
        with self._turns:
            self._turns.wait_for(lambda: self._serving == ticket)
        granted = False
        try:
            if self.halted:
                return None
            connections[DEFAULT_DB_ALIAS] = self._connection
            with self.database:
                allowed = self._may_send()
            if not allowed:
                self.halt("quota")
                return None
            granted = True
            return self._now()
        finally:
            with self._turns:
                self._serving += 1
                self._sending += granted
                self._turns.notify_all()

    def _pass(self, ticket: int) -> None:
        """Let a ticket's turn go by unused, so that the tickets after it are served."""
        with self._turns:
            self._turns.wait_for(lambda: self._serving >= ticket)
            if self._serving == ticket:
                self._serving += 1
                self._turns.notify_all()
