"""The dashboard: what changed since a member last looked, what is critical and not yet
handled, what is due, and whether USCIS can be read.

It is the home page of a firm that has cases (casewatch.web.views.home). Every list
is capped and read through an index, so the page costs the same at 100,000 cases as
at 100: changes, their order and their count from the covering StatusEvent index
"dashboard_changes" within a bounded window, open deadlines from the partial Deadline
indexes "deadline_open_due" and "deadline_open_firm_due". Every query goes through
`membership.firm`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

from django.contrib import messages
from django.contrib.auth.models import User
from django.db.models import Case as SqlCase
from django.db.models import Exists, IntegerField, OuterRef, QuerySet, Value, When
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.formats import date_format
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.translation import get_language
from django.utils.translation import gettext as _

from casewatch.accounts.models import Membership
from casewatch.accounts.permissions import Action, may
from casewatch.cases import follow_ups
from casewatch.cases.models import Comment, Deadline, EventFollowUp, StatusEvent
from casewatch.core.staff_guidance import default_guidance
from casewatch.web.access import staff_view
from casewatch.web.guidance import meaning_and_next_step
from casewatch.web.labels import CATEGORY_LABELS, URGENCY_LABELS
from casewatch.web.views import uscis_panel

# How many rows each list shows; the rest is one link away.
SHOWN = 50
# "Since you last looked" reaches back at most this far (and this far for a member who
# never looked), so that the page costs the same after a long holiday.
CHANGES_WINDOW = timedelta(days=14)
# Critical changes nobody acknowledged are looked for this far back: long enough for
# an RFE's 87 days, bounded so the page stays fast (see docs/usage.md).
CRITICAL_WINDOW = timedelta(days=90)
# Upcoming deadlines: overdue ones, and those due within this many days.
DEADLINE_DAYS = 30
# The urgency whose changes someone at the firm must act on (spec/status-categories.md).
CRITICAL = "action"
# Urgencies whose name is worth a word on the card; the others show only their category.
SHOWN_URGENCY = frozenset({"action", "review"})


@dataclass(frozen=True)
class CommentLine:
    author: str
    at: datetime
    body: str


@dataclass(frozen=True)
class ChangeRow:
    """One change as the dashboard shows it, in the member's language.

    Everything is worded here rather than in the template: at 100 cards a page, each
    template lookup and tag counts.
    """

    pk: int
    urgency: str
    category: str
    category_label: str
    urgency_label: str
    title: str
    title_language: str
    recovered: bool
    receipt: str
    case_url: str
    client_name: str
    form: str
    meaning: str
    next_step: str
    when: str
    handled: str
    waiting: bool
    assigned_user_id: int | None
    comments: tuple[CommentLine, ...] = ()
    # What a member who may follow up on critical changes can do with this one.
    acknowledge_url: str = ""
    assign_url: str = ""
    comment_url: str = ""
    member_options: str = ""  # "Assign to" as safe HTML, its assignee selected
    # What a follow-up done in place (htmx) did to this change, shown on its card.
    notice: str = ""
    notice_level: str = "success"


@dataclass(frozen=True)
class DeadlineRow:
    deadline: Deadline
    due: date
    days_left: int
    client_name: str

    @property
    def days_late(self) -> int:
        return -self.days_left


def _rank(field: str, order: tuple[str, ...]) -> SqlCase:
    """A code's place in an order from the guidance data, as a sortable SQL number."""
    return SqlCase(
        *(When(**{field: code}, then=Value(place)) for place, code in enumerate(order)),
        default=Value(len(order)),
        output_field=IntegerField(),
    )


def _events() -> QuerySet[StatusEvent]:
    """Events with what a row shows, in as few queries as the page allows."""
    return StatusEvent.objects.select_related(
        "case__client", "follow_up__assigned_to", "follow_up__acknowledged_by"
    ).defer("description_en", "description_es", "case__notes")


