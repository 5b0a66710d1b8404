"""Insights: pictures of the caseload from the firm's own history, with exact figures.

The histories here are made by hand, so that every median, percentile and flag can be
worked out on paper.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, timedelta

import pytest
from django.core.cache import cache
from django.test import Client as Browser
from django.utils import timezone
from hypothesis import given
from hypothesis import strategies as st

from casewatch.accounts.models import Firm, Role
from casewatch.cases.models import Case, StatusEvent
from casewatch.core.receipts import OFFICES
from casewatch.core.statuses import default_catalog
from casewatch.web.insights import (
    MIN_SAMPLES,
    OFFICE_LABELS,
    Spread,
    changes_per_week,
    finished_stays,
    normal_stays,
    percentile,
    processing_times,
    received_to_approved,
    status_distribution,
)
from tests.environment import sign_in
from tests.test_i18n import SPANISH, _english_left
from tests.test_web import _member

DAY0 = datetime(2025, 1, 6, 12, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    """History figures are kept in the cache; each test starts from its own history."""
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def firm() -> Firm:
    return Firm.objects.create(name="Example Immigration Law", slug="example")


_serial = iter(range(10**9, 2 * 10**9))


def _case(
    firm: Firm,
    path: Sequence[tuple[str, datetime]],
    *,
    form: str = "I-485",
    prefix: str = "EAC",
    archived: bool = False,
) -> Case:
    """A case that went through `path` (status key, when it began), its last status now."""
    case = Case.objects.create(firm=firm, receipt_number=f"{prefix}{next(_serial)}", form_type=form)
    statuses = default_catalog().statuses
    for i, (key, began) in enumerate(path):
        status = statuses[key]
        StatusEvent.objects.create(
            firm=firm,
            case=case,
            status=key,
            category=status.category,
            urgency=status.urgency,
            confidence=1.0,
            title_en=status.title_en,
            title_es=status.title_es,
            uscis_date=began,
            observed_at=began + timedelta(hours=3),
            source="sandbox",
            initial=i == 0,
        )
    last_key, last_began = path[-1]
    last = statuses[last_key]
    Case.objects.filter(pk=case.pk).update(
        status=last_key,
        category=last.category,
        urgency=last.urgency,
        title_en=last.title_en,
        title_es=last.title_es,
        status_since=last_began + timedelta(hours=3),
        uscis_status_since=last_began,
        archived_at=timezone.now() if archived else None,
    )
    return case


def _approved_after(firm: Firm, days: int, **kwargs: object) -> Case:
    return _case(
        firm,
        [("case_received", DAY0), ("approved", DAY0 + timedelta(days=days))],
        **kwargs,  # type: ignore[arg-type]
    )


# --- Percentiles ------------------------------------------------------------------------


def test_percentiles_are_interpolated_between_the_nearest_days() -> None:
    histogram = [(10, 1), (20, 1), (30, 1), (40, 1)]
    assert percentile(histogram, 0.5) == 25
    assert percentile(histogram, 0.25) == 17.5
    assert percentile(histogram, 0.75) == 32.5
    assert percentile([(7, 3)], 0.9) == 7
    assert percentile([], 0.5) is None
    assert Spread.of([(40, 1), (10, 2)]) == Spread(count=3, median=10, p25=10, p75=25, p90=34)


@given(st.lists(st.integers(min_value=0, max_value=2000), min_size=2, max_size=60))
def test_a_histogram_gives_the_same_percentiles_as_the_list_of_days(days: list[int]) -> None:
    histogram = [(d, days.count(d)) for d in set(days)]
    quartiles = statistics.quantiles(days, n=4, method="inclusive")
    assert percentile(histogram, 0.25) == pytest.approx(quartiles[0])
    assert percentile(histogram, 0.5) == pytest.approx(statistics.median(days))
    assert percentile(histogram, 0.75) == pytest.approx(quartiles[2])


# --- What the database counts -----------------------------------------------------------


@pytest.mark.django_db
def test_processing_time_is_received_to_approved_per_form_and_service_center(
    firm: Firm,
) -> None:
    for days in (10, 20, 30, 40):
        _approved_after(firm, days, prefix="EAC")
    _approved_after(firm, 50, prefix="VSC")  # another prefix of the Vermont Service Center
    _approved_after(firm, 100, prefix="LIN")
    _approved_after(firm, 70, form="I-130", prefix="LIN")
    _case(firm, [("case_received", DAY0)])  # not approved yet: not counted
    _case(firm, [("actively_reviewed", DAY0), ("approved", DAY0 + timedelta(days=5))])
    other = Firm.objects.create(name="Other Firm", slug="other")
    _approved_after(other, 1, prefix="EAC")

    rows = {(r.form, r.office): r for r in processing_times(received_to_approved(firm))}
    assert set(rows) == {
        ("I-485", "Vermont Service Center"),
        ("I-485", "Nebraska Service Center"),
        ("I-130", "Nebraska Service Center"),
    }
    vermont = rows[("I-485", "Vermont Service Center")]
    assert vermont.prefixes == ("EAC", "VSC")
    assert vermont.spread == Spread(count=5, median=30, p25=20, p75=40, p90=46)
    assert rows[("I-485", "Nebraska Service Center")].spread.median == 100


@pytest.mark.django_db
def test_a_case_approved_again_counts_its_first_approval(firm: Firm) -> None:
    _case(
        firm,
        [
            ("case_received", DAY0),
            ("approved", DAY0 + timedelta(days=12)),
            ("card_being_produced", DAY0 + timedelta(days=14)),
            ("approved", DAY0 + timedelta(days=90)),
        ],
    )
    (row,) = processing_times(received_to_approved(firm))
    assert row.spread.median == 12 and row.spread.count == 1


@pytest.mark.django_db
def test_the_distribution_counts_active_cases_by_category(firm: Firm) -> None:
    _case(firm, [("case_received", DAY0)])
    _case(firm, [("case_received", DAY0)])
    _case(firm, [("rfe_sent", DAY0)])
    _case(firm, [("rfe_sent", DAY0)], archived=True)
    Case.objects.create(firm=firm, receipt_number="EAC2490099999")  # not read yet
    assert status_distribution(firm) == [("received", 2), ("evidence_requested", 1), ("", 1)]


@pytest.mark.django_db
def test_changes_per_week_leave_out_first_sightings_and_count_those_needing_action(
    firm: Firm,
) -> None:
    today = date(2026, 3, 4)  # a Wednesday: this week began on Monday 2 March
    monday = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    _case(firm, [("case_received", monday - timedelta(weeks=3))])  # first sighting only
    _case(
        firm,
        [
            ("case_received", monday - timedelta(weeks=20)),
            ("rfe_sent", monday - timedelta(weeks=1)),
            ("rfe_response_received", monday + timedelta(days=1)),
        ],
    )
    _case(firm, [("case_received", monday - timedelta(weeks=40)), ("approved", monday)])
    weeks = changes_per_week(firm, today)
    assert len(weeks) == 12 and weeks[-1].starts == date(2026, 3, 2)
    assert weeks[0].starts == date(2025, 12, 15)
    assert [(w.changes, w.needing_action) for w in weeks[-2:]] == [(1, 1), (2, 0)]
    assert sum(w.changes for w in weeks) == 3


def _stays(firm: Firm, form: str, status: str, days: Sequence[int]) -> None:
    """Finished stays of `status`: one case each, moved on after `days`."""
    for n in days:
        _case(
            firm,
            [(status, DAY0), ("approved", DAY0 + timedelta(days=n))],
            form=form,
        )


@pytest.mark.django_db
def test_normal_time_in_a_status_is_the_firms_90th_percentile_with_enough_samples(
    firm: Firm,
) -> None:
    _stays(firm, "I-130", "actively_reviewed", range(1, MIN_SAMPLES + 1))  # 1 … 20 days
    _stays(firm, "I-765", "actively_reviewed", range(1, MIN_SAMPLES))  # one too few
    stays = normal_stays(finished_stays(firm))
    reviewed = stays[("I-130", "actively_reviewed")]
    assert reviewed.spread.count == MIN_SAMPLES
    assert reviewed.limit_days == pytest.approx(18.1)  # rank 0.9 × 19 = 17.1 → 18 + 0.1
    assert ("I-765", "actively_reviewed") not in stays
    assert not any(status == "approved" for _form, status in stays)  # never left


# --- The page ---------------------------------------------------------------------------


def _outside_normal_firm(firm: Firm) -> dict[str, Case]:
    now = timezone.now()
    _stays(firm, "I-130", "actively_reviewed", range(1, MIN_SAMPLES + 1))
    _stays(firm, "I-765", "actively_reviewed", range(1, MIN_SAMPLES))
    return {
        "late": _case(firm, [("actively_reviewed", now - timedelta(days=30))], form="I-130"),
        "fine": _case(firm, [("actively_reviewed", now - timedelta(days=10))], form="I-130"),
        "few_samples": _case(
            firm, [("actively_reviewed", now - timedelta(days=300))], form="I-765"
        ),
        "archived": _case(
            firm, [("actively_reviewed", now - timedelta(days=90))], form="I-130", archived=True
        ),
    }


@pytest.mark.django_db
def test_the_page_flags_cases_outside_normal_processing_time(firm: Firm) -> None:
    cases = _outside_normal_firm(firm)
    browser = Browser()
    sign_in(browser, _member(firm, "paula", Role.FRONT_DESK))  # everyone may look
    page = browser.get("/insights/").content.decode()
    section = page[page.index('id="late-h"') :]
    assert str(cases["late"].receipt_number) in section
    for name in ("fine", "few_samples", "archived"):
        assert str(cases[name].receipt_number) not in section, name
    assert "18.1" in section and f'href="/cases/{cases["late"].pk}/"' in section
    assert "Case Is Being Actively Reviewed By USCIS" in section


@pytest.mark.django_db
def test_every_chart_is_an_svg_with_a_title_and_a_table_of_its_numbers(firm: Firm) -> None:
    for days in (10, 20, 30, 40):
        _approved_after(firm, days)
    _case(firm, [("case_received", timezone.now() - timedelta(days=2))])
    browser = Browser()
    sign_in(browser, _member(firm, "paula"))
    page = browser.get("/insights/").content.decode()
    assert "<script" not in page
    charts = re.findall(
        r'<svg class="chart-svg"[^>]*role="img" aria-labelledby="(\S+) (\S+)"', page
    )
    assert len(charts) == 3
    for title, desc in charts:
        assert f'<title id="{title}">' in page and f'<desc id="{desc}">' in page
    assert page.count('<table class="chart-data">') == 3
    times = page[page.index('id="times-h"') : page.index('id="late-h"')]
    assert "Vermont Service Center" in times
    assert re.search(
        r'<td class="num">4</td><td class="num">25</td><td class="num">17.5–32.5</td>', times
    )


@pytest.mark.django_db
def test_another_firms_history_never_shows(firm: Firm) -> None:
    other = Firm.objects.create(name="Other Firm", slug="other")
    _approved_after(other, 33, form="I-129F")
    browser = Browser()
    sign_in(browser, _member(firm, "paula"))
    page = browser.get("/insights/").content.decode()
    assert "I-129F" not in page and "No active cases yet." in page


@pytest.mark.django_db
def test_the_spanish_insights_page_has_no_english_left(firm: Firm) -> None:
    _outside_normal_firm(firm)
    for days in (10, 20, 30, 40):
        _approved_after(firm, days, prefix="IOE")
    _approved_after(firm, 12, prefix="ZZZ")
    browser = Browser()
    sign_in(browser, _member(firm, "paula"))
    html = browser.get("/insights/", headers={"accept-language": SPANISH}).content.decode()
    assert _english_left(html) == []
    assert "USCIS Está Revisando Activamente el Caso" in html
    assert "Presentación en línea de USCIS (ELIS)" in html and "Otra oficina" in html


def test_every_office_has_a_name_in_the_firms_words() -> None:
    assert set(OFFICES.values()) <= set(OFFICE_LABELS)
