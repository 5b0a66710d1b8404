"""Insights: the caseload in pictures, from the firm's own history.

Four pictures, each also given as a small table (for screen readers, and for anyone
who would rather read numbers): where the active cases stand, how many changes each
of the last 12 weeks brought, how long the firm's cases took from received to approved
per form and service center, and which cases have sat in their status for longer than
the firm's cases usually do.

Counting happens in the database (GROUP BY, filtered COUNTs); what comes back to Python
is a histogram of whole days per group, from which percentiles are exact. Figures that
read the whole history (processing times, normal stays) are kept in the cache for
HISTORY_CACHE_SECONDS: the history changes slowly, and reading it costs about a second
at 100,000 cases.

Rules:

- A percentile is interpolated linearly between the two nearest days, as PostgreSQL's
  `percentile_cont` and Python's `statistics.quantiles(method="inclusive")` do.
- Durations are whole calendar days (UTC) between the day a status began and the day the
  next one did; a status began on the date USCIS gives for it, else when casewatch saw it.
- Received → approved: from the case's first "received" status to its first "approved"
  one; cases without either are not counted. The service center is read from the
  receipt number's first three letters (casewatch.core.receipts.OFFICES).
- Outside normal processing time: an active case whose current status is not final, and
  that has been in it for longer than the 90th percentile of the firm's finished stays
  in that status for that form, when the firm has at least MIN_SAMPLES such stays.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, TypeVar

from django.core.cache import cache
from django.core.paginator import Paginator
from django.db import connection
from django.db.models import Count, F, Q, QuerySet
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.formats import date_format, number_format
from django.utils.functional import Promise
from django.utils.translation import get_language, gettext_lazy
from django.utils.translation import gettext as _

from casewatch.accounts.models import Firm, Membership
from casewatch.accounts.permissions import Action
from casewatch.cases.models import Case, StatusEvent
from casewatch.core.receipts import OFFICES
from casewatch.core.statuses import CATEGORIES, default_catalog
from casewatch.web.access import staff_view
from casewatch.web.labels import CATEGORY_LABELS

WEEKS = 12
MIN_SAMPLES = 20
NORMAL_PERCENTILE = 0.9
HISTORY_CACHE_SECONDS = 15 * 60
OUTSIDE_PAGE_SIZE = 50
MAX_LISTED = 1000

# The offices' names as people at the firm say them, in their language.
OFFICE_LABELS: Mapping[str, Promise] = {
    "Vermont Service Center": gettext_lazy("Vermont Service Center"),
    "California Service Center": gettext_lazy("California Service Center"),
    "Nebraska Service Center": gettext_lazy("Nebraska Service Center"),
    "Texas Service Center": gettext_lazy("Texas Service Center"),
    "National Benefits Center": gettext_lazy("National Benefits Center"),
    "Potomac Service Center": gettext_lazy("Potomac Service Center"),
    "USCIS Electronic Immigration System (ELIS)": gettext_lazy("USCIS online filing (ELIS)"),
}
OTHER_OFFICE = gettext_lazy("Other office")

# Bar colours by category, darker for what needs action; the legend is the table.
CATEGORY_COLOURS: Mapping[str, str] = {
    "evidence_requested": "#b3261e",
    "intent_to_deny": "#b3261e",
    "denied": "#7f1d1d",
    "rejected": "#7f1d1d",
    "revoked": "#7f1d1d",
    "returned_mail": "#b45309",
    "transferred": "#b45309",
    "interview_scheduled": "#b45309",
    "appeal": "#b45309",
    "approved": "#1e7b3a",
    "document_production": "#1e7b3a",
    "document_mailed": "#1e7b3a",
    "document_delivered": "#1e7b3a",
    "unknown": "#6b7280",
}
DEFAULT_COLOUR = "#1f5fbf"
ACTION_COLOUR = "#b3261e"

# Whole calendar days (UTC) from `earlier` to `later` (SQL timestamps), per database. SQLite
# keeps timestamps as ISO text in UTC, so the date is its first ten characters (cheaper to
# read than date(), which parses the whole value).
DAYS_BETWEEN: Mapping[str, str] = {
    "sqlite": (
        "CAST(julianday(substr({later}, 1, 10)) - julianday(substr({earlier}, 1, 10)) AS INTEGER)"
    ),
    "postgresql": "(CAST({later} AS date) - CAST({earlier} AS date))",
}

# --- Percentiles from histograms ------------------------------------------------------


Histogram = Sequence[tuple[int, int]]  # (days, how many), in any order


def percentile(histogram: Histogram, q: float) -> float | None:
    """The q-th quantile (0 ≤ q ≤ 1) of the values a histogram counts, interpolated."""
    ordered = sorted((days, n) for days, n in histogram if n > 0)
    total = sum(n for _days, n in ordered)
    if total == 0:
        return None
    rank = q * (total - 1)
    low, high = math.floor(rank), math.ceil(rank)
    below = above = None
    seen = 0
    for days, n in ordered:
        if below is None and low < seen + n:
            below = days
        if high < seen + n:
            above = days
            break
        seen += n
    assert below is not None and above is not None
    return below + (above - below) * (rank - low)


@dataclass(frozen=True)
class Spread:
    """How long something took: how many cases, the median, and the middle half."""

    count: int
    median: float
    p25: float
    p75: float
    p90: float

    @classmethod
    def of(cls, histogram: Histogram) -> Spread | None:
        count = sum(n for _days, n in histogram)
        if count == 0:
            return None
        values = [percentile(histogram, q) for q in (0.5, 0.25, 0.75, NORMAL_PERCENTILE)]
        median, p25, p75, p90 = (float(v or 0) for v in values)
        return cls(count=count, median=median, p25=p25, p75=p75, p90=p90)


# --- What the database counts ---------------------------------------------------------


def status_distribution(firm: Firm) -> list[tuple[str, int]]:
    """Active cases per category, in the order a case moves through them.

    All of the firm's cases are counted from the (firm, category) index alone, and the
    archived ones, found through the (firm, archived_at) index, taken away: filtering
    on `archived_at` in the grouped count would read every case's row.
    """
    cases = Case.objects.filter(firm=firm)
    counts = Counter(
        dict(
            cases.values_list("category")
            .annotate(n=Count("pk"))
            .values_list("category", "n")
            .order_by()
        )
    )
    counts.subtract(cases.filter(archived_at__isnull=False).values_list("category", flat=True))
    order = [*CATEGORIES, ""]
    return [(c, counts[c]) for c in order if counts.get(c, 0) > 0]


@dataclass(frozen=True)
class Week:
    starts: date
    changes: int
    needing_action: int


def changes_per_week(firm: Firm, today: date, weeks: int = WEEKS) -> list[Week]:
    """Changes (not first sightings) per week, Monday to Sunday UTC, the last `weeks` weeks.

    One query: a filtered COUNT per week over the firm's events in the window.
    """
    this_monday = today - timedelta(days=today.weekday())
    starts = [this_monday - timedelta(weeks=weeks - 1 - i) for i in range(weeks)]
    bounds = [_midnight(s) for s in [*starts, this_monday + timedelta(weeks=1)]]
    counts: dict[str, Any] = {}
    for i in range(weeks):
        within = Q(observed_at__gte=bounds[i], observed_at__lt=bounds[i + 1])
        counts[f"w{i}"] = Count("pk", filter=within)
        counts[f"a{i}"] = Count("pk", filter=within & Q(urgency="action"))
    figures = StatusEvent.objects.filter(
        firm=firm, initial=False, observed_at__gte=bounds[0], observed_at__lt=bounds[-1]
    ).aggregate(**counts)
    return [Week(s, figures[f"w{i}"], figures[f"a{i}"]) for i, s in enumerate(starts)]


def _midnight(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, datetime.min.time()))


def _days_sql(later: str, earlier: str) -> str:
    return DAYS_BETWEEN[connection.vendor].format(later=later, earlier=earlier)


def _histograms(sql: str, params: Sequence[Any]) -> dict[tuple[str, str], list[tuple[int, int]]]:
    """Rows of (group, subgroup, days, count) gathered into one histogram per group."""
    found: dict[tuple[str, str], list[tuple[int, int]]] = defaultdict(list)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        for first, second, days, n in cursor.fetchall():
            found[(first or "", second or "")].append((int(days), int(n)))
    return dict(found)


def _began(alias: str) -> str:
    return f"COALESCE({alias}.uscis_date, {alias}.observed_at)"


def received_to_approved(firm: Firm) -> dict[tuple[str, str], list[tuple[int, int]]]:
    """Days from received to approved, as histograms per (form, receipt prefix)."""
    events, cases = StatusEvent._meta.db_table, Case._meta.db_table
    sql = f"""
        WITH spans AS (
            SELECT e.case_id AS case_id,
                MIN(CASE WHEN e.category = 'received' THEN {_began("e")} END) AS received_at,
                MIN(CASE WHEN e.category = 'approved' THEN {_began("e")} END) AS approved_at
            FROM {events} e
            WHERE e.firm_id = %s AND e.category IN ('received', 'approved')
            GROUP BY e.case_id
        )
        SELECT c.form_type, SUBSTR(c.receipt_number, 1, 3),
            {_days_sql("s.approved_at", "s.received_at")} AS days, COUNT(*)
        FROM spans s JOIN {cases} c ON c.id = s.case_id
        WHERE s.received_at IS NOT NULL AND s.approved_at >= s.received_at
        GROUP BY c.form_type, SUBSTR(c.receipt_number, 1, 3),
            {_days_sql("s.approved_at", "s.received_at")}
    """  # noqa: S608 (table names from the models, values as parameters)
    return _histograms(sql, [firm.pk])


def finished_stays(firm: Firm) -> dict[tuple[str, str], list[tuple[int, int]]]:
    """Days each status lasted until the next one began, as histograms per (form, status)."""
    events, cases = StatusEvent._meta.db_table, Case._meta.db_table
    sql = f"""
        WITH ordered AS (
            SELECT e.case_id AS case_id, e.status AS status, {_began("e")} AS began,
                LEAD({_began("e")}) OVER (
                    PARTITION BY e.case_id ORDER BY {_began("e")}, e.id
                ) AS ended
            FROM {events} e
            WHERE e.firm_id = %s
        )
        SELECT c.form_type, o.status, {_days_sql("o.ended", "o.began")} AS days, COUNT(*)
        FROM ordered o JOIN {cases} c ON c.id = o.case_id
        WHERE o.ended IS NOT NULL
        GROUP BY c.form_type, o.status, {_days_sql("o.ended", "o.began")}
    """  # noqa: S608 (table names from the models, values as parameters)
    return _histograms(sql, [firm.pk])


T = TypeVar("T")


def _kept(firm: Firm, name: str, compute: Callable[[Firm], T]) -> T:
    """A figure from the whole history, computed at most every HISTORY_CACHE_SECONDS."""
    key = f"casewatch:insights:{firm.pk}:{name}"
    found: T | None = cache.get(key)
    if found is None:
        found = compute(firm)
        cache.set(key, found, HISTORY_CACHE_SECONDS)
    return found


# --- What the page shows ---------------------------------------------------------------


@dataclass(frozen=True)
class ProcessingTime:
    """Received → approved for one form at one office ("" when the prefix names none)."""

    form: str
    office: str
    prefixes: tuple[str, ...]
    spread: Spread

    @property
    def office_label(self) -> str:
        """The office's name in the page's language (kept figures hold no language)."""
        return str(OFFICE_LABELS.get(self.office, OTHER_OFFICE))


def processing_times(
    histograms: Mapping[tuple[str, str], Sequence[tuple[int, int]]],
) -> list[ProcessingTime]:
    """Received → approved per form and office (prefixes of one office counted together)."""
    merged: dict[tuple[str, str], dict[int, int]] = defaultdict(lambda: defaultdict(int))
    prefixes: dict[tuple[str, str], set[str]] = defaultdict(set)
    for (form, prefix), histogram in histograms.items():
        key = (form, OFFICES.get(prefix, ""))
        prefixes[key].add(prefix)
        for days, n in histogram:
            merged[key][days] += n
    rows = []
    for (form, office), counts in merged.items():
        spread = Spread.of(list(counts.items()))
        if spread is not None:
            rows.append(
                ProcessingTime(form, office, tuple(sorted(prefixes[(form, office)])), spread)
            )
    return sorted(rows, key=lambda r: (r.form, r.office))


@dataclass(frozen=True)
class NormalStay:
    """How long the firm's cases of one form usually stay in one status."""

    form: str
    status: str
    spread: Spread

    @property
    def limit_days(self) -> float:
        return self.spread.p90


