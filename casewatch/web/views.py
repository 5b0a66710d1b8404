"""Staff pages: the case list and a case's page. Every query is scoped to the user's firm."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render

from casewatch.accounts.models import Firm, Membership
from casewatch.cases.models import Case
from casewatch.core.receipts import normalize_receipt
from casewatch.core.statuses import CATEGORIES

PAGE_SIZE = 50


def firm_of(request: HttpRequest) -> Firm:
    """The firm the signed-in user works for; no membership means nothing to see."""
    user_id = request.user.pk
    if not isinstance(user_id, int):
        raise Http404("no firm")
    membership = Membership.objects.filter(user__pk=user_id).select_related("firm").first()
    if membership is None:
        raise Http404("no firm")
    return membership.firm


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


@login_required
def case_list(request: HttpRequest) -> HttpResponse:
    firm = firm_of(request)
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
        },
    )


@login_required
def case_detail(request: HttpRequest, pk: int) -> HttpResponse:
    firm = firm_of(request)
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
