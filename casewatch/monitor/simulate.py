"""Replaying a status trace in virtual time to measure how soon changes are noticed.

The simulation drives the worker's own claim and check-and-record functions
against the sandbox in trace mode (over its WSGI interface, in the official
wire format), in the current database (the CLI gives each run a throwaway
one). Time is virtual: nothing sleeps; the clock jumps to the next moment
something is due. It never spends more than the budget per UTC day nor calls
faster than the rate. The measure is trace-format.md's; the tracker never
reads the trace, only the sandbox's answers.
"""

from __future__ import annotations

import heapq
import math
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from casewatch.accounts.firms import default_firm
from casewatch.cases.models import Case
from casewatch.core.clock import ManualClock
from casewatch.core.statuses import classify
from casewatch.monitor.checks import record_and_schedule, state_of, watched_cases
from casewatch.monitor.freshness import estimate_delay
from casewatch.monitor.schedule import (
    DAY,
    AdaptivePolicy,
    Budget,
    Policy,
    RoundRobinPolicy,
    calls_to_make,
)
from casewatch.uscis.client import OfficialClient
from casewatch.uscis.connect import SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET
from casewatch.uscis.sandbox.app import SandboxApp
from casewatch.uscis.sandbox.world import SandboxCase, TraceWorld

REFRESH_EVERY = timedelta(hours=6)
SCAN_LIMIT = 1000
# The sandbox is called in-process through its WSGI interface; this host is never resolved.
SIMULATED_SANDBOX = "http://sandbox.invalid"


@dataclass
class Change:
    receipt_number: str
    at: datetime
    title: str
    action: bool


@dataclass
class CallLog:
    """Every call made, and for each receipt the moments of its successful reads."""

    calls: int = 0
    per_day: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    reads: dict[str, list[datetime]] = field(default_factory=lambda: defaultdict(list))


def window_of(
    world: TraceWorld, start: datetime | None, end: datetime | None
) -> tuple[datetime, datetime]:
    assert world.trace_window is not None
    return start or world.trace_window[0], end or world.trace_window[1]


def changes_of(cases: dict[str, SandboxCase]) -> list[Change]:
    """Every row that is not a receipt's first: the changes the tracker should notice."""
    found = []
    for receipt, case in cases.items():
        for step in case.steps[1:]:
            action = classify(step.title).urgency == "action"
            found.append(Change(receipt, step.at, step.title, action))
    return found


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    rank = max(math.ceil(share * len(ordered)) - 1, 0)
    return ordered[rank]


def _summary(hours: list[float]) -> dict[str, float | None]:
    if not hours:
        return {"mean": None, "p50": None, "p95": None, "max": None}
    return {
        "mean": round(sum(hours) / len(hours), 3),
        "p50": round(_percentile(hours, 0.50), 3),
        "p95": round(_percentile(hours, 0.95), 3),
        "max": round(max(hours), 3),
    }


def score(
    changes: list[Change], log: CallLog, start: datetime, end: datetime, warmup: timedelta
) -> dict[str, Any]:
    """trace-format.md's measure: delay to the first successful read at or after each change."""
    scored = [c for c in changes if start + warmup <= c.at < end]
    delays: list[float] = []
    action_delays: list[float] = []
    detected = 0
    for change in scored:
        reads = log.reads.get(change.receipt_number, [])
        index = bisect_left(reads, change.at)
        if index < len(reads) and reads[index] < end:
            detected += 1
            hours = (reads[index] - change.at) / timedelta(hours=1)
        else:
            hours = (end - change.at) / timedelta(hours=1)
        delays.append(hours)
        if change.action:
            action_delays.append(hours)
    return {
        "changes": len(scored),
        "detected": detected,
        "missed": len(scored) - detected,
        "delay_hours": _summary(delays),
        "action_delay_hours": {"count": len(action_delays), **_summary(action_delays)},
    }


class RecordingSource:
    """The official client, noting every call and each successful read in virtual time."""

    def __init__(self, client: OfficialClient, clock: ManualClock, log: CallLog) -> None:
        self.client, self.clock, self.log = client, clock, log

    def fetch(self, receipt_number: str) -> Any:
        outcome = self.client.fetch(receipt_number)
        now = self.clock.now()
        self.log.calls += 1
        self.log.per_day[now.date().isoformat()] += 1
        if outcome.error is None:
            self.log.reads[receipt_number].append(now)
        return outcome

    def close(self) -> None:
        self.client.close()


def import_trace_cases(world: TraceWorld) -> int:
    """Every receipt in trace order, as a firm would import it: receipt and form only."""
    firm = default_firm()
    Case.objects.bulk_create(
        [
            Case(firm=firm, receipt_number=receipt, form_type=case.form_type)
            for receipt, case in world.cases.items()
        ],
        batch_size=1000,
    )
    return len(world.cases)


def _caseload() -> list[Any]:
    return [state_of(case) for case in Case.objects.filter(watched_cases())]


