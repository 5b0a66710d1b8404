"""What the scheduler knows about how cases move: learned from observations, not assumed.

A case's next update is modelled as a piecewise-constant hazard: the chance per
day that USCIS posts the next update, depending on the canonical status (and
form type), on how long the case has been in it, and on the hour of the week
(USCIS posts on business days, in Eastern working hours). Every estimate
starts from a modest prior (data/dwell_prior.toml) and is pulled towards what
the firm's own history shows: completed stays (from modifiedDate and
`hist_case_status` dates), stays still open, and the moments changes were
posted. Estimates are shrunk level by level (status → time in status → form),
so a status seen twice does not get a wild rate. Time in a status before the
case was first read is not exposure (left truncation; see `Stay`).
"""

from __future__ import annotations

import tomllib
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cache
from importlib import resources
from typing import Any
from zoneinfo import ZoneInfo

from casewatch.core.statuses import default_catalog

# Lower edges, in days in the status, of the stretches a hazard is constant over.
BUCKETS = (0.0, 1.0, 3.0, 7.0, 14.0, 30.0, 60.0, 120.0, 240.0)
HOURS_PER_WEEK = 168
DAY = timedelta(days=1)
# Pseudo-stays a coarser estimate is worth against a finer one's own data.
SHRINK_STAYS = 2.0
PROFILE_FLOOR = 0.02


@dataclass(frozen=True)
class Prior:
    mean_days: dict[str, float]
    next_action: dict[str, float]
    final_mean_days: float
    prior_stays: float
    zone: ZoneInfo
    first_hour: int
    last_hour: int
    off_hours_share: float
    prior_changes: float


@cache
def prior() -> Prior:
    source = resources.files("casewatch.monitor").joinpath("data", "dwell_prior.toml")
    data: dict[str, Any] = tomllib.loads(source.read_text(encoding="utf-8"))
    categories: dict[str, dict[str, float]] = data["category"]
    posting: dict[str, Any] = data["posting"]
    return Prior(
        mean_days={name: float(v["mean_days"]) for name, v in categories.items()},
        next_action={name: float(v["next_action"]) for name, v in categories.items()},
        final_mean_days=float(data["final_mean_days"]),
        prior_stays=float(data["prior_stays"]),
        zone=ZoneInfo(posting["zone"]),
        first_hour=int(posting["first_hour"]),
        last_hour=int(posting["last_hour"]),
        off_hours_share=float(posting["off_hours_share"]),
        prior_changes=float(posting["prior_changes"]),
    )


@dataclass(frozen=True)
class Stay:
    """A case's time in one status; `next_urgency` is empty while it lasts.

    `unseen_days`: how far into the stay tracking began. A case first read 200
    days into a status says nothing about its first 200 days (it could not have
    left then and still be found in it), so that time is not counted as exposure.
    """

    form_type: str
    status: str
    days: float
    ended: bool
    next_urgency: str = ""
    unseen_days: float = 0.0


@dataclass
class Tally:
    """Exits and days of exposure per stretch of time in a status."""

    exits: list[float] = field(default_factory=lambda: [0.0] * len(BUCKETS))
    exposure: list[float] = field(default_factory=lambda: [0.0] * len(BUCKETS))

    def add(self, days: float, ended: bool, unseen_days: float = 0.0) -> None:
        """A stay of `days`, watched from `unseen_days` on (left truncation)."""
        days = max(days, 0.0)
        unseen_days = min(max(unseen_days, 0.0), days)
        for index, low in enumerate(BUCKETS):
            high = BUCKETS[index + 1] if index + 1 < len(BUCKETS) else float("inf")
            if days < high:
                self.exposure[index] += days - max(low, unseen_days)
                if ended:
                    self.exits[index] += 1
                return
            self.exposure[index] += max(high - max(low, unseen_days), 0.0)

    @property
    def total_exits(self) -> float:
        return sum(self.exits)

    @property
    def total_exposure(self) -> float:
        return sum(self.exposure)


def _shrink(exits: float, exposure: float, parent: float, strength: float) -> float:
    """A rate from `exits` over `exposure`, pulled towards `parent` by `strength` pseudo-exits."""
    return (exits + strength) / (exposure + strength / parent)


def _eastern_hour_of_week(moment: datetime, zone: ZoneInfo) -> int:
    local = moment.astimezone(zone)
    return local.weekday() * 24 + local.hour


def _prior_profile(p: Prior) -> list[float]:
    shape = []
    for hour in range(HOURS_PER_WEEK):
        weekday, clock = divmod(hour, 24)
        working = weekday < 5 and p.first_hour <= clock < p.last_hour
        shape.append(1.0 if working else p.off_hours_share)
    return shape


def _normalized(values: list[float]) -> tuple[float, ...]:
    mean = sum(values) / len(values)
    return tuple(max(v / mean, PROFILE_FLOOR) for v in values)


@dataclass(frozen=True)
class DwellModel:
    """Hazards per (form, status) and stretch of time in status, the action share, the week."""

    status_rates: Mapping[str, tuple[float, ...]]
    form_rates: Mapping[tuple[str, str], tuple[float, ...]]
    action_share: Mapping[str, float]
    profile: tuple[float, ...]
    stays_seen: int = 0
    changes_seen: int = 0

    def rates(self, form_type: str, status: str) -> tuple[float, ...]:
        """Per-day hazard for each stretch of BUCKETS (an average hour of the week)."""
        found = self.form_rates.get((form_type, status))
        if found is not None:
            return found
        found = self.status_rates.get(status)
        if found is not None:
            return found
        return _prior_rates(status)

    def hazard(self, form_type: str, status: str, days_in_status: float) -> float:
        return self.rates(form_type, status)[bucket_of(days_in_status)]

    def next_is_action(self, status: str) -> float:
        """How likely the next update after `status` needs someone to act."""
        share = self.action_share.get(status)
        return share if share is not None else _prior_action(status)

    def intensity(self, moment: datetime) -> float:
        """How busy USCIS posting is at `moment`, against the week's average of 1."""
        return self.profile[self.hour_of_week(moment)]

    def hour_of_week(self, moment: datetime) -> int:
        """The index of `moment` in `profile`: hours since Monday 00:00 at USCIS."""
        return _eastern_hour_of_week(moment, prior().zone)


