"""Asking USCIS about a list of receipts now, within what keeps casewatch within its grant.

The check of `casewatch check` (casewatch.monitor.bulk_check.check_receipts), made the
way the workers ask: every request takes its slot from the limiter they share, counts
against the daily USCIS budget, asks the circuit breaker first and tells it the outcome
after. A list with more receipts than today's budget has left is refused before anything
is asked (`BeyondBudget`); a receipt that may not be asked about once the check runs (the
circuit is open, the budget ran out, the caller stopped it) is answered without a request
and named in `not_asked`, so that it is never passed off as something USCIS said.

The one place for these rules: the web app's bulk status check and the API's
`POST /status-checks` both call `check_within_budget`. Nothing is stored about the
receipts here; what a caller keeps is its own business.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

from django.db import DEFAULT_DB_ALIAS, connections
from django.utils import timezone

from casewatch.audit.chain import record as audit
from casewatch.config import uscis_settings
from casewatch.core.receipts import InvalidReceipt, normalize_receipt, parse_receipt
from casewatch.monitor.bulk_check import MAX_WAIT_SECONDS, CheckResult, InvalidInput, check_receipts
from casewatch.monitor.checks import FETCHERS
from casewatch.monitor.health import READABLE, circuit_allows, note_outcome
from casewatch.monitor.limiter import Grant, Quota, acquire
from casewatch.monitor.pacing import Pacer
from casewatch.monitor.tasks import NOTE_READS_EVERY, current_budget, quota
from casewatch.uscis.connect import official_client
from casewatch.uscis.source import CaseStatusSource, NotSent, Outcome, Pace, Unavailable

# Why a receipt was not asked about: today's budget is spent, the circuit breaker is open
# (USCIS cannot be read right now), or the caller stopped the check.
NOT_ASKED_REASONS = ("quota", "circuit", "stopped")
# Given to check_receipts as a Retry-After so that an item not asked is not waited for.
GIVE_UP = MAX_WAIT_SECONDS + 1

# Told as each result arrives: the result, and why it was not asked ("" when it was, or
# when the input is no receipt number).
OnResult = Callable[[CheckResult, str], None]


@dataclass(frozen=True)
class TodaysBudget:
    """The USCIS calls of the current quota day: allowed, used by anyone, and when it resets."""

    calls_per_day: int
    used_today: int
    resets_at: datetime

    @property
    def left(self) -> int:
        """Calls still allowed today; negative when the budget was lowered below the use."""
        return self.calls_per_day - self.used_today


def todays_budget() -> TodaysBudget:
    """The budget the workers share, as it stands now."""
    bucket = quota()
    return TodaysBudget(current_budget().calls_per_day, bucket.used_today(), bucket.resets_at())


def receipts_to_ask(inputs: Sequence[str]) -> list[str]:
    """The receipt numbers a check of `inputs` asks about: valid ones, each once, in order."""
    wanted: dict[str, None] = {}
    for text in inputs:
        try:
            parse_receipt(text)
        except InvalidReceipt:
            continue
        wanted.setdefault(normalize_receipt(text), None)
    return list(wanted)


class BeyondBudget(Exception):
    """More receipts to ask about than today's USCIS budget has left: nothing was asked."""

    def __init__(self, asked: int, budget: TodaysBudget) -> None:
        super().__init__(
            f"{asked} receipts to ask about, but only {max(budget.left, 0)} of today's "
            f"USCIS calls are left"
        )
        self.asked = asked
        self.budget = budget

    @property
    def left(self) -> int:
        return max(self.budget.left, 0)


def beyond_budget(inputs: Sequence[str], budget: TodaysBudget | None = None) -> BeyondBudget | None:
    """The refusal a check of `inputs` gets now (None when it may run): the up-front rule."""
    budget = budget or todays_budget()
    asked = len(receipts_to_ask(inputs))
    return BeyondBudget(asked, budget) if asked > budget.left else None


