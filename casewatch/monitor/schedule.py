"""When to ask USCIS about each case next: the adaptive policy and the round-robin baseline.

The adaptive policy spends each call where an undetected change is most likely
to be waiting and most costly. After checking a case at time t, the next check
comes when the expected cost of the delays piling up since t,

    C(T) = ∫₀ᵀ (T − u)^p · w · h(t + u) du,

reaches a threshold μ: h is the case's hazard (learning.py: its status and form,
its time in the status, the hour of the week) and w weighs cases whose next
update likely needs action. With p = 1 (cost = delay) a steady hazard gives the
square-root rule T = √(2μ / w·h), which minimizes the mean delay but lets slow
cases wait so long that the worst delays exceed a plain rota's. A firm is hurt
most by the change it sees days late, so delays are weighed by their cube
(p = 3): T = (4μ / w·h)^¼ still follows the hazard, with a far shorter tail.
μ is fitted so that the caseload's next intervals spend the daily budget.
"""

from __future__ import annotations

import math
import random
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Protocol

from casewatch.core.statuses import default_catalog
from casewatch.monitor.learning import DwellModel, bucket_of, prior_model

DAY = timedelta(days=1)
# An update that needs action counts this much more than one that does not.
ACTION_WEIGHT = 5.0
# Keep this share of the day's remaining pro-rata budget for later in the day.
RESERVE_SHARE = 0.25
# The budget share the threshold aims at; early checks use the rest.
TARGET_SHARE = 0.95
STEP_HOURS = 1.0
EXACT_HORIZON = timedelta(days=7)
# p in C(T): how much more a long delay hurts than a short one.
DELAY_POWER = 3
FIT_SAMPLE = 300
# No active case waits longer than this share of a plain rota's interval (cases ÷ budget).
ROTA_SHARE = 0.8
# However unlikely to need action, an active case is read at least weekly.
LONGEST_ACTIVE = timedelta(days=7)


@dataclass(frozen=True)
class Budget:
    """What the caseload may spend, and the bounds on any one case's interval."""

    calls_per_day: int
    rate_per_second: float = 10.0
    min_interval: timedelta = timedelta(minutes=10)
    max_interval: timedelta = timedelta(days=7)
    max_interval_final: timedelta = timedelta(days=30)
    # When set, an active case's longest interval is max_interval for a case of this
    # weight, shorter for one more likely to need action, longer for one less (¼ power).
    typical_weight: float = 0.0


@dataclass(frozen=True)
class CaseState:
    """What the policy needs to know about a case, without the database."""

    form_type: str
    status: str
    status_since: datetime | None
    scheduled_at: datetime | None = None
    last_checked_at: datetime | None = None
    # When tracking first saw the case in this status (later than status_since if it
    # was already in it when first read).
    tracked_since: datetime | None = None


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


def weight_of(model: DwellModel, status: str) -> float:
    """How much an update after `status` counts: more when it likely needs action."""
    return 1.0 + ACTION_WEIGHT * model.next_is_action(status or "unknown")


def weighted_rate(model: DwellModel, case: CaseState, now: datetime) -> float:
    """Expected weighted updates per day for `case` right now (an average hour)."""
    status = case.status or "unknown"
    hazard = model.hazard(case.form_type, status, _days_in_status(case, now))
    return weight_of(model, status) * hazard


def _days_in_status(case: CaseState, now: datetime) -> float:
    if case.status_since is None:
        return 0.0
    return max((now - case.status_since) / DAY, 0.0)


def _longest(case: CaseState, budget: Budget, weight: float) -> timedelta:
    if is_final(case.status):
        return budget.max_interval_final
    if budget.typical_weight <= 0:
        return budget.max_interval
    scaled: timedelta = budget.max_interval * (budget.typical_weight / weight) ** 0.25
    return min(scaled, LONGEST_ACTIVE)


