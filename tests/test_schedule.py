"""The adaptive scheduler: what it learns, how it spends the budget, and the baseline it beats."""

from __future__ import annotations

import itertools
import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from casewatch.monitor.freshness import planned_checks, weighted_summary
from casewatch.monitor.learning import BUCKETS, Stay, Tally, fit, prior_model
from casewatch.monitor.schedule import (
    AdaptivePolicy,
    Budget,
    CaseState,
    RoundRobinPolicy,
    _longest,
    calls_to_make,
    cost_curve,
    is_final,
    longest_active_waits,
    solve_interval,
    threshold_for_budget,
    weight_of,
)

# A Tuesday, 15:00 UTC: 10:00 in Washington, USCIS posting hours.
TUESDAY = datetime(2026, 3, 3, 15, 0, tzinfo=UTC)
BUDGET = Budget(calls_per_day=1_000)


def _case(status: str, days_in: float = 10.0, form: str = "I-485") -> CaseState:
    return CaseState(form, status, TUESDAY - timedelta(days=days_in))


def _interval(status: str, threshold: float = 0.05) -> timedelta:
    return solve_interval(prior_model(), _case(status), TUESDAY, threshold, BUDGET)


def test_a_status_that_moves_fast_is_checked_sooner_than_one_that_sits() -> None:
    assert _interval("card_mailed") < _interval("case_received")


def test_a_final_status_is_still_checked_but_rarely() -> None:
    final = _interval("card_delivered")
    assert _interval("case_received") < final <= BUDGET.max_interval_final


def test_a_case_whose_next_update_likely_needs_action_gets_more_checks() -> None:
    rng = random.Random(1)
    stays = [
        Stay("I-485", "case_received", rng.expovariate(1 / 60), True, urgency)
        for urgency in ["action"] * 40 + ["progress"] * 10
    ] + [
        Stay("I-485", "fingerprints_taken", rng.expovariate(1 / 60), True, "progress")
        for _ in range(50)
    ]
    model = fit(stays, [])
    assert (
        model.next_is_action("case_received")
        > 0.7
        > 0.1
        > model.next_is_action("fingerprints_taken")
    )
    rfe_likely = solve_interval(model, _case("case_received"), TUESDAY, 0.05, BUDGET)
    rfe_unlikely = solve_interval(model, _case("fingerprints_taken"), TUESDAY, 0.05, BUDGET)
    assert rfe_likely < rfe_unlikely


def test_intervals_stay_within_the_budget_bounds() -> None:
    assert _interval("card_mailed", threshold=1e-12) == BUDGET.min_interval
    assert _interval("case_received", threshold=1e9) == BUDGET.max_interval


def test_many_observed_stays_teach_the_real_dwell_time() -> None:
    rng = random.Random(7)
    stays = [Stay("I-765", "case_received", rng.expovariate(1 / 20), True) for _ in range(2000)]
    model = fit(stays, [])
    overall = sum(model.rates("I-765", "case_received")[:6]) / 6
    assert 1 / 30 < overall < 1 / 13  # the truth is 1/20; the prior said 1/60


def test_a_status_seen_twice_keeps_close_to_the_prior() -> None:
    model = fit(
        [Stay("I-485", "case_received", 0.5, True), Stay("I-485", "case_received", 0.2, True)], []
    )
    prior_rate = prior_model().hazard("I-485", "case_received", 10)
    assert model.hazard("I-485", "case_received", 10) < 20 * prior_rate


def test_open_stays_count_as_exposure_without_an_exit() -> None:
    tally = Tally()
    tally.add(10.0, ended=False)
    assert tally.total_exits == 0 and tally.total_exposure == pytest.approx(10.0)
    tally.add(2.0, ended=True)
    assert tally.exits[1] == 1 and tally.total_exposure == pytest.approx(12.0)
    assert len(tally.exits) == len(BUCKETS)


def test_time_before_a_case_was_first_read_is_not_exposure() -> None:
    tally = Tally()
    tally.add(10.0, ended=True, unseen_days=4.0)
    assert tally.total_exposure == pytest.approx(6.0) and tally.exits[3] == 1
    assert tally.exposure[:3] == [0.0, 0.0, 3.0]  # days 0-4 were never watched


