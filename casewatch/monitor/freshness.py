"""What the budget buys: the expected detection delay, from the scheduler's own model.

For a sample of the caseload, the policy's own rule lays out each case's
checks over the coming week (each interval solved where the previous one ends,
through nights and weekends). A change at moment τ is noticed at the first
check after τ; changes arrive at the case's learned hazard times the hour of
the week's posting intensity. Weighing every moment of the week by that rate
gives the distribution of detection delays the budget buys.
"""

from __future__ import annotations

import random
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from casewatch.monitor.schedule import AdaptivePolicy, Budget, CaseState, solve_interval

SAMPLE = 300
HORIZON = timedelta(days=7)
GRID = timedelta(minutes=30)


def estimate_delay(
    policy: AdaptivePolicy, caseload: Sequence[CaseState], now: datetime
) -> dict[str, float | None]:
    """Expected detection delay in hours (mean, p50, p95) for this caseload and budget."""
    cases = list(caseload)
    if len(cases) > SAMPLE:
        cases = random.Random(7).sample(cases, SAMPLE)
    parts: list[tuple[float, float]] = []  # (changes per day at that moment, delay in hours)
    for case in cases:
        parts += _case_delays(policy, case, now)
    return weighted_summary(parts)


def _case_delays(
    policy: AdaptivePolicy, case: CaseState, now: datetime
) -> list[tuple[float, float]]:
    model, status = policy.model, case.status or "unknown"
    end = now + HORIZON
    checks = [now]
    while checks[-1] < end:
        moment = checks[-1]
        checks.append(moment + solve_interval(model, case, moment, policy.threshold, policy.budget))
    stamps = [check.timestamp() for check in checks]
    delays = []
    moment = now + GRID / 2
    while moment < end:
        days_in = 0.0
        if case.status_since is not None:
            days_in = max((moment - case.status_since) / timedelta(days=1), 0.0)
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
    delay = estimate_delay(policy, caseload, now) if caseload else weighted_summary([])
    return Freshness(budget.calls_per_day, len(caseload), delay)