def bucket_of(days: float) -> int:
    """The stretch of BUCKETS that `days` in a status falls in."""
    return max(bisect_right(BUCKETS, days) - 1, 0)


def _category_of(status: str) -> tuple[str, bool]:
    catalog = default_catalog()
    known = catalog.statuses.get(status)
    if known is None:
        return "unknown", False
    return known.category, known.final


def _prior_mean_days(status: str) -> float:
    p = prior()
    category, final = _category_of(status)
    if final:
        return p.final_mean_days
    return p.mean_days.get(category, p.mean_days["unknown"])


@cache
def _prior_rates(status: str) -> tuple[float, ...]:
    return (1.0 / _prior_mean_days(status),) * len(BUCKETS)


@cache
def _prior_action(status: str) -> float:
    p = prior()
    category, _ = _category_of(status)
    return p.next_action.get(category, p.next_action["unknown"])


def fit(stays: Iterable[Stay], change_times: Iterable[datetime]) -> DwellModel:
    """Learn a model from stays (ended or not) and the moments USCIS posted changes."""
    p = prior()
    by_status: dict[str, Tally] = defaultdict(Tally)
    by_form: dict[tuple[str, str], Tally] = defaultdict(Tally)
    actions: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    count = 0
    for stay in stays:
        count += 1
        by_status[stay.status].add(stay.days, stay.ended, stay.unseen_days)
        if stay.form_type:
            by_form[(stay.form_type, stay.status)].add(stay.days, stay.ended, stay.unseen_days)
        if stay.ended and stay.next_urgency:
            counts = actions[stay.status]
            counts[0] += stay.next_urgency == "action"
            counts[1] += 1
    status_rates: dict[str, tuple[float, ...]] = {}
    for status, tally in by_status.items():
        overall = _shrink(
            tally.total_exits,
            tally.total_exposure,
            1.0 / _prior_mean_days(status),
            p.prior_stays,
        )
        status_rates[status] = tuple(
            _shrink(tally.exits[i], tally.exposure[i], overall, SHRINK_STAYS)
            for i in range(len(BUCKETS))
        )
    form_rates: dict[tuple[str, str], tuple[float, ...]] = {}
    for key, tally in by_form.items():
        parent = status_rates[key[1]]
        form_rates[key] = tuple(
            _shrink(tally.exits[i], tally.exposure[i], parent[i], SHRINK_STAYS)
            for i in range(len(BUCKETS))
        )
    action_share = {
        status: (hits + p.prior_stays * _prior_action(status)) / (total + p.prior_stays)
        for status, (hits, total) in actions.items()
    }
    profile, changes = _fit_profile(change_times)
    return DwellModel(status_rates, form_rates, action_share, profile, count, changes)


def _fit_profile(change_times: Iterable[datetime]) -> tuple[tuple[float, ...], int]:
    """The hour-of-week posting profile: observed change moments mixed with the prior shape."""
    p = prior()
    counts = [0.0] * HOURS_PER_WEEK
    seen = 0
    for moment in change_times:
        counts[_eastern_hour_of_week(moment, p.zone)] += 1
        seen += 1
    smoothed = [
        0.25 * counts[h - 1] + 0.5 * counts[h] + 0.25 * counts[(h + 1) % HOURS_PER_WEEK]
        for h in range(HOURS_PER_WEEK)
    ]
    shape = _prior_profile(p)
    scale = p.prior_changes / sum(shape)
    mixed = [smoothed[h] + scale * shape[h] for h in range(HOURS_PER_WEEK)]
    return _normalized(mixed), seen


def prior_model() -> DwellModel:
    """The model before anything was observed."""
    return fit((), ())


def learn_from_database(now: datetime, *, recent_changes: int = 5000) -> DwellModel:
    """Fit on every recorded stay, the open stays of active cases and recent posting times."""
    from casewatch.cases.models import Case, StatusEvent
    from casewatch.monitor.models import DwellSample

    def stays() -> Iterable[Stay]:
        for form, status, days, urgency, unseen in DwellSample.objects.values_list(
            "form_type", "status", "days", "next_urgency", "unseen_days"
        ).iterator(chunk_size=5000):
            yield Stay(form, status, days, True, urgency, unseen)
        open_cases = (
            Case.objects.filter(archived_at__isnull=True)
            .exclude(status="")
            .values_list("form_type", "status", "uscis_status_since", "status_since")
        )
        for form, status, since, observed_since in open_cases.iterator(chunk_size=5000):
            began = since or observed_since
            if began is not None:
                unseen = (observed_since - began) / DAY if observed_since is not None else 0.0
                yield Stay(form, status, (now - began) / DAY, False, "", unseen)

    moments = (
        StatusEvent.objects.filter(uscis_date__isnull=False, recovered=False, uscis_date__lte=now)
        .order_by("-pk")
        .values_list("uscis_date", flat=True)[:recent_changes]
    )
    return fit(stays(), [moment for moment in moments if moment is not None])