def normal_stays(
    histograms: Mapping[tuple[str, str], Sequence[tuple[int, int]]],
) -> dict[tuple[str, str], NormalStay]:
    """The (form, status) pairs with enough finished stays to say what is normal."""
    final = {key for key, status in default_catalog().statuses.items() if status.final}
    stays = {}
    for (form, status), histogram in histograms.items():
        if not form or status in final:
            continue
        spread = Spread.of(histogram)
        if spread is not None and spread.count >= MIN_SAMPLES:
            stays[(form, status)] = NormalStay(form, status, spread)
    return stays


def late_cases(
    firm: Firm, stays: Mapping[tuple[str, str], NormalStay], now: datetime
) -> QuerySet[Case]:
    """Active cases in their status for longer than the firm's 90th percentile for it."""
    active = Case.objects.filter(firm=firm, archived_at__isnull=True).annotate(
        since=Coalesce("uscis_status_since", "status_since")
    )
    if not stays:
        return active.none()
    by_status: dict[str, Q] = defaultdict(Q)
    for (form, status), stay in stays.items():
        by_status[status] |= Q(form_type=form, since__lt=now - timedelta(days=stay.limit_days))
    late = Q()
    for status, forms in by_status.items():
        late |= Q(status=status) & forms
    return active.filter(late)


