"""When to ask USCIS about each case next: the adaptive policy and the round-robin baseline.

The adaptive policy spends each call where an undetected change is most likely
to be waiting and most costly. After checking a case at time t, the next check
comes when the expected detection delay piling up since t,

    C(T) = ∫₀ᵀ (T − u) · w · h(t + u) du,

reaches a threshold μ: h is the case's hazard (learning.py: its status and form,
its time in the status, the hour of the week) and w weighs cases whose next
update likely needs action. With a steady hazard this gives T = √(2μ / w·h),
the square-root rule that minimizes mean detection delay for a fixed number of
calls. μ is set so that the whole caseload's checks fit the daily budget.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from casewatch.core.statuses import default_catalog
from casewatch.monitor.learning import DwellModel, prior_model

DAY = timedelta(days=1)
# An update that needs action counts this much more than one that does not.
ACTION_WEIGHT = 2.0
# Keep this share of the day's remaining pro-rata budget for later in the day.
RESERVE_SHARE = 0.25
# The budget share the threshold aims at; early checks use the rest.
TARGET_SHARE = 0.95
STEP_HOURS = 1.0
EXACT_HORIZON = timedelta(days=7)


@dataclass(frozen=True)
class Budget:
    """What the caseload may spend, and the bounds on any one case's interval."""

    calls_per_day: int
    rate_per_second: float = 10.0
    min_interval: timedelta = timedelta(minutes=10)
    max_interval: timedelta = timedelta(days=7)
    max_interval_final: timedelta = timedelta(days=30)


@dataclass(frozen=True)
class CaseState:
    """What the policy needs to know about a case, without the database."""

    form_type: str
    status: str
    status_since: datetime | None
    scheduled_at: datetime | None = None
    last_checked_at: datetime | None = None


class Policy(Protocol):
    name: str
    early_fill: bool
    budget: Budget

    def refresh(self, now: datetime, caseload: Iterable[CaseState]) -> None:
        """Relearn from what has been observed and fit the caseload to the budget."""
        ...

    def next_check(self, case: CaseState, now: datetime) -> tuple[datetime, float]:
        """When to check `case` next after checking it at `now`, and its weighted rate."""
        ...

    def pace(self, moment: datetime, day_start: datetime) -> float:
        """The share of the quota day's budget to have spent by `moment`."""
        ...


def is_final(status: str) -> bool:
    known = default_catalog().statuses.get(status)
    return known is not None and known.final


def weighted_rate(model: DwellModel, case: CaseState, now: datetime) -> float:
    """Expected weighted updates per day for `case` right now (an average hour)."""
    status = case.status or "unknown"
    days_in = _days_in_status(case, now)
    weight = 1.0 + ACTION_WEIGHT * model.next_is_action(status)
    return weight * model.hazard(case.form_type, status, days_in)


def _days_in_status(case: CaseState, now: datetime) -> float:
    if case.status_since is None:
        return 0.0
    return max((now - case.status_since) / DAY, 0.0)


def solve_interval(
    model: DwellModel, case: CaseState, now: datetime, threshold: float, budget: Budget
) -> timedelta:
    """The T at which C(T) reaches `threshold`, within the budget's bounds.

    Hour by hour for a week (the posting profile matters there), then in whole
    days at the average intensity.
    """
    status = case.status or "unknown"
    weight = 1.0 + ACTION_WEIGHT * model.next_is_action(status)
    longest = budget.max_interval_final if is_final(status) else budget.max_interval
    start_days = _days_in_status(case, now)
    step = STEP_HOURS / 24.0
    accrued = 0.0  # ∫ w·h: expected weighted changes since `now`
    cost = 0.0  # C(T): expected weighted delay piled up since `now`
    elapsed = 0.0
    limit = longest / DAY
    while elapsed < limit:
        exact = elapsed < EXACT_HORIZON / DAY
        width = step if exact else 1.0
        moment = now + timedelta(days=elapsed)
        rate = weight * model.hazard(case.form_type, status, start_days + elapsed)
        if exact:
            rate *= model.intensity(moment)
        # Within the step cost grows as cost + accrued·τ + rate·τ²/2.
        end_cost = cost + accrued * width + rate * width * width / 2.0
        if end_cost >= threshold:
            tau = _solve_quadratic(rate / 2.0, accrued, cost - threshold, width)
            elapsed += tau
            break
        cost, accrued = end_cost, accrued + rate * width
        elapsed += width
    interval = timedelta(days=min(elapsed, limit))
    return min(max(interval, budget.min_interval), longest)


