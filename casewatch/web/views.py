"""Staff pages about cases: where to start (the case list and a case's page are in
casewatch.web.case_list and casewatch.web.case_page).

Every query goes through `membership.firm` (see casewatch.web.access).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from django.core.cache import cache
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from casewatch.accounts.models import Membership
from casewatch.accounts.permissions import Action, may
from casewatch.cases.models import Case
from casewatch.web.access import staff_view
from casewatch.web.access_log import records_access

FRESHNESS_CACHE_SECONDS = 600


def uscis_panel() -> dict[str, Any]:
    """USCIS health, today's budget and what it buys, for the top of the staff pages.

    The freshness estimate learns from the whole caseload, so it is kept for ten minutes;
    its figures, not its English sentence, so that each page words it in its language.
    """
    from casewatch.monitor.freshness import freshness_now
    from casewatch.monitor.health import health_snapshot
    from casewatch.monitor.limiter import shared_quota
    from casewatch.monitor.tasks import current_budget

    health = health_snapshot()
    budget = current_budget()
    freshness = cache.get("casewatch:freshness-figures")
    if freshness is None:
        freshness = asdict(freshness_now(budget, timezone.now()))
        cache.set("casewatch:freshness-figures", freshness, FRESHNESS_CACHE_SECONDS)
    last_read = health["last_success_at"]
    return {
        "circuit": health["circuit"],
        "last_success_at": parse_datetime(last_read) if last_read else None,
        "unreadable_since": health["unreadable_since"],
        "last_error": health["last_error"],
        "used_today": shared_quota(budget.rate_per_second, budget.calls_per_day).used_today(),
        "calls_per_day": budget.calls_per_day,
        "freshness": freshness,
    }


@staff_view(Action.VIEW_CASES)
@records_access()
def home(request: HttpRequest, membership: Membership) -> HttpResponse:
    """The dashboard, or, for a firm that tracks nothing yet, how to start."""
    if Case.objects.filter(firm=membership.firm).exists():
        # Imported here: the dashboard builds on this module's USCIS panel.
        from casewatch.web.dashboard import dashboard

        return dashboard(request, membership)
    return redirect("welcome")


@staff_view(Action.VIEW_CASES)
def welcome(request: HttpRequest, membership: Membership) -> HttpResponse:
    """How a firm brings in its first cases, with only what exists today."""
    return render(
        request,
        "welcome.html",
        {
            "firm": membership.firm,
            "may_add_cases": may(membership.role, Action.CHANGE_CASES),
            "may_manage_team": may(membership.role, Action.MANAGE_TEAM),
            "has_cases": Case.objects.filter(firm=membership.firm).exists(),
        },
    )