def _still_late(case: Case, stays: Mapping[tuple[str, str], NormalStay], now: datetime) -> bool:
    stay = stays.get((case.form_type, case.status))
    since: datetime | None = getattr(case, "since", None)
    return stay is not None and since is not None and since < now - timedelta(days=stay.limit_days)


@dataclass(frozen=True)
class OutsideNormal:
    """How many cases are late per (form, status), and the longest-waiting ones' ids."""

    counts: dict[tuple[str, str], int]
    case_ids: list[int]

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def outside_normal(
    firm: Firm, stays: Mapping[tuple[str, str], NormalStay], now: datetime
) -> OutsideNormal:
    """One pass over the late cases: counts per group, and the first MAX_LISTED ids.

    It reads every active case's status (there is no index to narrow that down), so it
    is kept with the history figures it depends on.
    """
    counts: dict[tuple[str, str], int] = defaultdict(int)
    ids: list[int] = []
    late = late_cases(firm, stays, now).order_by(F("since").asc(), "pk")
    for pk, form, status in late.values_list("pk", "form_type", "status").iterator(2000):
        counts[(form, status)] += 1
        if len(ids) < MAX_LISTED:
            ids.append(pk)
    return OutsideNormal(dict(counts), ids)


def status_title(key: str) -> tuple[str, str]:
    """A status's title in the page's language when the catalog has one: (title, lang)."""
    status = default_catalog().statuses.get(key)
    if status is None:
        return key, "en"
    if (get_language() or "en").startswith("es") and status.title_es:
        return status.title_es, "es"
    return status.title_en, "en"