def test_cases_found_long_into_a_status_teach_its_late_hazard_not_a_slow_one() -> None:
    # Cases first read 300 days into "approved"; half of them moved within the next 10 days.
    found_late = [
        Stay("I-130", "approved", 310.0, n % 2 == 0, "", unseen_days=300.0) for n in range(200)
    ]
    model = fit(found_late, [])
    naive = fit([replace(stay, unseen_days=0.0) for stay in found_late], [])
    assert model.hazard("I-130", "approved", 305) > 3 * naive.hazard("I-130", "approved", 305)
    assert model.hazard("I-130", "approved", 305) == pytest.approx(100 / 2000, rel=0.2)


def test_the_posting_profile_is_learned_from_when_changes_appear() -> None:
    # A firm whose USCIS updates (unusually) land at 03:00 Eastern.
    nights = [datetime(2026, 3, 2 + d % 5, 8, 0, tzinfo=UTC) for d in range(2000)]
    model = fit([], nights)
    three_am = datetime(2026, 3, 4, 8, 0, tzinfo=UTC)
    assert model.intensity(three_am) > model.intensity(TUESDAY)
    assert prior_model().intensity(three_am) < prior_model().intensity(TUESDAY)


def test_checks_bunch_where_uscis_posts() -> None:
    model = prior_model()
    case = _case("case_received")
    friday_night = datetime(2026, 3, 7, 3, 0, tzinfo=UTC)  # Friday 22:00 in Washington
    weekday = solve_interval(model, case, TUESDAY, 0.02, BUDGET)
    weekend = solve_interval(model, case, friday_night, 0.02, BUDGET)
    assert weekday < weekend


def test_the_threshold_spends_the_budget_over_weeks_of_checks() -> None:
    rng = random.Random(3)
    statuses = ["case_received", "card_mailed", "fingerprints_taken", "approved", "card_delivered"]
    caseload = [_case(rng.choice(statuses), days_in=rng.uniform(0, 90)) for _ in range(400)]
    model = prior_model()
    curves = [cost_curve(model, case, TUESDAY, BUDGET) for case in caseload]
    mu = threshold_for_budget(curves, BUDGET, 300, scale=2.5)  # 400 cases stand for 1,000
    checks = 0
    for case in caseload:  # each case's checks through four weeks of days, nights and weekends
        moment = TUESDAY + solve_interval(model, case, TUESDAY, mu, BUDGET)
        while moment <= TUESDAY + timedelta(days=28):
            checks += 1
            moment += solve_interval(model, case, moment, mu, BUDGET)
    assert 2.5 * checks / 28 == pytest.approx(300, rel=0.1)


def test_due_cases_go_first_but_keep_a_reserve_for_the_rest_of_the_day() -> None:
    assert calls_to_make(due=900, used_today=0, budget=1000, pace=0.0, early_fill=True) == (
        750,
        0,
    )
    due_calls, early = calls_to_make(due=10, used_today=100, budget=1000, pace=0.5, early_fill=True)
    assert (due_calls, early) == (10, 390)
    assert calls_to_make(due=5, used_today=1000, budget=1000, pace=0.9, early_fill=True) == (
        0,
        0,
    )


def test_round_robin_checks_only_what_is_due_and_never_beyond_the_budget() -> None:
    assert calls_to_make(due=50, used_today=990, budget=1000, pace=0.1, early_fill=False) == (10, 0)


def test_round_robin_is_the_peers_baseline() -> None:
    rota = RoundRobinPolicy(Budget(calls_per_day=100), cases=300)
    assert rota.interval == timedelta(days=3)
    start = TUESDAY
    assert rota.first_check(150, 300, start) == start + timedelta(days=1.5)
    slot = start + timedelta(hours=5)
    late = CaseState("I-485", "case_received", None, scheduled_at=slot)
    assert rota.next_check(late, slot + timedelta(minutes=3))[0] == slot + timedelta(days=3)


