"""Each member's deadlines as an iCalendar feed that Outlook and Google Calendar subscribe to.

A calendar program cannot log in, so the feed's address carries a secret: 32 random
bytes, shown once when the member creates the link. Only its SHA-256 is kept
(`Membership.calendar_token_hash`), like an API token; creating a new link replaces the
old one, turning the feed off clears it, and an unknown or revoked secret is a 404.

Calendars are shared and copied to other companies' servers, so an event names the
receipt number, the form and what is due, never the client: whoever needs the name
follows the link back to the case, behind the login.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.formats import date_format, time_format
from django.utils.translation import gettext as _
from icalendar import Calendar, Event, vDuration

from casewatch.accounts.models import Membership, Role
from casewatch.accounts.permissions import Action, may
from casewatch.audit.chain import record, staff_actor
from casewatch.cases.models import Deadline, DeadlineKind
from casewatch.web.access import absolute_url, staff_view
from casewatch.web.deadlines import NEXT_STEPS, counted_from, with_effective_due
from casewatch.web.time_zones import member_zone

TOKEN_BYTES = 32
# Which open deadlines a member's feed carries, by role. "firm": all of the firm's;
# "own": those of cases where the member is the attorney or the paralegal. A role that
# is not listed (front desk, who only looks) has no feed.
FEED_SCOPE: Mapping[str, str] = {
    Role.ADMIN: "firm",
    Role.OPERATIONS: "firm",
    Role.ATTORNEY: "own",
    Role.PARALEGAL: "own",
}
# How often calendar programs are asked to fetch the feed again (they may take longer:
# Google refreshes subscribed calendars every few hours).
REFRESH = timedelta(hours=1)
FEED_PAST_DAYS = 30
FEED_FIELDS = (
    *("kind", "due_on", "due_at", "basis", "basis_text", "created_at", "firm_id", "case_id"),
    *("firm_due_on", "firm_due_set_at", "case__receipt_number", "case__form_type"),
)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_link(membership: Membership) -> str:
    """A new secret for the member's feed, replacing any earlier one; returned only here."""
    token = secrets.token_urlsafe(TOKEN_BYTES)
    with transaction.atomic():
        replaced = bool(membership.calendar_token_hash)
        membership.calendar_token_hash = token_hash(token)
        membership.save(update_fields=["calendar_token_hash"])
        record(
            "calendar_link.created",
            object_type="membership",
            object_id=membership.pk,
            firm_id=membership.firm_id,
            actor=staff_actor(membership.user_id),
            details={"replaced_a_link": replaced},
        )
    return token


def turn_off(membership: Membership) -> bool:
    """Revoke the member's feed; False when there was none."""
    if not membership.calendar_token_hash:
        return False
    with transaction.atomic():
        membership.calendar_token_hash = ""
        membership.save(update_fields=["calendar_token_hash"])
        record(
            "calendar_link.revoked",
            object_type="membership",
            object_id=membership.pk,
            firm_id=membership.firm_id,
            actor=staff_actor(membership.user_id),
        )
    return True


def feed_url(request: HttpRequest, token: str) -> str:
    return absolute_url(request, reverse("calendar-feed", args=[token]))