# --- Charts: shapes computed here, drawn as SVG by the template ------------------------


@dataclass(frozen=True)
class Bar:
    label: str
    value: int
    x: float
    y: float
    width: float
    height: float
    colour: str
    label_x: float = 0
    label_y: float = 0
    text: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


CHART_WIDTH = 640
LABEL_WIDTH = 190
ROW_HEIGHT = 24


def horizontal_bars(items: Sequence[tuple[str, int, str]]) -> tuple[list[Bar], int]:
    """One bar per (label, value, colour), scaled to the largest; returns bars and height."""
    largest = max((v for _l, v, _c in items), default=0) or 1
    room = CHART_WIDTH - LABEL_WIDTH - 70
    bars = []
    for i, (label, value, colour) in enumerate(items):
        y = i * ROW_HEIGHT + 4
        width = max(room * value / largest, 1 if value else 0)
        bars.append(
            Bar(
                label=label,
                value=value,
                x=LABEL_WIDTH,
                y=y,
                width=round(width, 1),
                height=ROW_HEIGHT - 8,
                colour=colour,
                label_x=LABEL_WIDTH + width + 6,
                label_y=y + ROW_HEIGHT / 2,
                text=number_format(value, use_l10n=True),
            )
        )
    return bars, len(items) * ROW_HEIGHT + 8


