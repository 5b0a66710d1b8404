"""The Deadlines page: every date the firm must meet, across its cases, and the firm's own dates.

casewatch computes a deadline from the USCIS notice (`Deadline.due_on`, kept as computed);
when the firm knows better (an extension, a rescheduled interview) it sets its own date
with a reason (`Deadline.firm_due_on`), and that date is the one everyone works to. Each
completion, reopening and change of date is written to the audit chain in the same
transaction, like every other change of the firm's data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.models import User
from django.core.paginator import Paginator
from django.db import transaction
from django.db.models import BooleanField, ExpressionWrapper, F, Q, QuerySet
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.dateparse import parse_date
from django.utils.formats import date_format
from django.utils.functional import Promise
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext

from casewatch.accounts.models import Firm, Membership, Role
from casewatch.accounts.permissions import Action, may
from casewatch.audit.chain import record, staff_actor
from casewatch.audit.models import AuditEntry
from casewatch.cases.models import Deadline, DeadlineKind
from casewatch.web.access import staff_view
from casewatch.web.access_log import records_access

PAGE_SIZE = 50
REASON_MAX = 500

# What the firm does next for each kind of deadline: shown on the page and in calendars.
NEXT_STEPS: Mapping[str, Promise] = {
    DeadlineKind.RFE_RESPONSE: gettext_lazy(
        "Send USCIS the evidence it asked for, so that it arrives by the due date."
    ),
    DeadlineKind.NOID_RESPONSE: gettext_lazy(
        "Answer the notice of intent to deny, with evidence and arguments, by the due date."
    ),
    DeadlineKind.INTERVIEW: gettext_lazy(
        "Prepare the client for the interview and confirm that they will attend."
    ),
    DeadlineKind.BIOMETRICS: gettext_lazy(
        "Remind the client of the appointment: they bring the notice and a photo ID."
    ),
}

# Which deadlines the page lists: open ones unless asked otherwise.
STATES: Mapping[str, Q] = {
    "open": Q(completed_at__isnull=True),
    "done": Q(completed_at__isnull=False),
    "all": Q(),
}

# The quick ranges offered beside the date fields, in days from today: (from, to).
QUICK_RANGES: tuple[tuple[str, Promise, int | None, int | None], ...] = (
    ("overdue", gettext_lazy("Overdue"), None, -1),
    ("week", gettext_lazy("Next 7 days"), 0, 7),
    ("month", gettext_lazy("Next 30 days"), 0, 30),
)

# The audit entries a deadline's history shows, in words.
HISTORY_LABELS: Mapping[str, Promise] = {
    "deadline.created": gettext_lazy("Computed by casewatch"),
    "deadline.completed": gettext_lazy("Marked done"),
    "deadline.reopened": gettext_lazy("Reopened"),
    "deadline.firm_date_set": gettext_lazy("Firm's date set"),
    "deadline.firm_date_cleared": gettext_lazy("Back to the computed date"),
}


# --- Changing a deadline: plain functions, each one audited in its transaction ----------


def _details(deadline: Deadline, **more: Any) -> dict[str, Any]:
    """What an audit entry about a deadline says; never the reason, which may name the client."""
    return {
        "case_id": deadline.case_id,
        "receipt_number": deadline.case.receipt_number,
        "kind": deadline.kind,
        "due_on": deadline.due_on.isoformat(),
        **more,
    }


def _locked(deadline: Deadline) -> Deadline:
    return Deadline.objects.select_for_update().select_related("case").get(pk=deadline.pk)


def complete(deadline: Deadline, *, by: User, now: datetime | None = None) -> bool:
    """Mark a deadline done; False when it already was (nothing is written then)."""
    now = now or timezone.now()
    with transaction.atomic():
        fresh = _locked(deadline)
        if fresh.completed_at is not None:
            return False
        fresh.completed_at = now
        fresh.save(update_fields=["completed_at"])
        record(
            "deadline.completed",
            object_type="deadline",
            object_id=fresh.pk,
            firm_id=fresh.firm_id,
            actor=staff_actor(by.pk),
            details=_details(fresh, effective_due_on=fresh.effective_due_on.isoformat()),
            at=now,
        )
    return True


def reopen(deadline: Deadline, *, by: User, now: datetime | None = None) -> bool:
    """Open a deadline marked done by mistake; False when it was open."""
    now = now or timezone.now()
    with transaction.atomic():
        fresh = _locked(deadline)
        if fresh.completed_at is None:
            return False
        done_at = fresh.completed_at
        fresh.completed_at = None
        fresh.save(update_fields=["completed_at"])
        record(
            "deadline.reopened",
            object_type="deadline",
            object_id=fresh.pk,
            firm_id=fresh.firm_id,
            actor=staff_actor(by.pk),
            details=_details(fresh, was_completed_at=done_at.isoformat()),
            at=now,
        )
    return True


def set_firm_date(
    deadline: Deadline, on: date, reason: str, *, by: User, now: datetime | None = None
) -> None:
    """The firm's own date replaces the computed one wherever a date is shown or synced."""
    reason = reason.strip()
    if not reason:
        raise ValueError("a firm's date needs a reason")
    now = now or timezone.now()
    with transaction.atomic():
        fresh = _locked(deadline)
        before = fresh.firm_due_on
        fresh.firm_due_on, fresh.firm_due_reason = on, reason
        fresh.firm_due_by, fresh.firm_due_set_at = by, now
        fresh.save(
            update_fields=["firm_due_on", "firm_due_reason", "firm_due_by", "firm_due_set_at"]
        )
        record(
            "deadline.firm_date_set",
            object_type="deadline",
            object_id=fresh.pk,
            firm_id=fresh.firm_id,
            actor=staff_actor(by.pk),
            details=_details(
                fresh,
                firm_due_on=on.isoformat(),
                previous_firm_due_on=before.isoformat() if before else None,
            ),
            at=now,
        )