def _row(event: StatusEvent, comments: tuple[Comment, ...] = ()) -> ChangeRow:
    in_spanish = bool(event.title_es) and (get_language() or "en").startswith("es")
    meaning, next_step = meaning_and_next_step(event.status, event.category)
    case = event.case
    follow_up: EventFollowUp | None = getattr(event, "follow_up", None)
    acknowledged = follow_up is not None and follow_up.acknowledged_at is not None
    return ChangeRow(
        pk=event.pk,
        urgency=event.urgency,
        category=event.category,
        category_label=str(CATEGORY_LABELS.get(event.category, CATEGORY_LABELS["unknown"])),
        urgency_label=str(URGENCY_LABELS[event.urgency]) if event.urgency in SHOWN_URGENCY else "",
        title=event.title_es if in_spanish else event.title_en,
        title_language="es" if in_spanish else "en",
        recovered=event.recovered,
        receipt=case.receipt_number or _("receipt pending"),
        case_url=reverse("case-detail", args=[case.pk]),
        client_name=case.client.name if case.client is not None else "",
        form=case.form_type,
        meaning=meaning,
        next_step=next_step,
        when=_when(event),
        handled=_handled(follow_up),
        waiting=event.urgency == CRITICAL and not acknowledged,
        assigned_user_id=follow_up.assigned_to_id if follow_up is not None else None,
        comments=tuple(
            CommentLine(author=_name(note.author), at=note.created_at, body=note.body)
            for note in comments
        ),
    )


def _when(event: StatusEvent) -> str:
    """When USCIS posted the change (a day) and when casewatch saw it (a time, with the
    member's zone as people abbreviate it: "PST", not "America/Los_Angeles")."""
    observed = timezone.localtime(event.observed_at)
    seen = _("casewatch saw it on %(seen)s %(zone)s.") % {
        "seen": date_format(observed, "DATETIME_FORMAT"),
        "zone": observed.tzname() or timezone.get_current_timezone_name(),
    }
    if event.uscis_date is None:
        return seen
    day = date_format(timezone.localtime(event.uscis_date), "DATE_FORMAT")
    return _("USCIS posted it on %(day)s.") % {"day": day} + " " + seen


def _handled(follow_up: EventFollowUp | None) -> str:
    """Who acknowledged the change and who has it, in a sentence or two ("" for nobody)."""
    if follow_up is None:
        return ""
    parts = []
    if follow_up.acknowledged_at is not None:
        parts.append(
            _("Acknowledged by %(name)s on %(when)s.")
            % {
                "name": _name(follow_up.acknowledged_by),
                "when": date_format(
                    timezone.localtime(follow_up.acknowledged_at), "DATETIME_FORMAT"
                ),
            }
        )
    if follow_up.assigned_to is not None:
        parts.append(_("Assigned to %(name)s.") % {"name": _name(follow_up.assigned_to)})
    return " ".join(parts)


def _name(user: User | None) -> str:
    if user is None:
        return "—"
    return user.get_full_name() or user.get_username()


def changes_since(membership: Membership, now: datetime) -> tuple[list[ChangeRow], int, datetime]:
    """The firm's changes the member has not seen: action first, then the most serious
    category, then the newest. Returns the shown rows, how many there are, and from when.

    The order is computed on narrow rows (ids only) and only the shown rows are read in
    full, which keeps a busy fortnight of 100,000 cases to a few milliseconds.
    """
    since = now - CHANGES_WINDOW
    if membership.changes_seen_until is not None:
        since = max(since, membership.changes_seen_until)
    unseen = StatusEvent.objects.filter(firm=membership.firm, initial=False, observed_at__gt=since)
    guidance = default_guidance()
    ranked = unseen.annotate(
        urgency_rank=_rank("urgency", guidance.urgency_order),
        category_rank=_rank("category", guidance.category_order),
    ).order_by("urgency_rank", "category_rank", "-observed_at", "-pk")
    shown = list(ranked.values_list("pk", flat=True)[:SHOWN])
    total = len(shown) if len(shown) < SHOWN else unseen.count()
    by_pk = {event.pk: event for event in _events().filter(pk__in=shown)}
    return [_row(by_pk[pk]) for pk in shown], total, since