def test_the_policy_fits_its_threshold_to_the_caseload() -> None:
    small, large = AdaptivePolicy(BUDGET), AdaptivePolicy(BUDGET)
    mix = [_case("case_received"), _case("card_mailed"), _case("card_delivered")]
    small.refit(TUESDAY, mix * 40)
    large.refit(TUESDAY, mix * 4_000)
    assert large.threshold > small.threshold


def test_no_active_case_waits_much_longer_than_most_of_a_plain_rota() -> None:
    policy = AdaptivePolicy(Budget(calls_per_day=100))
    # A status that sits for months, among cases that move and cases that are done.
    mix = [_case("case_received", 20), _case("card_mailed", 1)] + [_case("card_delivered", 40)] * 2
    policy.refit(TUESDAY, mix * 100)
    rota = timedelta(days=400 / 100)
    typical = policy.bounds.typical_weight
    assert policy.bounds.max_interval == 0.8 * rota  # for a case of typical weight
    for status in ("case_received", "card_mailed"):
        # Sooner when the next update likely needs action, later when not; by the fourth root.
        cap = 0.8 * rota * (typical / weight_of(policy.model, status)) ** 0.25
        assert policy.interval(_case(status, 20), TUESDAY) <= cap
    assert policy.interval(_case("card_delivered", 40), TUESDAY) > rota  # the final ones pay


def test_a_case_likelier_to_need_action_has_the_tighter_cap() -> None:
    budget = Budget(calls_per_day=100)
    bounds = longest_active_waits([_case("case_received")] * 200, [1.0, 3.0], budget, calls=95)
    likely, unlikely = _case("rfe_response_received"), _case("card_mailed")
    assert _longest(likely, bounds, 3.0) < bounds.max_interval < _longest(unlikely, bounds, 1.0)


def test_when_the_budget_cannot_afford_the_cap_the_active_cases_share_it() -> None:
    budget = Budget(calls_per_day=100)
    active = [_case("case_received")] * 380
    finals = [_case("card_delivered")] * 20
    bounds = longest_active_waits(active + finals, [2.0] * 10, budget, calls=100)
    assert bounds.max_interval > 0.8 * timedelta(days=400 / 100)
    floor = 380 / (bounds.max_interval / timedelta(days=1))
    finals_spend = 20 / 30  # at their longest interval
    assert floor == pytest.approx(100 - finals_spend)
    assert longest_active_waits(finals, [], budget, calls=100) == budget


def test_the_freshness_estimate_plays_out_the_day_as_the_worker_spends_it() -> None:
    rng = random.Random(5)
    statuses = ["case_received", "fingerprints_taken", "card_delivered", "card_delivered"]
    caseload = [_case(rng.choice(statuses), days_in=rng.uniform(0, 200)) for _ in range(200)]
    budget = Budget(calls_per_day=400)
    policy = AdaptivePolicy(budget)
    policy.refit(TUESDAY, caseload * 2)  # a 400-case firm; the plan is for half of it
    plans = planned_checks(policy, caseload, TUESDAY, share=0.5)
    end = TUESDAY + timedelta(days=7)
    made = sum(1 for checks in plans for moment in checks if moment < end)
    # Early checks fill what the intervals leave unspent: the day's budget is used, not exceeded.
    assert made == pytest.approx(200 * 7, rel=0.05)
    per_day: dict[object, int] = {}
    for checks in plans:
        for moment in checks[:-1]:
            per_day[moment.date()] = per_day.get(moment.date(), 0) + 1
    assert max(per_day.values()) <= 200
    assert all(checks == sorted(checks) and checks[-1] >= end for checks in plans)
    waits = [
        b - a
        for case, checks in zip(caseload, plans, strict=True)
        if not is_final(case.status)
        for a, b in itertools.pairwise(checks)
    ]
    assert sum(waits, timedelta()) / len(waits) < policy.bounds.max_interval


def test_delays_are_summarized_by_how_many_changes_wait_that_long() -> None:
    summary = weighted_summary([(1.0, 2.0), (1.0, 4.0), (2.0, 10.0)])
    assert summary == {"mean": 6.5, "p50": 4.0, "p95": 10.0}
    assert weighted_summary([]) == {"mean": None, "p50": None, "p95": None}