def _rates_ahead(
    model: DwellModel, case: CaseState, now: datetime, budget: Budget, *, by_hour: bool = True
) -> Iterator[tuple[float, float, float]]:
    """(from, to, weighted updates per day) in days after `now`, up to the longest interval.

    Hour by hour for a week, where the posting profile matters (unless `by_hour`
    is off: an average hour of the week); then whole days at the average.
    """
    status = case.status or "unknown"
    weight = weight_of(model, status)
    rates = model.rates(case.form_type, status)
    start_days = _days_in_status(case, now)
    limit = _longest(case, budget, weight) / DAY
    exact_until = EXACT_HORIZON / DAY
    step = STEP_HOURS / 24.0
    hour = model.hour_of_week(now)
    profile = model.profile
    elapsed = 0.0
    while elapsed < limit:
        exact = elapsed < exact_until
        width = min(step if exact else 1.0, limit - elapsed)
        rate = weight * rates[bucket_of(start_days + elapsed)]
        if exact and by_hour:
            rate *= profile[(hour + int(elapsed * 24.0)) % len(profile)]
        yield elapsed, elapsed + width, rate
        elapsed += width


def _grown(moments: list[float], rate: float, low: float, high: float) -> list[float]:
    """The moments ∫ u^k · rate(u) du after adding `rate` over [low, high]."""
    return [m + rate * (high ** (k + 1) - low ** (k + 1)) / (k + 1) for k, m in enumerate(moments)]


def _cost(moments: list[float], horizon: float) -> float:
    """C(T) = ∫ (T − u)^p · rate(u) du, from the moments ∫ u^k · rate(u) du."""
    power = len(moments) - 1
    total = 0.0
    for k, m in enumerate(moments):
        term = math.comb(power, k) * horizon ** (power - k) * m
        total += -term if k % 2 else term
    return total


def solve_interval(
    model: DwellModel, case: CaseState, now: datetime, threshold: float, budget: Budget
) -> timedelta:
    """The T at which C(T) reaches `threshold`, within the budget's bounds."""
    moments = [0.0] * (DELAY_POWER + 1)
    longest = _longest(case, budget, weight_of(model, case.status or "unknown"))
    for low, high, rate in _rates_ahead(model, case, now, budget):
        grown = _grown(moments, rate, low, high)
        if _cost(grown, high) >= threshold:
            lower, upper = low, high
            for _ in range(24):  # to well under a second
                middle = (lower + upper) / 2.0
                if _cost(_grown(moments, rate, low, middle), middle) >= threshold:
                    upper = middle
                else:
                    lower = middle
            return min(max(timedelta(days=upper), budget.min_interval), longest)
        moments = grown
    return longest


def cost_curve(
    model: DwellModel, case: CaseState, now: datetime, budget: Budget
) -> tuple[list[float], list[float]]:
    """C at the end of each step ahead (days after `now`, cost): for fitting the threshold.

    At the average hour of the week: the fit must not depend on whether it runs
    at night, when every first interval is long, or in USCIS posting hours.
    """
    moments = [0.0] * (DELAY_POWER + 1)
    ends: list[float] = []
    costs: list[float] = []
    for low, high, rate in _rates_ahead(model, case, now, budget, by_hour=False):
        moments = _grown(moments, rate, low, high)
        ends.append(high)
        costs.append(_cost(moments, high))
    return ends, costs


def interval_on_curve(
    curve: tuple[list[float], list[float]], threshold: float, shortest: float
) -> float:
    """The interval in days at which a precomputed curve reaches `threshold` (interpolated)."""
    ends, costs = curve
    index = bisect_left(costs, threshold)
    if index >= len(costs):
        return ends[-1] if ends else shortest
    before_end = ends[index - 1] if index else 0.0
    before_cost = costs[index - 1] if index else 0.0
    span = costs[index] - before_cost
    share = (threshold - before_cost) / span if span > 0 else 1.0
    return max(before_end + share * (ends[index] - before_end), shortest)