def clear_firm_date(deadline: Deadline, *, by: User, now: datetime | None = None) -> bool:
    """Go back to the computed date; False when the firm had set none."""
    now = now or timezone.now()
    with transaction.atomic():
        fresh = _locked(deadline)
        before = fresh.firm_due_on
        if before is None:
            return False
        fresh.firm_due_on, fresh.firm_due_reason = None, ""
        fresh.firm_due_by, fresh.firm_due_set_at = None, None
        fresh.save(
            update_fields=["firm_due_on", "firm_due_reason", "firm_due_by", "firm_due_set_at"]
        )
        record(
            "deadline.firm_date_cleared",
            object_type="deadline",
            object_id=fresh.pk,
            firm_id=fresh.firm_id,
            actor=staff_actor(by.pk),
            details=_details(fresh, previous_firm_due_on=before.isoformat()),
            at=now,
        )
    return True


# --- Reading deadlines --------------------------------------------------------------


def with_effective_due(deadlines: QuerySet[Deadline]) -> QuerySet[Deadline]:
    """`effective_due`: the firm's date when it set one, else the computed one, in SQL."""
    return deadlines.annotate(effective_due=Coalesce("firm_due_on", "due_on"))


def counted_from(deadline: Deadline) -> str:
    """What the computed date was counted from, in the page's language.

    `basis_text` records the rule in English for the audit trail; the page says the same
    from the dates, so that it reads in any language.
    """
    basis = date_format(deadline.basis, "DATE_FORMAT")
    days = (deadline.due_on - deadline.basis).days
    if days == 0:
        return _("the date in the USCIS notice")
    if "not in the description" in deadline.basis_text:
        return ngettext(
            "%(days)s day after casewatch first saw the status, on %(basis)s "
            "(USCIS's text gave no notice date)",
            "%(days)s days after casewatch first saw the status, on %(basis)s "
            "(USCIS's text gave no notice date)",
            days,
        ) % {"days": days, "basis": basis}
    return ngettext(
        "%(days)s day after the notice of %(basis)s",
        "%(days)s days after the notice of %(basis)s",
        days,
    ) % {"days": days, "basis": basis}


def person_name(user: User | None) -> str:
    if user is None:
        return ""
    return user.get_full_name() or user.get_username()


@dataclass(frozen=True)
class Row:
    """One deadline as the list shows it."""

    deadline: Deadline
    due: date
    days_left: int
    counted_from: str
    next_step: str

    @property
    def is_open(self) -> bool:
        return self.deadline.completed_at is None

    @property
    def overdue(self) -> bool:
        return self.is_open and self.days_left < 0

    @property
    def days_late(self) -> int:
        return -self.days_left


def _row(deadline: Deadline, today: date) -> Row:
    due = deadline.effective_due_on
    return Row(
        deadline=deadline,
        due=due,
        days_left=(due - today).days,
        counted_from=counted_from(deadline),
        next_step=str(NEXT_STEPS.get(deadline.kind, "")),
    )