@dataclass(frozen=True)
class BudgetedResults:
    """A check's results, one per input in input order, and what was not asked."""

    results: list[CheckResult]
    not_asked: Mapping[str, str]  # receipt number -> one of NOT_ASKED_REASONS
    source: str  # "sandbox", or the USCIS client's source name

    def why_not_asked(self, result: CheckResult) -> str:
        """One of NOT_ASKED_REASONS when USCIS was not asked about `result`, else ""."""
        if isinstance(result.outcome, InvalidInput):
            return ""
        return self.not_asked.get(result.receipt_number, "")

    @property
    def asked(self) -> int:
        """How many receipts USCIS was asked about (each repeat once)."""
        numbers = {
            r.receipt_number for r in self.results if not isinstance(r.outcome, InvalidInput)
        }
        return len(numbers - set(self.not_asked))


def check_within_budget(
    inputs: Sequence[str],
    *,
    on_result: OnResult | None = None,
    stop: threading.Event | None = None,
    database: SharedConnection | None = None,
) -> BudgetedResults:
    """Check every input as the workers would ask; raises `BeyondBudget` asking nothing.

    `on_result` hears of each result as it arrives (from the check's threads); setting
    `stop` asks nothing more, and what is left is `not_asked` as "stopped". The check's
    threads borrow one database connection, `database` when the caller lends one
    (entered, from the thread that owns it), else the calling thread's own.
    """
    if database is None:
        with SharedConnection() as lent:
            return check_within_budget(inputs, on_result=on_result, stop=stop, database=lent)
    with database.use():
        refusal = beyond_budget(inputs)
    if refusal is not None:
        raise refusal
    settings = uscis_settings()
    not_asked: dict[str, str] = {}

    def arrived(result: CheckResult) -> None:
        if on_result is not None:
            valid = not isinstance(result.outcome, InvalidInput)
            on_result(result, not_asked.get(result.receipt_number, "") if valid else "")

    if not receipts_to_ask(inputs):  # no receipt among the inputs: no client, no sandbox
        results = check_receipts(inputs, _NoOne(), Pacer(None), on_result=arrived)
        return BudgetedResults(results, {}, "sandbox" if settings.uses_builtin_sandbox else "uscis")
    bucket = _SharedQuota(quota(), database)
    with official_client(settings) as client:
        source = _Budgeted(client, bucket, database, stop or threading.Event(), not_asked)
        results = check_receipts(inputs, source, Pacer(None), workers=FETCHERS, on_result=arrived)
        source.close_round()
        name = "sandbox" if settings.uses_builtin_sandbox else client.source
    return BudgetedResults(results, dict(not_asked), name)


# --- asking USCIS as the workers do ------------------------------------------------------


class SharedConnection:
    """One thread's database connection lent to a check's threads, one user at a time.

    As casewatch.monitor.checks does for a worker's round: the calls made here are
    short, and a test's transaction (or SQLite in memory) allows no other connection.
    Made and entered in the thread that owns the connection.
    """

    def __init__(self) -> None:
        self.connection = connections[DEFAULT_DB_ALIAS]
        self.lock = threading.RLock()

    def __enter__(self) -> SharedConnection:
        self.connection.inc_thread_sharing()
        return self

    def __exit__(self, *exc: object) -> None:
        self.connection.dec_thread_sharing()

    @contextmanager
    def use(self) -> Iterator[None]:
        with self.lock:
            connections[DEFAULT_DB_ALIAS] = self.connection
            yield


class _SharedQuota:
    """The workers' shared USCIS bucket, reached over the shared connection.

    Only the bucket's own calls hold the connection; the wait for a slot does not.
    """

    def __init__(self, quota: Quota, database: SharedConnection) -> None:
        self._quota = quota
        self._database = database
        self.clock = quota.clock

    def reserve(self) -> Grant:
        with self._database.use():
            return self._quota.reserve()

    def back_off(self, seconds: float | None = None) -> None:
        with self._database.use():
            self._quota.back_off(seconds)

    def used_today(self) -> int:
        with self._database.use():
            return self._quota.used_today()

    def resets_at(self) -> datetime:
        return self._quota.resets_at()

    def blocked_until(self) -> float:
        with self._database.use():
            return self._quota.blocked_until()