@staff_view(Action.CALENDAR_FEED, change=Action.CALENDAR_FEED)
def calendar_link(request: HttpRequest, membership: Membership) -> HttpResponse:
    """The member's calendar link: create (or replace) it, or turn it off.

    The address is shown in the answer to the POST that made it and nowhere else, so the
    secret is never stored, not even in the session.
    """
    link = ""
    if request.method == "POST":
        if request.POST.get("do") == "create":
            link = feed_url(request, create_link(membership))
        elif request.POST.get("do") == "off":
            turn_off(membership)
    response = render(
        request,
        "deadlines/calendar.html",
        {
            "link": link,
            "has_link": bool(membership.calendar_token_hash),
            "scope": FEED_SCOPE.get(membership.role, ""),
            "refresh_minutes": int(REFRESH.total_seconds() // 60),
        },
    )
    response["Cache-Control"] = "no-store"  # the page may hold the secret
    return response


def relevant_deadlines(membership: Membership, today: date) -> QuerySet[Deadline]:
    """The open deadlines the member's feed carries (FEED_SCOPE), soonest first.

    Deadlines overdue by more than FEED_PAST_DAYS leave the calendar, where nobody looks
    back that far; they stay on the Deadlines page until someone marks them done.
    """
    deadlines = with_effective_due(
        Deadline.objects.filter(firm_id=membership.firm_id, completed_at__isnull=True)
    ).filter(Q(effective_due__gte=today - timedelta(days=FEED_PAST_DAYS)))
    if FEED_SCOPE.get(membership.role) == "own":
        mine = Q(case__attorney_id=membership.user_id) | Q(case__paralegal_id=membership.user_id)
        deadlines = deadlines.filter(mine)
    return (
        deadlines.select_related("case").only(*FEED_FIELDS).order_by(F("effective_due").asc(), "pk")
    )


def _subscriber(token: str) -> Membership:
    """The member whose feed this secret opens; 404 for an unknown or revoked secret."""
    if not token or len(token) > 128:
        raise Http404("no such calendar")
    membership = (
        Membership.objects.select_related("firm", "user")
        .filter(calendar_token_hash=token_hash(token))
        .exclude(calendar_token_hash="")
        .first()
    )
    if (
        membership is None
        or not membership.user.is_active
        or membership.role not in FEED_SCOPE
        or not may(membership.role, Action.CALENDAR_FEED)
    ):
        raise Http404("no such calendar")
    return membership


def _summary(deadline: Deadline) -> str:
    what = str(DeadlineKind(deadline.kind).label)
    if deadline.due_at is not None:
        what = f"{what} {time_format(deadline.due_at, 'TIME_FORMAT')}"
    receipt = deadline.case.receipt_number or _("receipt pending")
    form = f" ({deadline.case.form_type})" if deadline.case.form_type else ""
    return f"{what} · {receipt}{form}"


def _description(deadline: Deadline, case_url: str) -> str:
    lines = [str(NEXT_STEPS.get(deadline.kind, ""))]
    if deadline.firm_due_on is not None:
        lines.append(
            _("Date set by the firm; computed date: %(day)s.")
            % {"day": date_format(deadline.due_on, "DATE_FORMAT")}
        )
    lines.append(_("Computed from: %(basis)s.") % {"basis": counted_from(deadline)})
    lines.append(_("Case: %(url)s") % {"url": case_url})
    return "\n".join(line for line in lines if line)


def _revised_at(deadline: Deadline) -> datetime:
    """When the event last changed: its creation, or the firm's date being set."""
    moments = [deadline.created_at, deadline.firm_due_set_at]
    return max(m for m in moments if m is not None).astimezone(UTC)


def build_calendar(request: HttpRequest, membership: Membership) -> Calendar:
    """One all-day event per relevant open deadline, on the date the firm works to."""
    calendar = Calendar()
    calendar.add("prodid", "-//casewatch//deadlines//EN")
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("x-wr-calname", _("Deadlines · %(firm)s") % {"firm": membership.firm.name})
    calendar.add("refresh-interval", REFRESH, parameters={"VALUE": "DURATION"})
    calendar.add("x-published-ttl", vDuration(REFRESH))
    for deadline in relevant_deadlines(membership, timezone.localdate()):
        on: date = deadline.effective_due_on
        case_url = absolute_url(request, reverse("case-detail", args=[deadline.case_id]))
        event = Event()
        event.add("uid", f"deadline-{deadline.pk}.firm-{deadline.firm_id}@casewatch")
        event.add("dtstamp", _revised_at(deadline))
        event.add("last-modified", _revised_at(deadline))
        event.add("dtstart", on)
        event.add("dtend", on + timedelta(days=1))
        event.add("summary", _summary(deadline))
        event.add("description", _description(deadline, case_url))
        event.add("url", case_url)
        event.add("transp", "TRANSPARENT")
        calendar.add_component(event)
    return calendar


def feed(request: HttpRequest, token: str) -> HttpResponse:
    """The .ics a calendar program fetches; no login, the secret in the address is the key."""
    membership = _subscriber(token)
    language = membership.language or settings.LANGUAGE_CODE
    # No session here: the member's zone decides "today" (which deadlines are too old to
    # carry) as it does on their Deadlines page.
    with translation.override(language), timezone.override(member_zone(membership)):
        body = build_calendar(request, membership).to_ical()
    response = HttpResponse(body, content_type="text/calendar; charset=utf-8")
    response["Content-Disposition"] = 'inline; filename="casewatch-deadlines.ics"'
    response["Content-Language"] = language
    response["Cache-Control"] = "private, no-cache"
    response["X-Robots-Tag"] = "noindex"
    response["Referrer-Policy"] = "no-referrer"
    return response