def _solve_quadratic(a: float, b: float, c: float, upper: float) -> float:
    """The root in [0, upper] of a·τ² + b·τ + c (c ≤ 0 ≤ the value at upper)."""
    if a <= 1e-15:
        return min(-c / b, upper) if b > 0 else upper
    root = (-b + math.sqrt(max(b * b - 4.0 * a * c, 0.0))) / (2.0 * a)
    return min(max(root, 0.0), upper)


def threshold_for_budget(
    rates: Iterable[tuple[float, bool]], budget: Budget, calls_per_day: float
) -> float:
    """μ such that Σ 1/T_i(μ) = calls_per_day, with T_i = √(2μ/r_i) clamped to the bounds.

    Rates are grouped on a log scale first, so a large caseload costs little.
    """
    groups: Counter[tuple[float, bool]] = Counter()
    for rate, final in rates:
        key = round(math.log(max(rate, 1e-9)), 2)
        groups[(key, final)] += 1
    if not groups or calls_per_day <= 0:
        return 1.0
    shortest = budget.min_interval / DAY
    longest = budget.max_interval / DAY
    longest_final = budget.max_interval_final / DAY

    def calls(mu: float) -> float:
        total = 0.0
        for (log_rate, final), count in groups.items():
            interval = math.sqrt(2.0 * mu / math.exp(log_rate))
            top = longest_final if final else longest
            total += count / min(max(interval, shortest), top)
        return total

    low, high = 1e-12, 1e6
    if calls(low) <= calls_per_day:
        return low  # the budget covers checking everything as often as allowed
    if calls(high) >= calls_per_day:
        return high
    for _ in range(80):
        middle = math.sqrt(low * high)
        if calls(middle) > calls_per_day:
            low = middle
        else:
            high = middle
    return math.sqrt(low * high)


class AdaptivePolicy:
    """Checks follow the learned hazards; the caseload's checks fit the budget."""

    name = "adaptive"
    early_fill = True

    def __init__(self, budget: Budget, model: DwellModel | None = None) -> None:
        self.budget = budget
        self.model = model or prior_model()
        self.threshold = 1.0

    def refit(self, now: datetime, caseload: Iterable[CaseState]) -> None:
        """Fit the threshold to the budget for the current model."""
        rates = [(weighted_rate(self.model, case, now), is_final(case.status)) for case in caseload]
        self.threshold = threshold_for_budget(
            rates, self.budget, self.budget.calls_per_day * TARGET_SHARE
        )

    def refresh(self, now: datetime, caseload: Iterable[CaseState]) -> None:
        from casewatch.monitor.learning import learn_from_database

        self.model = learn_from_database(now)
        self.refit(now, caseload)

    def next_check(self, case: CaseState, now: datetime) -> tuple[datetime, float]:
        interval = solve_interval(self.model, case, now, self.threshold, self.budget)
        return now + interval, weighted_rate(self.model, case, now)

    def pace(self, moment: datetime, day_start: datetime) -> float:
        return min(max((moment - day_start) / DAY, 0.0), 1.0)


class RoundRobinPolicy:
    """The peers' baseline (trace-format.md): every case every cases ÷ budget days."""

    name = "round-robin"
    early_fill = False

    def __init__(self, budget: Budget, cases: int) -> None:
        self.budget = budget
        self.interval = DAY * max(cases, 1) / max(budget.calls_per_day, 1)

    def first_check(self, index: int, cases: int, start: datetime) -> datetime:
        return start + self.interval * index / max(cases, 1)

    def refresh(self, now: datetime, caseload: Iterable[CaseState]) -> None:
        return None

    def next_check(self, case: CaseState, now: datetime) -> tuple[datetime, float]:
        # From the slot, not the moment: a late check must not shift the whole rota.
        slot = case.scheduled_at if case.scheduled_at is not None else now
        return max(slot + self.interval, now), 0.0

    def pace(self, moment: datetime, day_start: datetime) -> float:
        return min(max((moment - day_start) / DAY, 0.0), 1.0)


def calls_to_make(
    *,
    due: int,
    used_today: int,
    budget: int,
    pace: float,
    early_fill: bool,
) -> tuple[int, int]:
    """How many due cases to check now, and how many not yet due ones, within today's budget.

    `pace` is the share of the quota day gone. Due cases go first, but a burst
    may not eat the share of the budget kept for the rest of the day; when the
    day's spending is behind an even pace, cases next in line are checked
    early, so that no call of the day is wasted. The round-robin baseline
    checks exactly what is due.
    """
    left = max(budget - used_today, 0)
    if not early_fill:
        return min(due, left), 0
    reserve = int(budget * (1.0 - pace) * RESERVE_SHARE)
    due_calls = min(due, max(left - reserve, 0))
    behind = int(budget * pace) - used_today - due_calls
    early = min(max(behind, 0), left - due_calls)
    return due_calls, early