@dataclass(frozen=True)
class Filters:
    """The list's filters, read from the query string; anything unknown is ignored."""

    kind: str = ""
    attorney: int | None = None
    state: str = "open"
    start: date | None = None
    end: date | None = None

    @classmethod
    def read(cls, query: Mapping[str, str], attorneys: set[int], today: date) -> Filters:
        kind = query.get("kind", "")
        state = query.get("state", "open")
        attorney = query.get("attorney", "")
        start, end = _date(query.get("from", "")), _date(query.get("to", ""))
        for code, _label, first, last in QUICK_RANGES:
            if query.get("range") == code:
                start = today + timedelta(days=first) if first is not None else None
                end = today + timedelta(days=last) if last is not None else None
                state = "open"
        return cls(
            kind=kind if kind in DeadlineKind.values else "",
            attorney=int(attorney) if attorney.isdigit() and int(attorney) in attorneys else None,
            state=state if state in STATES else "open",
            start=start,
            end=end,
        )

    def apply(self, deadlines: QuerySet[Deadline]) -> QuerySet[Deadline]:
        deadlines = deadlines.filter(STATES[self.state])
        if self.kind:
            deadlines = deadlines.filter(kind=self.kind)
        if self.attorney is not None:
            deadlines = deadlines.filter(case__attorney_id=self.attorney)
        if self.start is not None:
            deadlines = deadlines.filter(Q(effective_due__gte=self.start))
        if self.end is not None:
            deadlines = deadlines.filter(Q(effective_due__lte=self.end))
        return deadlines

    def as_query(self) -> dict[str, str]:
        """The filters as they go back into links (pages), with dates in ISO form."""
        return {
            "kind": self.kind,
            "attorney": str(self.attorney) if self.attorney is not None else "",
            "state": self.state,
            "from": self.start.isoformat() if self.start else "",
            "to": self.end.isoformat() if self.end else "",
        }


def _date(text: str) -> date | None:
    try:
        return parse_date(text.strip())
    except ValueError:
        return None


def _attorneys(firm: Firm) -> list[Membership]:
    return list(
        Membership.objects.filter(firm=firm, role=Role.ATTORNEY)
        .select_related("user")
        .order_by("user__first_name", "user__last_name", "user__username")
    )


def firm_deadlines(firm: Firm) -> QuerySet[Deadline]:
    return with_effective_due(Deadline.objects.filter(firm=firm))


@staff_view(Action.VIEW_CASES)
@records_access()
def deadline_list(request: HttpRequest, membership: Membership) -> HttpResponse:
    """The firm's deadlines: open first, soonest first, each with its case and its basis."""
    firm = membership.firm
    today = timezone.localdate()
    attorneys = _attorneys(firm)
    filters = Filters.read(request.GET, {m.user_id for m in attorneys}, today)
    # The page's ids are chosen and sorted on the deadline table alone; only those 50
    # rows are then read with their case, client and attorney (no wide rows in the sort).
    ordered_ids = (
        filters.apply(firm_deadlines(firm))
        .annotate(done=ExpressionWrapper(Q(completed_at__isnull=False), BooleanField()))
        .order_by("done", F("effective_due").asc(), "due_at", "pk")
        .values_list("pk", flat=True)
    )
    page = Paginator(ordered_ids, PAGE_SIZE).get_page(request.GET.get("page"))
    loaded = Deadline.objects.select_related(
        "case", "case__client", "case__attorney", "firm_due_by"
    ).in_bulk(list(page))
    query = filters.as_query()
    return render(
        request,
        "deadlines/list.html",
        {
            "firm": firm,
            "page": page,
            "rows": [_row(loaded[pk], today) for pk in page if pk in loaded],
            "filters": filters,
            "query": query,
            "kinds": DeadlineKind.choices,
            "attorneys": [(m.user_id, person_name(m.user)) for m in attorneys],
            "quick_ranges": [(code, label) for code, label, _first, _last in QUICK_RANGES],
            "today": today,
            "may_change": may(membership.role, Action.CHANGE_CASES),
            "may_subscribe": may(membership.role, Action.CALENDAR_FEED),
            "overdue_count": firm_deadlines(firm)
            .filter(Q(completed_at__isnull=True) & Q(effective_due__lt=today))
            .count(),
        },
    )


class FirmDateForm(forms.Form):
    due_on = forms.DateField(
        label=gettext_lazy("The firm's date"),
        widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"),
        input_formats=["%Y-%m-%d"],
    )
    reason = forms.CharField(
        label=gettext_lazy("Why this date"),
        max_length=REASON_MAX,
        help_text=gettext_lazy(
            "For example: USCIS granted an extension; the interview was rescheduled."
        ),
        widget=forms.Textarea(attrs={"rows": 3}),
    )


def _deadline_of(membership: Membership, pk: int) -> Deadline:
    """The firm's deadline with this id; another firm's is not found."""
    return get_object_or_404(
        Deadline.objects.select_related(
            "case", "case__client", "case__attorney", "case__paralegal", "firm_due_by", "event"
        ),
        pk=pk,
        firm=membership.firm,
    )


@dataclass(frozen=True)
class HistoryLine:
    at: datetime
    what: str
    who: str
    dates: str