def unacknowledged_critical(membership: Membership, now: datetime) -> tuple[list[ChangeRow], bool]:
    """Critical changes nobody has acknowledged, oldest first, seen or not.

    Returns the shown rows and whether there are more.
    """
    acknowledged = EventFollowUp.objects.filter(event=OuterRef("pk"), acknowledged_at__isnull=False)
    waiting = (
        StatusEvent.objects.filter(
            firm=membership.firm,
            urgency=CRITICAL,
            initial=False,
            observed_at__gte=now - CRITICAL_WINDOW,
        )
        .exclude(Exists(acknowledged))
        .order_by("observed_at", "pk")
    )
    # An anti-join walks the (firm, observed_at) index oldest first and stops at the
    # rows it needs; ids first, then the shown rows in full, so that no candidate drags
    # its case and client through the sort (PostgreSQL would).
    ids = list(waiting.values_list("pk", flat=True)[: SHOWN + 1])
    by_pk = {event.pk: event for event in _events().filter(pk__in=ids[:SHOWN])}
    shown = [by_pk[pk] for pk in ids[:SHOWN]]
    comments: dict[int, list[Comment]] = {}
    for note in (
        Comment.objects.filter(firm=membership.firm, event__in=[e.pk for e in shown])
        .select_related("author")
        .order_by("created_at", "pk")
    ):
        comments.setdefault(note.event_id or 0, []).append(note)
    rows = [_row(event, tuple(comments.get(event.pk, ()))) for event in shown]
    return rows, len(ids) > SHOWN


def upcoming_deadlines(membership: Membership, today: date) -> tuple[list[DeadlineRow], bool]:
    """Open deadlines that are overdue or due within DEADLINE_DAYS, soonest first.

    The date that counts is the firm's own when it set one. Deadlines on casewatch's date
    and those on the firm's are read apart, each in date order through its own index and
    stopped at the rows shown, then merged: sorting every open deadline by
    COALESCE(firm_due_on, due_on) would read them all.
    """
    horizon = today + timedelta(days=DEADLINE_DAYS)
    open_deadlines = (
        Deadline.objects.filter(firm=membership.firm, completed_at__isnull=True)
        .select_related("case__client")
        .defer("case__notes", "basis_text", "firm_due_reason")
    )
    on_computed_date = open_deadlines.filter(firm_due_on__isnull=True, due_on__lte=horizon)
    on_firm_date = open_deadlines.filter(firm_due_on__lte=horizon)
    candidates = [
        *on_computed_date.order_by("due_on", "pk")[: SHOWN + 1],
        *on_firm_date.order_by("firm_due_on", "pk")[: SHOWN + 1],
    ]
    candidates.sort(key=lambda deadline: (deadline.effective_due_on, deadline.pk))
    deadlines = candidates[: SHOWN + 1]
    rows = [
        DeadlineRow(
            deadline=deadline,
            due=deadline.effective_due_on,
            days_left=(deadline.effective_due_on - today).days,
            client_name=deadline.case.client.name if deadline.case.client else "",
        )
        for deadline in deadlines[:SHOWN]
    ]
    return rows, len(deadlines) > SHOWN


def _with_actions(rows: list[ChangeRow], members: list[Membership]) -> list[ChangeRow]:
    """The rows with their forms' addresses and "Assign to" choices. The choices are
    written once for all rows: a firm of a hundred people would otherwise cost the page
    a hundred options per row."""
    tags = {
        member.user_id: format_html('<option value="{}">{}</option>', member.pk, _name(member.user))
        for member in members
    }
    every = format_html_join("", "{}", ((tag,) for tag in tags.values()))
    chosen = format_html('<option value="">{}</option>', _("nobody"))
    out = []
    for row in rows:
        options = every
        tag = tags.get(row.assigned_user_id or 0)
        if tag is not None:
            selected = tag.replace("<option ", "<option selected ", 1)
            options = SafeString(every.replace(tag, selected))
        out.append(
            replace(
                row,
                acknowledge_url=reverse("change-acknowledge", args=[row.pk]),
                assign_url=reverse("change-assign", args=[row.pk]),
                comment_url=reverse("change-comment", args=[row.pk]),
                member_options=SafeString(chosen + options),
            )
        )
    return out


def _members(membership: Membership) -> QuerySet[Membership]:
    """Who a change can be given to: the firm's members who can log in."""
    return (
        Membership.objects.filter(firm=membership.firm, user__is_active=True)
        .select_related("user")
        .order_by("user__first_name", "user__last_name", "user__username")
    )


