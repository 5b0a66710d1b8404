"""The access log in the staff app: pages that show client data record each look, and
the firm's admins read who looked at what, when, and from where.

A page records a look only when it showed something (a GET answered 200), and not for
the live parts htmx refreshes on its own every minute: those repeat a look already
recorded. Search words are never recorded (they may be a client's name).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time
from functools import update_wrapper
from urllib.parse import urlencode

from django.contrib.auth.models import User
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy

from casewatch.accounts.models import Membership
from casewatch.accounts.permissions import Action
from casewatch.accounts.signals import remote_address
from casewatch.audit import access
from casewatch.audit.chain import staff_actor
from casewatch.audit.models import AccessRecord
from casewatch.cases.models import Case
from casewatch.core.receipts import normalize_receipt
from casewatch.web.access import P, StaffView, staff_view

PAGE_SIZE = 100
MAX_PAGE = 10_000

# What each recorded page is called in the log, by route name.
PAGES: Mapping[str, Promise] = {
    "home": gettext_lazy("Dashboard"),
    "case-list": gettext_lazy("Case list"),
    "cases-csv": gettext_lazy("Case list downloaded as CSV"),
    "events-csv": gettext_lazy("Status changes downloaded as CSV"),
    "case-detail": gettext_lazy("Case page"),
    "case-edit": gettext_lazy("Case edit form"),
    "client-contact": gettext_lazy("Client contact and consent"),
    "deadline-list": gettext_lazy("Deadlines"),
    "deadline-detail": gettext_lazy("Deadline"),
    "portal": gettext_lazy("Client portal"),
}
# Who opened a client's portal: whoever held the client's private link.
PORTAL_VISITOR = gettext_lazy("The client, through their portal link")


def records_access(
    object_type: str = "", key: str = "pk"
) -> Callable[[StaffView[P]], StaffView[P]]:
    """Record each look at the page in the access log; `object_type` names what `key` holds."""

    def decorate(view: StaffView[P]) -> StaffView[P]:
        def looked(
            request: HttpRequest, membership: Membership, /, *args: P.args, **kwargs: P.kwargs
        ) -> HttpResponse:
            response = view(request, membership, *args, **kwargs)
            if (
                request.method == "GET"
                and response.status_code == 200
                and not getattr(request, "htmx", False)
            ):
                match = request.resolver_match
                access.record(
                    firm_id=membership.firm_id,
                    actor=staff_actor(request.user.pk),
                    page=match.url_name if match and match.url_name else view.__name__,
                    object_type=object_type,
                    object_id=str(kwargs.get(key, "")) if object_type else "",
                    address=remote_address(request),
                )
            return response

        update_wrapper(looked, view)
        return looked

    return decorate


# --- Reading the log ----------------------------------------------------------------


@dataclass(frozen=True)
class Filters:
    """What the admin asked for; each is empty when not asked or not understood."""

    member: str = ""
    case: str = ""
    since: str = ""
    until: str = ""

    def query(self) -> str:
        return urlencode({k: v for k, v in vars(self).items() if v})


def _day(text: str) -> date | None:
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        return None


def read_filters(query: Mapping[str, str], members: Mapping[str, User]) -> Filters:
    member = str(query.get("member", "")).strip()
    receipt = normalize_receipt(str(query.get("case", "")).strip()[:40]) or ""
    since = _day(str(query.get("since", "")))
    until = _day(str(query.get("until", "")))
    return Filters(
        member=member if member in members else "",
        case=receipt,
        since=since.isoformat() if since else "",
        until=until.isoformat() if until else "",
    )


def matching_records(firm_id: int, filters: Filters) -> QuerySet[AccessRecord]:
    """The firm's access records the filters ask for, newest first."""
    rows = AccessRecord.objects.filter(firm_id=firm_id)
    if filters.member:
        rows = rows.filter(actor=filters.member)
    if filters.case:
        case_ids = Case.objects.filter(firm_id=firm_id, receipt_number=filters.case).values_list(
            "pk", flat=True
        )
        rows = rows.filter(object_type="case", object_id__in=[str(pk) for pk in case_ids])
    zone = timezone.get_current_timezone()
    if filters.since:
        start = datetime.combine(date.fromisoformat(filters.since), time.min, zone)
        rows = rows.filter(at__gte=start)
    if filters.until:
        end = datetime.combine(date.fromisoformat(filters.until), time.max, zone)
        rows = rows.filter(at__lte=end)
    return rows.order_by("-at", "-pk")


@dataclass(frozen=True)
class Line:
    """One record as the page shows it: names, not ids, where the firm has them."""

    record: AccessRecord
    who: str
    page: str
    case: Case | None


def _lines(records: list[AccessRecord], members: Mapping[str, User], firm_id: int) -> list[Line]:
    case_ids = {
        int(r.object_id) for r in records if r.object_type == "case" and r.object_id.isdigit()
    }
    cases = {c.pk: c for c in Case.objects.filter(firm_id=firm_id, pk__in=case_ids)}
    lines = []
    for r in records:
        user = members.get(r.actor)
        who = (user.get_full_name() or user.email or user.username) if user else r.actor
        case = (
            cases.get(int(r.object_id))
            if r.object_type == "case" and r.object_id.isdigit()
            else None
        )
        lines.append(Line(record=r, who=who, page=str(PAGES.get(r.page, r.page)), case=case))
    return lines


def _page_number(text: str | None) -> int:
    return min(int(text), MAX_PAGE) if text and text.isdigit() and int(text) > 0 else 1


@staff_view(Action.VIEW_ACCESS_LOG)
def access_log(request: HttpRequest, membership: Membership) -> HttpResponse:
    """Who looked at case pages and client data in this firm; for its admins."""
    firm = membership.firm
    members = {
        staff_actor(m.user_id): m.user
        for m in Membership.objects.filter(firm=firm).select_related("user").order_by("pk")
    }
    filters = read_filters(request.GET, members)
    number = _page_number(request.GET.get("page"))
    offset = (number - 1) * PAGE_SIZE
    rows = list(matching_records(firm.pk, filters)[offset : offset + PAGE_SIZE + 1])
    return render(
        request,
        "audit/access_log.html",
        {
            "firm": firm,
            "lines": _lines(rows[:PAGE_SIZE], members, firm.pk),
            "members": sorted(
                (
                    (actor, u.get_full_name() or u.email or u.username)
                    for actor, u in members.items()
                ),
                key=lambda pair: pair[1].lower(),
            ),
            "f": filters,
            "query": filters.query(),
            "number": number,
            "has_next": len(rows) > PAGE_SIZE,
            "has_previous": number > 1,
            "filtered": any(vars(filters).values()),
        },
    )