def simulate(
    world: TraceWorld,
    *,
    budget_per_day: int,
    rate: float = 10.0,
    policy_name: str = "adaptive",
    warmup_days: float = 7.0,
    start: datetime | None = None,
    end: datetime | None = None,
    on_check: Callable[[datetime], None] | None = None,
) -> dict[str, Any]:
    """Run the whole window and return cli.md's `simulate` object (plus the model's estimate)."""
    window_start, window_end = window_of(world, start, end)
    clock = ManualClock(window_start)
    cases = import_trace_cases(world)
    budget = Budget(calls_per_day=budget_per_day, rate_per_second=rate)
    spacing = timedelta(seconds=1.0 / rate)
    policy: Policy
    if policy_name == "round-robin":
        rota = RoundRobinPolicy(budget, cases)
        for index, pk in enumerate(Case.objects.order_by("pk").values_list("pk", flat=True)):
            Case.objects.filter(pk=pk).update(
                next_check_at=rota.first_check(index, cases, window_start)
            )
        policy = rota
    else:
        policy = AdaptivePolicy(budget)
    log = CallLog()
    app = SandboxApp(world, clock)
    client = OfficialClient(
        base_url=SIMULATED_SANDBOX,
        token_url=f"{SIMULATED_SANDBOX}/oauth/accesstoken",
        client_id=SANDBOX_CLIENT_ID,
        client_secret=SANDBOX_CLIENT_SECRET,
        transport=httpx.WSGITransport(app=app),
    )
    source = RecordingSource(client, clock, log)
    warmup_end = window_start + timedelta(days=warmup_days)
    line = Line.from_database()
    last_checked: dict[int, datetime] = {}

    def rested(pk: int) -> bool:
        last = last_checked.get(pk)
        return last is None or now - last >= budget.min_interval

    estimate: dict[str, Any] | None = None
    try:
        now = window_start
        refreshed: datetime | None = None
        while now < window_end:
            if refreshed is None or now - refreshed >= REFRESH_EVERY:
                policy.refresh(now, _caseload())
                refreshed = now
            day_start = datetime.combine(now.date(), datetime.min.time(), tzinfo=UTC)
            used = log.per_day[now.date().isoformat()]
            due = line.due(now, limit=budget_per_day - used)
            due_calls, early_calls = calls_to_make(
                due=len(due),
                used_today=used,
                budget=budget_per_day,
                pace=policy.pace(now, day_start),
                early_fill=policy.early_fill,
            )
            line.give_back(due[due_calls:])
            batch = due[:due_calls] + line.next(early_calls, rested)
            if not batch:
                now = _next_moment(line, policy, now, day_start, used, budget_per_day)
                continue
            for _, pk in batch:
                clock.set(now)
                case = Case.objects.get(pk=pk)
                assert case.receipt_number is not None
                outcome = source.fetch(case.receipt_number)
                recorded = record_and_schedule(case, outcome, policy, now)
                line.put(recorded.case.next_check_at, pk)
                last_checked[pk] = now
                if on_check is not None:
                    on_check(now)
                now += spacing
        if isinstance(policy, AdaptivePolicy):
            # What `casewatch status` would state at the end, from all the run observed.
            policy.refresh(window_end, _caseload())
            estimate = estimate_delay(policy, _caseload(), window_end)
    finally:
        source.close()
    result: dict[str, Any] = {
        "policy": policy.name,
        "cases": cases,
        "days": round((window_end - window_start) / DAY, 3),
        "budget_per_day": budget_per_day,
        "api_calls": log.calls,
    }
    result.update(
        score(changes_of(world.cases), log, window_start, window_end, warmup_end - window_start)
    )
    result["max_calls_in_a_day"] = max(log.per_day.values(), default=0)
    if estimate is not None:
        result["estimate_delay_hours"] = estimate
    return result


def _next_moment(
    line: Line, policy: Policy, now: datetime, day_start: datetime, used: int, budget: int
) -> datetime:
    """The next moment a check may happen: a case comes due, the pace allows one, or a new day."""
    candidates = [day_start + DAY]
    first = line.first_moment()
    if first is not None and first > now:
        candidates.append(first)
    if used < budget and policy.early_fill:
        # A hair past the moment, so that rounding cannot leave the pace one call short.
        candidates.append(day_start + DAY * (used + 1) / budget + timedelta(milliseconds=1))
    return max(min(candidates), now + timedelta(seconds=1))


class Line:
    """The single virtual worker's queue: cases by next check, never-checked ones first.

    It mirrors `next_check_at` in memory so that virtual time can jump from one
    due moment to the next without asking the database each time.
    """

    def __init__(self, entries: list[tuple[float, int]]) -> None:
        self._heap = entries
        heapq.heapify(self._heap)

    @classmethod
    def from_database(cls) -> Line:
        rows = Case.objects.filter(watched_cases()).values_list("next_check_at", "pk")
        return cls([(_key(moment), pk) for moment, pk in rows])

    def put(self, moment: datetime | None, pk: int) -> None:
        heapq.heappush(self._heap, (_key(moment), pk))

    def due(self, now: datetime, *, limit: int) -> list[tuple[float, int]]:
        """Up to `limit` cases due at `now`, most overdue first (taken out of the line)."""
        taken: list[tuple[float, int]] = []
        while self._heap and self._heap[0][0] <= now.timestamp() and len(taken) < limit:
            taken.append(heapq.heappop(self._heap))
        return taken

    def give_back(self, entries: list[tuple[float, int]]) -> None:
        for entry in entries:
            heapq.heappush(self._heap, entry)

    def next(self, count: int, rested: Callable[[int], bool]) -> list[tuple[float, int]]:
        """The `count` cases next in line that have rested since their last check."""
        taken: list[tuple[float, int]] = []
        skipped: list[tuple[float, int]] = []
        while self._heap and len(taken) < count and len(skipped) < SCAN_LIMIT:
            entry = heapq.heappop(self._heap)
            (taken if rested(entry[1]) else skipped).append(entry)
        self.give_back(skipped)
        return taken

    def first_moment(self) -> datetime | None:
        if not self._heap:
            return None
        return datetime.fromtimestamp(max(self._heap[0][0], 0.0), UTC)


def _key(moment: datetime | None) -> float:
    return float("-inf") if moment is None else moment.timestamp()