@dataclass(frozen=True)
class Column:
    label: str
    month: str
    total: int
    action: int
    x: float
    width: float
    y_total: float
    h_total: float
    y_action: float
    h_action: float
    text_y: float


COLUMN_CHART_HEIGHT = 220
COLUMN_AREA = 160


def week_columns(weeks: Sequence[Week]) -> list[Column]:
    """Stacked columns: changes needing action at the bottom, the others above."""
    largest = max((w.changes for w in weeks), default=0) or 1
    step = (CHART_WIDTH - 40) / max(len(weeks), 1)
    columns = []
    previous_month = 0
    for i, week in enumerate(weeks):
        h_total = COLUMN_AREA * week.changes / largest
        h_action = COLUMN_AREA * week.needing_action / largest
        base = 20 + COLUMN_AREA
        columns.append(
            Column(
                label=date_format(week.starts, "j"),
                month=date_format(week.starts, "M") if week.starts.month != previous_month else "",
                total=week.changes,
                action=week.needing_action,
                x=round(30 + i * step + step * 0.15, 1),
                width=round(step * 0.7, 1),
                y_total=round(base - h_total, 1),
                h_total=round(h_total, 1),
                y_action=round(base - h_action, 1),
                h_action=round(h_action, 1),
                text_y=round(base - h_total - 4, 1),
            )
        )
        previous_month = week.starts.month
    return columns


@dataclass(frozen=True)
class RangeRow:
    """One processing-time row: its name above a bar over the middle half (p25–p75),
    with the median marked."""

    item: ProcessingTime
    top: float
    x25: float
    x75: float
    x50: float

    @property
    def width(self) -> float:
        return round(self.x75 - self.x25, 1)

    @property
    def text_y(self) -> float:
        return self.top + 10

    @property
    def bar_y(self) -> float:
        return self.top + 14

    @property
    def mark_top(self) -> float:
        return self.top + 12

    @property
    def mark_bottom(self) -> float:
        return self.top + 28


RANGE_ROW_HEIGHT = 34
RANGE_LEFT = 4


