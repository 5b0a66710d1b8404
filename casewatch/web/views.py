"""Staff pages about cases: where to start, the case list and a case's page.

Every query goes through `membership.firm` (see casewatch.web.access).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from django.core.cache import cache
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from casewatch.accounts.models import Firm, Membership
from casewatch.accounts.permissions import Action, may
from casewatch.cases.models import Case
from casewatch.core.receipts import normalize_receipt
from casewatch.core.statuses import CATEGORIES
from casewatch.web.access import staff_view

PAGE_SIZE = 50
FRESHNESS_CACHE_SECONDS = 600


def _filtered(request: HttpRequest, firm: Firm) -> QuerySet[Case]:
    cases = Case.objects.filter(firm=firm).select_related("client", "attorney", "paralegal")
    query = request.GET.get("q", "").strip()
    if query:
        cases = cases.filter(receipt_number__startswith=normalize_receipt(query))
    category = request.GET.get("category", "")
    if category in CATEGORIES:
        cases = cases.filter(category=category)
    if request.GET.get("archived") == "1":
        cases = cases.filter(archived_at__isnull=False)
    else:
        cases = cases.filter(archived_at__isnull=True)
    return cases.order_by("-status_since", "-pk")


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
def home(request: HttpRequest, membership: Membership) -> HttpResponse:
    """The case list, or, for a firm that tracks nothing yet, how to start."""
    if Case.objects.filter(firm=membership.firm).exists():
        return redirect("case-list")
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


@staff_view(Action.VIEW_CASES)
def case_list(request: HttpRequest, membership: Membership) -> HttpResponse:
    firm = membership.firm
    page = Paginator(_filtered(request, firm), PAGE_SIZE).get_page(request.GET.get("page"))
    return render(
        request,
        "cases/list.html",
        {
            "firm": firm,
            "page": page,
            "categories": [c for c in CATEGORIES if c != "unknown"] + ["unknown"],
            "query": request.GET.get("q", ""),
            "category": request.GET.get("category", ""),
            "total": Case.objects.filter(firm=firm, archived_at__isnull=True).count(),
            "uscis": uscis_panel(),
        },
    )


@staff_view(Action.VIEW_CASES)
def case_detail(request: HttpRequest, membership: Membership, pk: int) -> HttpResponse:
    firm = membership.firm
    case = get_object_or_404(
        Case.objects.select_related("client", "attorney", "paralegal"), pk=pk, firm=firm
    )
    return render(
        request,
        "cases/detail.html",
        {
            "firm": firm,
            "case": case,
            "events": case.events.order_by("-observed_at", "-pk"),
            "deadlines": case.deadlines.order_by("due_on"),
            "last_observation": case.observations.order_by("-observed_at").first(),
        },
    )