def _changes_context(membership: Membership, now: datetime) -> dict[str, Any]:
    """What the "changes since you last looked" part shows, on the page and refreshed."""
    changes, changes_total, since = changes_since(membership, now)
    return {
        "now": now,
        "changes": changes,
        "changes_total": changes_total,
        "changes_more": changes_total - len(changes),
        "changes_since": since,
        "seen_before": membership.changes_seen_until is not None
        and membership.changes_seen_until >= now - CHANGES_WINDOW,
        "changes_window_days": CHANGES_WINDOW.days,
    }


def dashboard(request: HttpRequest, membership: Membership) -> HttpResponse:
    """The page itself; `views.home` has already let the member in (VIEW_CASES).

    "Today" is the member's (the middleware activated their zone): a deadline is overdue
    from the first minute of the day after it, on their clock.
    """
    now = timezone.now()
    today = timezone.localdate(now)
    critical, more_critical = unacknowledged_critical(membership, now)
    deadlines, more_deadlines = upcoming_deadlines(membership, today)
    may_follow_up = may(membership.role, Action.FOLLOW_UP_CHANGES)
    if may_follow_up and critical:
        critical = _with_actions(critical, list(_members(membership)))
    context: dict[str, Any] = {
        "firm": membership.firm,
        "me": membership,
        **_changes_context(membership, now),
        "critical": critical,
        "more_critical": more_critical,
        "critical_window_days": CRITICAL_WINDOW.days,
        "deadlines": deadlines,
        "more_deadlines": more_deadlines,
        "deadline_days": DEADLINE_DAYS,
        "deadline_horizon": today + timedelta(days=DEADLINE_DAYS),
        "may_follow_up": may_follow_up,
        "uscis": uscis_panel(),
        "shown": SHOWN,
        "comment_max": follow_ups.COMMENT_MAX_LENGTH,
    }
    return render(request, "dashboard/dashboard.html", context)


# --- Live parts: what htmx fetches every 45 seconds ------------------------------------


@staff_view(Action.VIEW_CASES)
def uscis_part(request: HttpRequest, membership: Membership) -> HttpResponse:
    """The USCIS health panel alone, for htmx; a browser without it gets the dashboard."""
    if not request.htmx:  # type: ignore[attr-defined]
        return _back()
    return render(request, "dashboard/uscis.html", {"uscis": uscis_panel()})


@staff_view(Action.VIEW_CASES)
def changes_part(request: HttpRequest, membership: Membership) -> HttpResponse:
    """The "changes since you last looked" part alone, with the count in the page's
    jump links (an out-of-band swap); a browser without htmx gets the dashboard."""
    if not request.htmx:  # type: ignore[attr-defined]
        return _back("changes")
    return _changes_part(request, membership)


def _changes_part(request: HttpRequest, membership: Membership) -> HttpResponse:
    context = {**_changes_context(membership, timezone.now()), "live": True}
    return render(request, "dashboard/changes_live.html", context)


# --- What a member does from the dashboard -------------------------------------------


def _back(anchor: str = "") -> HttpResponse:
    return redirect(reverse("home") + (f"#{anchor}" if anchor else ""))


@staff_view(Action.VIEW_CASES, change=Action.OWN_SETTINGS)
def mark_seen(request: HttpRequest, membership: Membership) -> HttpResponse:
    """Move the member's "seen until" to when the page was shown, never backwards.

    The page sends its own time, so a change that arrived after it was shown stays new.
    """
    if request.method != "POST":
        return _back()
    now = timezone.now()
    shown_at = parse_datetime(request.POST.get("until", "")) or now
    if timezone.is_naive(shown_at):
        shown_at = timezone.make_aware(shown_at, UTC)
    until = min(shown_at, now)
    before = membership.changes_seen_until
    if before is None or until > before:
        Membership.objects.filter(pk=membership.pk).update(changes_seen_until=until)
        membership.changes_seen_until = until
    if request.htmx:  # type: ignore[attr-defined]
        return _changes_part(request, membership)
    messages.success(request, _("All changes up to now are marked as seen."))
    return _back("changes")


