"""The case list: pages of the firm's cases and each member's saved views.

What a list asks for (search, filters, states, sorts) is decided in
casewatch.cases.queries, shared with the REST API. A page shows PAGE_SIZE cases
and counts matches only up to COUNT_CAP, so a firm of 100,000 cases never waits
for a full count.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode

from django import forms
from django.contrib import messages
from django.contrib.auth.models import User
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from casewatch.accounts.models import Firm, Membership
from casewatch.accounts.permissions import Action, may
from casewatch.cases.models import Case, SavedView
from casewatch.cases.queries import (
    NO_ATTORNEY,
    RECEIPT_STATES,
    SORTS,
    STATES,
    clean_parameters,
    counted,
    default_sort,
    matching_cases,
    suggestions,
)
from casewatch.core.statuses import CATEGORIES
from casewatch.web.access import staff_view
from casewatch.web.access_log import records_access
from casewatch.web.exports import default_window, may_export_personal_data
from casewatch.web.labels import URGENCY_LABELS
from casewatch.web.views import uscis_panel

PAGE_SIZE = 50
# Matches are counted up to here; beyond, the page says "more than".
COUNT_CAP = 1000
MAX_PAGE = 10_000


@dataclass(frozen=True)
class ListPage:
    """One page of the list; `count` is None when matches are not counted, and counts
    stop at COUNT_CAP (`more`: there are more than that)."""

    cases: list[Case]
    number: int
    has_next: bool
    count: int | None = None
    more: bool = False

    @property
    def has_previous(self) -> bool:
        return self.number > 1

    @property
    def last(self) -> int | None:
        if self.count is None or self.more:
            return None
        return max(1, -(-self.count // PAGE_SIZE))

    @property
    def first_shown(self) -> int:
        return (self.number - 1) * PAGE_SIZE + 1 if self.cases else 0

    @property
    def last_shown(self) -> int:
        return (self.number - 1) * PAGE_SIZE + len(self.cases)


def list_page(cases: QuerySet[Case] | None, number: int, *, count: bool = True) -> ListPage:
    """The page `number` of `cases`: one row more than shown is read to know if one follows."""
    if cases is None:
        return ListPage([], 1, has_next=False, count=0)
    total = None
    if count:
        total = cases.order_by()[: COUNT_CAP + 1].count()
        if total <= COUNT_CAP:
            number = min(number, max(1, -(-total // PAGE_SIZE)))
    start = (number - 1) * PAGE_SIZE
    # The page's ids first, then its rows: the database sorts narrow rows and joins the
    # client and attorney to the 50 shown only, whatever it guessed of the filters.
    ids = list(cases.values_list("pk", flat=True)[start : start + PAGE_SIZE + 1])
    found = (
        Case.objects.select_related("client", "attorney")
        .defer("notes", "last_problem", "claimed_by", "client__time_zone")
        .in_bulk(ids)
    )
    rows = [found[pk] for pk in ids if pk in found]
    return ListPage(
        rows[:PAGE_SIZE],
        number,
        has_next=len(rows) > PAGE_SIZE,
        count=None if total is None else min(total, COUNT_CAP),
        more=total is not None and total > COUNT_CAP,
    )


def _page_number(text: str | None) -> int:
    return min(max(int(text), 1), MAX_PAGE) if text and text.isdigit() else 1


def attorneys(firm: Firm) -> list[User]:
    """Who may be named as a case's attorney or paralegal: the firm's members."""
    return list(
        User.objects.filter(memberships__firm=firm).order_by("first_name", "last_name", "username")
    )


@staff_view(Action.VIEW_CASES)
@records_access()
def case_list(request: HttpRequest, membership: Membership) -> HttpResponse:
    """The firm's cases, searched, filtered, sorted and a page at a time."""
    firm = membership.firm
    parameters = clean_parameters(request.GET)
    page = list_page(
        matching_cases(firm, parameters),
        _page_number(request.GET.get("page")),
        count=counted(parameters),
    )
    query = urlencode(parameters)
    export_since, export_until = default_window(timezone.localdate())
    return render(
        request,
        "cases/list.html",
        {
            "firm": firm,
            "page": page,
            "p": parameters,
            "query": query,
            "filtered": bool(parameters.keys() - {"sort"}),
            "categories": [c for c in CATEGORIES if c != "unknown"] + ["unknown"],
            "urgencies": list(URGENCY_LABELS),
            "states": [(key, label) for key, (label, _q) in STATES.items()],
            "receipt_states": [(key, label) for key, (label, _q) in RECEIPT_STATES.items()],
            "sorts": [(key, sort.label) for key, sort in SORTS.items()],
            "sort": parameters.get("sort") or default_sort(parameters),
            "attorneys": attorneys(firm),
            "no_attorney": NO_ATTORNEY,
            "suggestions": suggestions(firm),
            "saved_views": SavedView.objects.filter(firm=firm, owner=membership.user).order_by(
                "name"
            ),
            "may_save_views": may(membership.role, Action.CHANGE_CASES),
            "count_cap": COUNT_CAP,
            "uscis": uscis_panel(),
            "export_since": export_since,
            "export_until": export_until,
            "export_personal": may_export_personal_data(membership),
        },
    )


class SavedViewForm(forms.Form):
    name = forms.CharField(label=gettext_lazy("Name of this view"), max_length=100)
    query = forms.CharField(required=False, max_length=2000, widget=forms.HiddenInput)


@staff_view(Action.CHANGE_CASES, change=Action.CHANGE_CASES)
def save_view(request: HttpRequest, membership: Membership) -> HttpResponse:
    """Keep the list's current filters under a name, for this member only (same name: replaced)."""
    form = SavedViewForm(request.POST if request.method == "POST" else None)
    if request.method != "POST" or not form.is_valid():
        messages.error(request, _("Give the view a name to save it."))
        return redirect("case-list")
    query = urlencode(clean_parameters(QueryDict(form.cleaned_data["query"])))
    name = form.cleaned_data["name"].strip()
    SavedView.objects.update_or_create(
        firm=membership.firm, owner=membership.user, name=name, defaults={"query": query}
    )
    messages.success(request, _("View “%(name)s” saved.") % {"name": name})
    return redirect(reverse("case-list") + (f"?{query}" if query else ""))


@staff_view(Action.CHANGE_CASES, change=Action.CHANGE_CASES)
def delete_view(request: HttpRequest, membership: Membership, pk: int) -> HttpResponse:
    """Forget one of this member's saved views; anyone else's is not found."""
    view = get_object_or_404(SavedView, pk=pk, firm=membership.firm, owner=membership.user)
    if request.method == "POST":
        view.delete()
        messages.success(request, _("View “%(name)s” deleted.") % {"name": view.name})
    return redirect("case-list")