def threshold_for_budget(
    curves: Sequence[tuple[list[float], list[float]]],
    budget: Budget,
    calls_per_day: float,
    *,
    scale: float = 1.0,
) -> float:
    """μ such that the cases' intervals T_i(μ) spend `calls_per_day`: Σ scale / T_i(μ).

    `curves` may be a sample of the caseload, each standing for `scale` cases.
    """
    if not curves or calls_per_day <= 0:
        return 1.0
    shortest = budget.min_interval / DAY

    def calls(mu: float) -> float:
        return scale * sum(1.0 / interval_on_curve(c, mu, shortest) for c in curves)

    low, high = 1e-12, 1e9
    if calls(low) <= calls_per_day:
        return low  # the budget covers checking everything as often as allowed
    if calls(high) >= calls_per_day:
        return high
    for _ in range(60):
        middle = math.sqrt(low * high)
        if calls(middle) > calls_per_day:
            low = middle
        else:
            high = middle
    return math.sqrt(low * high)


class AdaptivePolicy:
    """Checks follow the learned hazards; the caseload's checks fit the budget.

    Every active case is also read at least every `ROTA_SHARE` of the rota's
    interval (for a case of typical weight; by the fourth root of its weight,
    as the cost rule weighs it, sooner when its next update likely needs
    action and later when not): a status that usually sits for months still
    changes some day, often to one that needs action, and that change must not
    wait longer than a plain rota would have let it. The final cases pay for it.
    """

    name = "adaptive"
    early_fill = True

    def __init__(self, budget: Budget, model: DwellModel | None = None) -> None:
        self.budget = budget
        self.model = model or prior_model()
        self.threshold = 1.0
        # The budget's bounds with the longest wait of an active case lowered to the cap.
        self.bounds = budget

    def refit(self, now: datetime, caseload: Iterable[CaseState]) -> None:
        """Fit the threshold so that the caseload's next intervals spend the budget.

        A sample stands for a large caseload: the threshold is a single number.
        """
        cases = list(caseload)
        calls = self.budget.calls_per_day * TARGET_SHARE
        sample = cases if len(cases) <= FIT_SAMPLE else random.Random(11).sample(cases, FIT_SAMPLE)
        weights = [
            weight_of(self.model, case.status or "unknown")
            for case in sample
            if not is_final(case.status)
        ]
        self.bounds = longest_active_waits(cases, weights, self.budget, calls)
        curves = [cost_curve(self.model, case, now, self.bounds) for case in sample]
        self.threshold = threshold_for_budget(
            curves, self.bounds, calls, scale=len(cases) / max(len(sample), 1)
        )

    def refresh(self, now: datetime, caseload: Iterable[CaseState]) -> None:
        from casewatch.monitor.learning import learn_from_database

        self.model = learn_from_database(now)
        self.refit(now, caseload)

    def interval(self, case: CaseState, now: datetime) -> timedelta:
        """How long after checking `case` at `now` to check it again."""
        return solve_interval(self.model, case, now, self.threshold, self.bounds)

    def next_check(self, case: CaseState, now: datetime) -> tuple[datetime, float]:
        return now + self.interval(case, now), weighted_rate(self.model, case, now)

    def pace(self, moment: datetime, day_start: datetime) -> float:
        return min(max((moment - day_start) / DAY, 0.0), 1.0)


def longest_active_waits(
    cases: Sequence[CaseState], weights: Sequence[float], budget: Budget, calls: float
) -> Budget:
    """The budget's bounds with the cap on active cases' intervals (see AdaptivePolicy).

    `weights` are those of a sample of the active cases. The cap for a case of
    typical weight is `ROTA_SHARE` of the rota's interval; when checking every
    active case that often (and every final one at its longest interval) would
    cost more than `calls`, it rises to what the budget affords.
    """
    finals = sum(1 for case in cases if is_final(case.status))
    active = len(cases) - finals
    if not active or not weights or calls <= 0 or budget.calls_per_day <= 0:
        return budget
    typical = sum(weights) / len(weights)
    # Calls a day per day of cap: Σ over active cases of 1 / (their share of the cap).
    per_day = active * sum((w / typical) ** 0.25 for w in weights) / len(weights)
    cap = DAY * len(cases) / budget.calls_per_day * ROTA_SHARE
    spare = calls - finals / (budget.max_interval_final / DAY)
    if spare > 0:
        cap = max(cap, DAY * per_day / spare)
    cap = min(max(cap, budget.min_interval), LONGEST_ACTIVE)
    return replace(budget, max_interval=cap, typical_weight=typical)


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
