"""What the budget buys: the expected detection delay, from the scheduler's own model.

For a sample of the caseload, the coming week is played out as the worker
plays it: each case checked when its interval (the policy's own rule, solved
at that hour) runs out, and, while the day's spending lags an even pace,
cases next in line checked early — with the sample's share of the budget. A
change at moment τ is noticed at the first check after τ; changes arrive at
the case's learned hazard times the hour of the week's posting intensity.
Weighing every moment of the week by that rate gives the distribution of
detection delays the budget buys.
"""

from __future__ import annotations

import heapq
import random
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from casewatch.monitor.schedule import (
    DAY,
    AdaptivePolicy,
    Budget,
    CaseState,
    calls_to_make,
    is_final,
)

SAMPLE = 300
HORIZON = timedelta(days=7)
GRID = timedelta(minutes=30)
# How often the played-out worker looks for due cases (the real one: every minute or so).
TICK = timedelta(minutes=5)


def estimate_delay(
    policy: AdaptivePolicy, caseload: Sequence[CaseState], now: datetime
) -> dict[str, float | None]:
    """Expected detection delay in hours (mean, p50, p95) for this caseload and budget."""
    cases = list(caseload)
    if not cases:
        return weighted_summary([])
    share = 1.0
    if len(cases) > SAMPLE:
        share = SAMPLE / len(cases)
        cases = random.Random(7).sample(cases, SAMPLE)
    plans = planned_checks(policy, cases, now, share)
    parts: list[tuple[float, float]] = []  # (changes per day at that moment, delay in hours)
    for case, checks in zip(cases, plans, strict=True):
        if not is_final(case.status):
            parts += _case_delays(policy, case, now, checks)
    return weighted_summary(parts)


def planned_checks(
    policy: AdaptivePolicy, cases: Sequence[CaseState], now: datetime, share: float
) -> list[list[datetime]]:
    """Each case's checks over the coming week, as the worker would make them.

    `share` is the part of the caseload `cases` stand for; they get that part
    of the daily budget. Every list ends with a check at or after the horizon.
    """
    end = now + HORIZON
    budget = max(round(policy.budget.calls_per_day * share), 1)
    rested = policy.budget.min_interval
    checks: list[list[datetime]] = [[] for _ in cases]
    last: list[datetime | None] = [case.last_checked_at for case in cases]
    line = [(_first_due(case, now), index) for index, case in enumerate(cases)]
    heapq.heapify(line)
    today = _day_of(now)
    # Today's spending so far is taken to be on pace.
    spent = {today: int(budget * policy.pace(now, today))}
    moment = now
    while moment < end:
        day_start = _day_of(moment)
        used = spent.get(day_start, 0)
        due = 0
        for at, _ in line:  # a heap: count those due without popping
            due += at <= moment
        due_calls, early_calls = calls_to_make(
            due=due,
            used_today=used,
            budget=budget,
            pace=policy.pace(moment, day_start),
            early_fill=policy.early_fill,
        )
        # Like the worker's claim: the first cases in line that have rested since their last check.
        picked: list[int] = []
        skipped: list[tuple[datetime, int]] = []
        while line and len(picked) < due_calls + early_calls:
            at, index = heapq.heappop(line)
            previous = last[index]
            if previous is not None and moment - previous < rested:
                skipped.append((at, index))
            else:
                picked.append(index)
        for index in picked:
            case = cases[index]
            checks[index].append(moment)
            last[index] = moment
            heapq.heappush(line, (moment + policy.interval(case, moment), index))
        for entry in skipped:
            heapq.heappush(line, entry)
        spent[day_start] = used + len(picked)
        moment += TICK
    for at, index in line:
        checks[index].append(max(at, end))
    return checks


def _day_of(moment: datetime) -> datetime:
    return datetime.combine(moment.astimezone(UTC).date(), datetime.min.time(), UTC)


def _first_due(case: CaseState, now: datetime) -> datetime:
    if case.scheduled_at is None:
        return now
    return max(case.scheduled_at, now - DAY)


def _case_delays(
    policy: AdaptivePolicy, case: CaseState, now: datetime, checks: list[datetime]
) -> list[tuple[float, float]]:
    model, status = policy.model, case.status or "unknown"
    end = now + HORIZON
    stamps = [check.timestamp() for check in checks]
    delays = []
    moment = now + GRID / 2
    while moment < end:
        days_in = 0.0
        if case.status_since is not None:
            days_in = max((moment - case.status_since) / DAY, 0.0)
        rate = model.hazard(case.form_type, status, days_in) * model.intensity(moment)
        seen = stamps[bisect_right(stamps, moment.timestamp())]
        delays.append((rate, (seen - moment.timestamp()) / 3600.0))
        moment += GRID
    return delays


def weighted_summary(parts: Sequence[tuple[float, float]]) -> dict[str, float | None]:
    """Mean and quantiles of delays, each counted with its weight."""
    total = sum(weight for weight, _ in parts)
    if total <= 0:
        return {"mean": None, "p50": None, "p95": None}
    mean = sum(weight * delay for weight, delay in parts) / total
    ordered = sorted(parts, key=lambda part: part[1])

    def quantile(share: float) -> float:
        running = 0.0
        for weight, delay in ordered:
            running += weight
            if running >= share * total:
                return delay
        return ordered[-1][1]

    return {"mean": round(mean, 2), "p50": round(quantile(0.5), 2), "p95": round(quantile(0.95), 2)}


@dataclass(frozen=True)
class Freshness:
    """What the budget buys for the current caseload, in words and figures."""

    calls_per_day: int
    active_cases: int
    delay_hours: dict[str, float | None]

    @property
    def sentence(self) -> str:
        delay = self.delay_hours
        cases = f"{self.active_cases:,} active case{'' if self.active_cases == 1 else 's'}"
        if delay["p50"] is None:
            return f"{self.calls_per_day:,} calls/day, {cases}"
        return (
            f"{self.calls_per_day:,} calls/day, {cases}: "
            f"expected detection delay p50 {_hours(delay['p50'])}, p95 {_hours(delay['p95'])}"
        )


def _hours(value: float | None) -> str:
    if value is None:
        return "unknown"
    if value < 1:
        return f"{round(value * 60)} min"
    return f"{value:.1f} h" if value < 10 else f"{value:.0f} h"


def freshness_now(budget: Budget, now: datetime) -> Freshness:
    """Learn from the database as the worker does, fit the budget, and state the delay."""
    from casewatch.cases.models import Case
    from casewatch.monitor.checks import state_of, watched_cases

    policy = AdaptivePolicy(budget)
    caseload = [state_of(case) for case in Case.objects.filter(watched_cases())]
    policy.refresh(now, caseload)
    delay = estimate_delay(policy, caseload, now)
    return Freshness(budget.calls_per_day, len(caseload), delay)