def range_rows(
    rows: Sequence[ProcessingTime],
) -> tuple[list[RangeRow], int, list[tuple[float, int]]]:
    """Rows on one shared scale of days from 0; returns rows, chart height and axis ticks."""
    largest = max((r.spread.p75 for r in rows), default=0) or 1
    scale = (CHART_WIDTH - RANGE_LEFT - 24) / largest

    def x(days: float) -> float:
        return round(RANGE_LEFT + days * scale, 1)

    drawn = [
        RangeRow(
            item=row,
            top=i * RANGE_ROW_HEIGHT,
            x25=x(row.spread.p25),
            x75=max(x(row.spread.p75), x(row.spread.p25) + 2),
            x50=x(row.spread.median),
        )
        for i, row in enumerate(rows)
    ]
    ticks = [(x(d), d) for d in range(0, int(largest) + 1, _nice_step(largest))]
    return drawn, len(rows) * RANGE_ROW_HEIGHT + 22, ticks


def _nice_step(largest: float) -> int:
    for step in (1, 2, 5, 10, 20, 30, 50, 100, 200, 365, 500, 1000):
        if largest / step <= 6:
            return step
    return 1000


@dataclass(frozen=True)
class LateCase:
    case: Case
    days: int
    limit: float
    status_title: str
    status_lang: str


@staff_view(Action.VIEW_CASES)
def insights(request: HttpRequest, membership: Membership) -> HttpResponse:
    firm = membership.firm
    now = timezone.now()
    today = timezone.localdate()

    distribution = status_distribution(firm)
    status_bars, status_height = horizontal_bars(
        [
            (
                str(CATEGORY_LABELS.get(c, c)) if c else _("Not read yet"),
                n,
                CATEGORY_COLOURS.get(c, DEFAULT_COLOUR),
            )
            for c, n in distribution
        ]
    )
    weeks = changes_per_week(firm, today)
    times = _kept(firm, "processing_times", lambda f: processing_times(received_to_approved(f)))
    drawn_times, times_height, ticks = range_rows(times)
    stays = _kept(firm, "normal_stays", lambda f: normal_stays(finished_stays(f)))
    outside = _kept(firm, "outside_normal", lambda f: outside_normal(f, stays, now))
    page = Paginator(outside.case_ids, OUTSIDE_PAGE_SIZE).get_page(request.GET.get("page"))
    # Re-read the cases on this page: one that moved on since the figures were kept drops out.
    loaded = {
        case.pk: case
        for case in Case.objects.filter(firm=firm, archived_at__isnull=True, pk__in=list(page))
        .annotate(since=Coalesce("uscis_status_since", "status_since"))
        .select_related("attorney")
        if _still_late(case, stays, now)
    }
    listed = []
    for pk in page:
        case = loaded.get(pk)
        if case is None:
            continue
        stay = stays[(case.form_type, case.status)]
        title, lang = status_title(case.status)
        since: datetime = case.since
        listed.append(LateCase(case, (now - since).days, stay.limit_days, title, lang))
    groups = [
        (stays[key], *status_title(key[1]), n) for key, n in outside.counts.items() if key in stays
    ]
    groups.sort(key=lambda g: (-g[3], g[0].form, g[0].status))
    return render(
        request,
        "insights/insights.html",
        {
            "firm": firm,
            "chart_width": CHART_WIDTH,
            "label_end": LABEL_WIDTH - 8,
            "axis_end": CHART_WIDTH - 8,
            "ticks_y": times_height - 6,
            "distribution_total": sum(n for _c, n in distribution),
            "status_bars": status_bars,
            "status_height": status_height,
            "weeks": weeks,
            "columns": week_columns(weeks),
            "column_height": COLUMN_CHART_HEIGHT,
            "changes_total": sum(w.changes for w in weeks),
            "week_count": WEEKS,
            "action_colour": ACTION_COLOUR,
            "other_colour": DEFAULT_COLOUR,
            "times": drawn_times,
            "times_height": times_height,
            "ticks": ticks,
            "late_page": page,
            "late_cases": listed,
            "late_total": outside.total,
            "late_listed": len(outside.case_ids),
            "late_groups": groups,
            "min_samples": MIN_SAMPLES,
            "percentile": round(NORMAL_PERCENTILE * 100),
            "history_minutes": HISTORY_CACHE_SECONDS // 60,
        },
    )