def _history(deadline: Deadline, firm: Firm) -> list[HistoryLine]:
    """The deadline's audit entries in words: who changed what, and when."""
    entries = list(
        AuditEntry.objects.filter(
            object_type="deadline", object_id=str(deadline.pk), firm_id=firm.pk
        ).order_by("seq")
    )
    ids = {
        int(e.actor[5:]) for e in entries if e.actor.startswith("user:") and e.actor[5:].isdigit()
    }
    names = {
        m.user_id: person_name(m.user)
        for m in Membership.objects.filter(firm=firm, user_id__in=ids).select_related("user")
    }
    lines = []
    for entry in entries:
        who = _("casewatch") if entry.actor in ("worker", "system", "import") else ""
        if entry.actor.startswith("user:") and entry.actor[5:].isdigit():
            who = names.get(int(entry.actor[5:]), _("a former member"))
        details = entry.details
        shown = details.get("firm_due_on") or details.get("previous_firm_due_on") or ""
        if entry.action == "deadline.created":
            shown = details.get("due_on", "")
        day = _date(str(shown)) if shown else None
        lines.append(
            HistoryLine(
                at=entry.at,
                what=str(HISTORY_LABELS.get(entry.action, entry.action)),
                who=who,
                dates=date_format(day, "DATE_FORMAT") if day else "",
            )
        )
    return lines


@staff_view(Action.VIEW_CASES, change=Action.CHANGE_CASES)
@records_access("deadline")
def deadline_detail(request: HttpRequest, membership: Membership, pk: int) -> HttpResponse:
    """One deadline: how it was computed, the firm's date and why, and what happened to it.

    A POST sets the firm's own date (with its reason).
    """
    deadline = _deadline_of(membership, pk)
    form = FirmDateForm(
        request.POST if request.method == "POST" else None,
        initial={"due_on": deadline.effective_due_on},
    )
    if request.method == "POST" and form.is_valid():
        set_firm_date(
            deadline, form.cleaned_data["due_on"], form.cleaned_data["reason"], by=membership.user
        )
        messages.success(
            request,
            _("The firm's date for this deadline is now %(day)s.")
            % {"day": date_format(form.cleaned_data["due_on"], "DATE_FORMAT")},
        )
        return redirect("deadline-detail", pk=deadline.pk)
    today = timezone.localdate()
    return render(
        request,
        "deadlines/detail.html",
        {
            "row": _row(deadline, today),
            "deadline": deadline,
            "case": deadline.case,
            "form": form,
            "set_by": person_name(deadline.firm_due_by),
            "may_change": may(membership.role, Action.CHANGE_CASES),
            "history": _history(deadline, membership.firm)
            if may(membership.role, Action.VIEW_AUDIT)
            else None,
        },
    )


def _back(request: HttpRequest, deadline: Deadline) -> HttpResponse:
    """Where a button sends the member back to: the page they came from, if it is ours."""
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return redirect(target)
    return redirect("deadline-detail", pk=deadline.pk)


def _named(deadline: Deadline) -> dict[str, str]:
    return {
        "what": deadline.get_kind_display(),
        "receipt": deadline.case.receipt_number or _("receipt pending"),
    }


@staff_view(Action.CHANGE_CASES, change=Action.CHANGE_CASES)
def mark_done(request: HttpRequest, membership: Membership, pk: int) -> HttpResponse:
    deadline = _deadline_of(membership, pk)
    if request.method == "POST":
        if complete(deadline, by=membership.user):
            messages.success(request, _("Done: %(what)s, %(receipt)s.") % _named(deadline))
        else:
            messages.info(request, _("This deadline was already done."))
    return _back(request, deadline)


@staff_view(Action.CHANGE_CASES, change=Action.CHANGE_CASES)
def mark_open(request: HttpRequest, membership: Membership, pk: int) -> HttpResponse:
    deadline = _deadline_of(membership, pk)
    if request.method == "POST":
        if reopen(deadline, by=membership.user):
            messages.success(request, _("Reopened: %(what)s, %(receipt)s.") % _named(deadline))
        else:
            messages.info(request, _("This deadline was open already."))
    return _back(request, deadline)


@staff_view(Action.CHANGE_CASES, change=Action.CHANGE_CASES)
def computed_date(request: HttpRequest, membership: Membership, pk: int) -> HttpResponse:
    """Drop the firm's date: the deadline goes back to the date casewatch computed."""
    deadline = _deadline_of(membership, pk)
    if request.method == "POST" and clear_firm_date(deadline, by=membership.user):
        messages.success(
            request,
            _("Back to the computed date, %(day)s.")
            % {"day": date_format(deadline.due_on, "DATE_FORMAT")},
        )
    return redirect("deadline-detail", pk=deadline.pk)