def _event_of(membership: Membership, pk: int) -> StatusEvent:
    """A change of the member's own firm; any other is "not found"."""
    return get_object_or_404(
        StatusEvent.objects.select_related("case").defer("case__notes"),
        pk=pk,
        firm=membership.firm,
    )


@staff_view(Action.VIEW_CASES, change=Action.FOLLOW_UP_CHANGES)
def acknowledge(request: HttpRequest, membership: Membership, pk: int) -> HttpResponse:
    event = _event_of(membership, pk)
    if request.method != "POST":
        return _back("critical")
    receipt = {"receipt": _receipt(event)}
    if follow_ups.acknowledge(event, by=membership.user):
        text, level = _("Acknowledged: %(receipt)s.") % receipt, "success"
    else:
        text, level = _("%(receipt)s was acknowledged already.") % receipt, "info"
    return _followed_up(request, membership, event, text, level, anchor="critical")


@staff_view(Action.VIEW_CASES, change=Action.FOLLOW_UP_CHANGES)
def assign(request: HttpRequest, membership: Membership, pk: int) -> HttpResponse:
    event = _event_of(membership, pk)
    if request.method != "POST":
        return _back("critical")
    chosen = request.POST.get("member", "")
    member = None
    if chosen:
        if not chosen.isdigit():
            text = _("Choose a member of the firm.")
            return _followed_up(request, membership, event, text, "error")
        member = get_object_or_404(_members(membership), pk=int(chosen))
    follow_ups.assign(event, member, by=membership.user)
    if member is None:
        text = _("%(receipt)s is no longer assigned to anyone.") % {"receipt": _receipt(event)}
    else:
        text = _("%(receipt)s is assigned to %(name)s.") % {
            "receipt": _receipt(event),
            "name": person_name(member),
        }
    return _followed_up(request, membership, event, text)


@staff_view(Action.VIEW_CASES, change=Action.FOLLOW_UP_CHANGES)
def comment(request: HttpRequest, membership: Membership, pk: int) -> HttpResponse:
    event = _event_of(membership, pk)
    if request.method != "POST":
        return _back("critical")
    body = request.POST.get("body", "").strip()
    if not body or len(body) > follow_ups.COMMENT_MAX_LENGTH:
        text = _("Write a comment of up to %(limit)s characters.") % {
            "limit": follow_ups.COMMENT_MAX_LENGTH
        }
        return _followed_up(request, membership, event, text, "error")
    follow_ups.comment(event, body, by=membership.user)
    text = _("Comment added to %(receipt)s.") % {"receipt": _receipt(event)}
    return _followed_up(request, membership, event, text)


def _followed_up(
    request: HttpRequest,
    membership: Membership,
    event: StatusEvent,
    text: str,
    level: str = "success",
    *,
    anchor: str = "",
) -> HttpResponse:
    """What a member sees after acknowledging, assigning or commenting.

    Through htmx: the change's card alone, as it is now, saying what was done. Without
    JavaScript: the dashboard again, at the card (or `anchor`), the same words on top.
    """
    if request.htmx:  # type: ignore[attr-defined]
        row = replace(critical_row(membership, event.pk), notice=text, notice_level=level)
        return render(
            request,
            "dashboard/changes.html",
            {"rows": [row], "place": "critical", "comment_max": follow_ups.COMMENT_MAX_LENGTH},
        )
    messages.add_message(request, _LEVELS[level], text)
    return _back(anchor or f"critical-{event.pk}")


_LEVELS = {"success": messages.SUCCESS, "info": messages.INFO, "error": messages.ERROR}


def critical_row(membership: Membership, pk: int) -> ChangeRow:
    """One change of the member's firm as the critical list shows it, with its comments
    and the forms to follow it up."""
    event = _events().get(pk=pk, firm=membership.firm)
    comments = tuple(
        Comment.objects.filter(firm=membership.firm, event=event)
        .select_related("author")
        .order_by("created_at", "pk")
    )
    return _with_actions([_row(event, comments)], list(_members(membership)))[0]


def _receipt(event: StatusEvent) -> str:
    return event.case.receipt_number or _("receipt pending")


def person_name(member: Membership) -> str:
    return _name(member.user)
