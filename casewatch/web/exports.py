"""Staff downloads of the firm's cases and status changes as CSV, to open in Excel or
load into another system.

The files are casewatch.cases.exports's, the same the REST API serves: the case list
with the filters on screen (its "Download CSV" link carries them), and the status
changes casewatch saw from one day to another, days read in the member's time zone.
Both are streamed, audited ("cases.exported", "events.exported", with what was asked
for), and recorded in the access log like the pages that show the same data.

Who gets which file: every role may look at the firm's cases (Action.VIEW_CASES), so
every role may download them. The personal columns (clients' names, e-mails, phones,
case notes) are only for the roles that work on cases (Action.CHANGE_CASES): front
desk, the read-only role, sees a client's details a page at a time, each look in the
access log, but gets no file of every client's contact details; the line is the one
the API draws between read and write tokens. The permissions table has no action of
its own for taking client data away in bulk; PERSONAL_DATA names the one used.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import cast

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.utils import timezone
from django.utils.translation import gettext as _

from casewatch.accounts.models import Membership
from casewatch.accounts.permissions import Action, may
from casewatch.audit.chain import record as audit
from casewatch.audit.chain import staff_actor
from casewatch.cases.exports import (
    audit_details,
    case_lines,
    csv_response,
    event_lines,
    file_name,
    firm_events,
)
from casewatch.cases.queries import clean_parameters, matching_cases
from casewatch.web.access import absolute_url, staff_view
from casewatch.web.access_log import records_access

# Whose downloads include clients' personal data: those who may work on cases.
PERSONAL_DATA = Action.CHANGE_CASES
# The status changes the case list's form offers at first: the last this many days.
DEFAULT_DAYS = 30
# The years a day asked for may fall in.
FIRST_YEAR, LAST_YEAR = 1900, 9998


def may_export_personal_data(membership: Membership) -> bool:
    return may(membership.role, PERSONAL_DATA)


def default_window(today: date) -> tuple[date, date]:
    """The days the status-changes form is filled in with: the last DEFAULT_DAYS."""
    return today - timedelta(days=DEFAULT_DAYS - 1), today


def _site(request: HttpRequest) -> str:
    """Where staff open case pages ("https://casewatch.example.com"), for case_url."""
    return absolute_url(request, "/").rstrip("/")


def _audited(action: str, membership: Membership, details: dict[str, object]) -> None:
    audit(
        action,
        object_type="firm",
        object_id=membership.firm_id,
        firm_id=membership.firm_id,
        actor=staff_actor(membership.user_id),
        details=details,
    )


@staff_view(Action.VIEW_CASES)
@records_access()
def cases_csv(request: HttpRequest, membership: Membership) -> HttpResponse:
    """The case list as CSV: every case the list's filters match, in the list's order."""
    firm = membership.firm
    parameters = clean_parameters(request.GET)
    personal = may_export_personal_data(membership)
    _audited("cases.exported", membership, audit_details(personal=personal, filters=parameters))
    lines = case_lines(matching_cases(firm, parameters), personal=personal, site=_site(request))
    # The staff gate is typed for plain responses; a streamed one serves as well.
    return cast(HttpResponse, csv_response(lines, file_name(firm.slug, "cases", timezone.now())))


def _day(request: HttpRequest, name: str) -> date | None:
    """The day a query parameter names; ValueError, in the page's words, when it names none."""
    text = request.GET.get(name, "").strip()
    if not text:
        return None
    try:
        day = date.fromisoformat(text)
    except ValueError:
        day = None
    # Years far off would not convert to UTC and back; no status change is dated there.
    if day is None or not FIRST_YEAR <= day.year <= LAST_YEAR:
        raise ValueError(
            _("“%(text)s” is not a date: write it as YYYY-MM-DD.") % {"text": text[:40]}
        )
    return day


@staff_view(Action.VIEW_CASES)
@records_access()
def events_csv(request: HttpRequest, membership: Membership) -> HttpResponse:
    """The status changes casewatch saw from `since` to `until` (days, both included, in
    the member's time zone; either left out: no limit on that side), oldest first."""
    try:
        first, last = _day(request, "since"), _day(request, "until")
        if first is not None and last is not None and last < first:
            raise ValueError(_("The last day is before the first."))
    except ValueError as problem:
        messages.error(
            request,
            _("%(problem)s No status changes were downloaded.") % {"problem": problem},
        )
        return redirect("case-list")
    zone = timezone.get_current_timezone()
    since = datetime.combine(first, time.min, zone) if first else None
    until = datetime.combine(last + timedelta(days=1), time.min, zone) if last else None
    personal = may_export_personal_data(membership)
    _audited(
        "events.exported", membership, audit_details(personal=personal, since=since, until=until)
    )
    lines = event_lines(
        firm_events(membership.firm_id, since, until),
        personal=personal,
        site=_site(request),
    )
    name = file_name(membership.firm.slug, "status-changes", timezone.now())
    return cast(HttpResponse, csv_response(lines, name))