class _Budgeted:
    """USCIS as the workers reach it: circuit breaker first, then a slot, then the outcome noted.

    A receipt that may not be asked about (the circuit is open, today's budget is
    spent, the caller stopped) gets an answer without a request, and is remembered in
    `not_asked` so that it is not passed off as something USCIS said.
    """

    def __init__(
        self,
        source: CaseStatusSource,
        quota: _SharedQuota,
        database: SharedConnection,
        stop: threading.Event,
        not_asked: dict[str, str],
    ) -> None:
        self._source = source
        self._quota = quota
        self._database = database
        self._stop = stop
        self.not_asked = not_asked  # filled in as receipts are not asked about
        self._noting = threading.Lock()
        self._turn = threading.Lock()
        self._noted_at: datetime | None = None  # when a read was last noted
        self._unnoted: datetime | None = None  # the latest read not noted yet

    def fetch(self, receipt_number: str, *, pace: Pace | None = None) -> Outcome:
        """Ask about one receipt; each request the client sends takes its own slot.

        (`pace`, the caller's own pacing, is not needed: the shared slots space the
        requests.) The client asks for a slot right before each request it sends.
        """
        if self._stop.is_set():
            return self._skip(receipt_number, "stopped")
        with self._database.use():
            allowed = circuit_allows(timezone.now())
        if not allowed:
            return self._skip(receipt_number, "circuit")
        refused: list[str] = []

        def slot() -> bool:
            # One thread at a time waits for its slot, as a worker's round does: threads
            # waiting side by side wake late for theirs and waste them.
            with self._turn:
                if self._stop.is_set():
                    refused.append("stopped")
                elif not acquire(self._quota):
                    refused.append("quota")
            return not refused

        try:
            outcome = self._source.fetch(receipt_number, pace=slot)
        except NotSent:
            return self._skip(receipt_number, refused[-1] if refused else "stopped")
        self._note(outcome)
        if outcome.error in ("rate_limited", "unavailable"):
            self._quota.back_off(getattr(outcome, "retry_after", None))
        self.not_asked.pop(receipt_number, None)
        return outcome

    def close(self) -> None:
        self._source.close()

    def close_round(self) -> None:
        """Note the last read of the check, if it was held back."""
        self._note_unnoted()

    def _note(self, outcome: Outcome) -> None:
        """Tell the circuit breaker, as the workers do: reads in a row about once a second.

        A read after reads only moves "last successful read" on, so the latest of a run
        stands for all of it; anything else is noted at once. Fewer writes keep the
        shared connection free for the slots.
        """
        now = timezone.now()
        with self._noting:
            if outcome.error in READABLE:
                if self._noted_at is not None and now - self._noted_at < NOTE_READS_EVERY:
                    self._unnoted = now
                    return
                self._noted_at, self._unnoted = now, None
        with self._database.use():
            note_outcome(outcome.error, now, message=getattr(outcome, "message", ""))

    def _note_unnoted(self) -> None:
        with self._noting:
            last, self._unnoted = self._unnoted, None
        if last is not None:
            with self._database.use():
                note_outcome(None, last)

    def _skip(self, receipt_number: str, why: str) -> Outcome:
        self.not_asked[receipt_number] = why
        return Unavailable(f"not asked ({why})", retry_after=GIVE_UP)


class _NoOne:
    """The source of a check without a receipt among its inputs: never asked."""

    def fetch(self, receipt_number: str, *, pace: Pace | None = None) -> Outcome:
        raise NotSent(receipt_number)

    def close(self) -> None:
        pass


def audit_check(done: BudgetedResults, *, firm_id: int, actor: str, cases: int, via: str) -> None:
    """Record that a check ran and what it cost: counts only, never the receipts asked."""
    audit(
        "status_check.run",
        object_type="status_check",
        object_id=uuid.uuid4().hex,
        firm_id=firm_id,
        actor=actor,
        details={
            "inputs": len(done.results),
            "asked": done.asked,
            "not_asked": len(done.not_asked),
            "invalid": sum(1 for r in done.results if isinstance(r.outcome, InvalidInput)),
            "cases": cases,
            "via": via,
        },
    )
