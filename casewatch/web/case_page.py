"""A case's page: its timeline, deadlines, notes, audit trail; editing and archiving it.

Every change made here is written with its audit entry in one transaction, and the
audit keeps ids and codes only, never a client's name or a note's text. Whether
casewatch still checks a case at USCIS is read from the monitor's own rule
(`casewatch.monitor.checks.watched_cases`), so the page says what is true.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.functional import Promise
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, pgettext_lazy

from casewatch.accounts.models import Firm, Membership
from casewatch.accounts.permissions import Action, may
from casewatch.audit.chain import record as audit
from casewatch.audit.chain import staff_actor
from casewatch.audit.models import AuditEntry
from casewatch.cases.editing import change_case
from casewatch.cases.models import Case, Comment, StatusEvent
from casewatch.cases.sheet import clean_form_type, split_tags
from casewatch.core.receipts import InvalidReceipt, parse_receipt
from casewatch.monitor.archiving import monitoring, set_archived
from casewatch.notify.models import InboundMessage
from casewatch.web.access import staff_view
from casewatch.web.access_log import records_access
from casewatch.web.case_list import attorneys
from casewatch.web.outbox import MEANINGS, case_notifications

AUDIT_SHOWN = 100
NOTE_MAX = 5000
# The client's messages shown at once, newest first; older ones a page further on.
CLIENT_MESSAGES_SHOWN = 20
MAX_MESSAGE_PAGE = 1000

# The languages casewatch writes to clients in (cli.md), named in the staff's language
# (with a context: the header's language switcher names each language in itself).
CLIENT_LANGUAGES: Mapping[str, Promise] = {
    "en": pgettext_lazy("language", "English"),
    "es": pgettext_lazy("language", "Spanish"),
    "pt": pgettext_lazy("language", "Portuguese"),
    "zh": pgettext_lazy("language", "Chinese"),
    "vi": pgettext_lazy("language", "Vietnamese"),
    "hi": pgettext_lazy("language", "Hindi"),
    "ar": pgettext_lazy("language", "Arabic"),
    "ht": pgettext_lazy("language", "Haitian Creole"),
    "fr": pgettext_lazy("language", "French"),
    "tl": pgettext_lazy("language", "Tagalog"),
}

# What the page says about checking, by the case's situation (see `monitoring`).
MONITORING: Mapping[str, Promise] = {
    "watched": gettext_lazy("casewatch checks this case at USCIS."),
    "archived_watched": gettext_lazy(
        "Archived: it has left the case list, but casewatch keeps checking it at USCIS "
        "until USCIS reports a final status (such as card delivered, denied, rejected, "
        "withdrawn or closed)."
    ),
    "archived_final": gettext_lazy(
        "Archived, in a final status: casewatch no longer checks it at USCIS."
    ),
    "no_receipt": gettext_lazy(
        "No receipt number yet, so casewatch cannot check it at USCIS. Add the receipt "
        "number when USCIS sends it."
    ),
}

AUDIT_ACTIONS: Mapping[str, Promise] = {
    "case.created": gettext_lazy("Case added"),
    "case.updated": gettext_lazy("Case changed"),
    "case.archived": gettext_lazy("Case archived"),
    "case.unarchived": gettext_lazy("Case brought back from the archive"),
    "status_event.recorded": gettext_lazy("Status change recorded"),
    "deadline.created": gettext_lazy("Deadline set"),
    "deadline.changed": gettext_lazy("Deadline date changed by the firm"),
    "comment.added": gettext_lazy("Note added"),
    "follow_up.acknowledged": gettext_lazy("Change acknowledged"),
    "follow_up.assigned": gettext_lazy("Change assigned"),
    "reminder.created": gettext_lazy("Reminder created"),
}

ACTORS: Mapping[str, Promise] = {
    "import": gettext_lazy("Import"),
    "worker": gettext_lazy("casewatch monitor"),
    "system": gettext_lazy("casewatch"),
}

FIELD_LABELS: Mapping[str, Promise] = {
    "receipt_number": gettext_lazy("Receipt number"),
    "form_type": gettext_lazy("Form type"),
    "client": gettext_lazy("Client"),
    "client_language": gettext_lazy("Client's language"),
    "attorney": gettext_lazy("Attorney"),
    "paralegal": gettext_lazy("Paralegal"),
    "tags": gettext_lazy("Tags"),
    "notes": gettext_lazy("Notes"),
}


def _case_of(membership: Membership, pk: int) -> Case:
    return get_object_or_404(
        Case.objects.select_related("client", "attorney", "paralegal"), pk=pk, firm=membership.firm
    )


# --- The page ----------------------------------------------------------------------


@staff_view(Action.VIEW_CASES)
@records_access("case")
def case_detail(request: HttpRequest, membership: Membership, pk: int) -> HttpResponse:
    firm = membership.firm
    case = _case_of(membership, pk)
    events = list(
        case.events.select_related("follow_up__assigned_to", "follow_up__acknowledged_by").order_by(
            "-observed_at", "-pk"
        )
    )
    comments = list(case.comments.select_related("author").order_by("created_at", "pk"))
    by_event: dict[int | None, list[Comment]] = defaultdict(list)
    for comment in comments:
        by_event[comment.event_id].append(comment)
    for event in events:
        event.notes = by_event.get(event.pk, [])  # type: ignore[attr-defined]
    may_change = may(membership.role, Action.CHANGE_CASES)
    may_audit = may(membership.role, Action.VIEW_AUDIT)
    return render(
        request,
        "cases/detail.html",
        {
            "firm": firm,
            "case": case,
            "events": events,
            "deadlines": case.deadlines.select_related("firm_due_by").order_by("due_on"),
            "notes": by_event.get(None, []),
            "last_observation": case.observations.order_by("-observed_at").first(),
            "monitoring": MONITORING[monitoring(case)],
            "may_change": may_change,
            "audit": _audit_trail(case, events, comments) if may_audit else None,
            "note_form": NoteForm(),
            "notifications": case_notifications(case),
            "client_messages": client_messages(case, request.GET.get("messages")),
            "note_max": NOTE_MAX,
            "client_language": CLIENT_LANGUAGES.get(case.client.language or "en")
            if case.client
            else None,
        },
    )


@dataclass(frozen=True)
class ClientMessages:
    """One page of what the case's client wrote to the firm, newest first."""

    rows: list[InboundMessage]
    number: int
    has_older: bool

    @property
    def has_newer(self) -> bool:
        return self.number > 1


def client_messages(case: Case, page: str | None) -> ClientMessages:
    """The client's WhatsApp and SMS messages to the firm (replies, STOP and START words),
    each with its meaning in words; page `page` of CLIENT_MESSAGES_SHOWN."""
    number = min(max(int(page), 1), MAX_MESSAGE_PAGE) if page and page.isdigit() else 1
    if case.client_id is None:
        return ClientMessages(rows=[], number=1, has_older=False)
    start = (number - 1) * CLIENT_MESSAGES_SHOWN
    found = list(
        InboundMessage.objects.filter(firm_id=case.firm_id, client_id=case.client_id)
        .defer("sender")
        .order_by("-received_at", "-pk")[start : start + CLIENT_MESSAGES_SHOWN + 1]
    )
    rows = found[:CLIENT_MESSAGES_SHOWN]
    for row in rows:
        row.meaning_label = MEANINGS.get(row.meaning, row.meaning)  # type: ignore[attr-defined]
    return ClientMessages(rows=rows, number=number, has_older=len(found) > len(rows))


def _audit_trail(
    case: Case, events: list[StatusEvent], comments: list[Comment]
) -> list[dict[str, Any]]:
    """The newest entries about the case, its changes, deadlines and notes, in words."""
    objects = Q(object_type="case", object_id=str(case.pk))
    related: dict[str, list[str]] = {
        "status_event": [str(e.pk) for e in events],
        "deadline": [str(pk) for pk in case.deadlines.values_list("pk", flat=True)],
        "comment": [str(c.pk) for c in comments],
    }
    for kind, ids in related.items():
        if ids:
            objects |= Q(object_type=kind, object_id__in=ids)
    entries = list(
        AuditEntry.objects.filter(objects, firm_id=case.firm_id).order_by("-seq")[:AUDIT_SHOWN]
    )
    user_ids = {
        int(e.actor.removeprefix("user:"))
        for e in entries
        if e.actor.startswith("user:") and e.actor[5:].isdigit()
    }
    names = {
        user.pk: user.get_full_name() or user.get_username()
        for user in User.objects.filter(pk__in=user_ids)
    }
    shown = []
    for entry in entries:
        details = entry.details if isinstance(entry.details, dict) else {}
        actor_id = entry.actor.removeprefix("user:")
        shown.append(
            {
                "at": entry.at,
                "action": AUDIT_ACTIONS.get(entry.action),
                "code": entry.action,
                "actor": (
                    names.get(int(actor_id), entry.actor)
                    if entry.actor.startswith("user:") and actor_id.isdigit()
                    else ACTORS.get(entry.actor, entry.actor)
                ),
                "changed": [FIELD_LABELS.get(name, name) for name in details.get("changed", [])],
                "seq": entry.seq,
            }
        )
    return shown


# --- Notes -------------------------------------------------------------------------


class NoteForm(forms.Form):
    body = forms.CharField(
        label=gettext_lazy("Note"),
        max_length=NOTE_MAX,
        widget=forms.Textarea(attrs={"rows": 3}),
    )
    event = forms.IntegerField(required=False, widget=forms.HiddenInput)


@staff_view(Action.CHANGE_CASES, change=Action.CHANGE_CASES)
def add_note(request: HttpRequest, membership: Membership, pk: int) -> HttpResponse:
    """A note on the case, or on one change of it (a POST from the case page)."""
    case = _case_of(membership, pk)
    form = NoteForm(request.POST if request.method == "POST" else None)
    if request.method != "POST" or not form.is_valid():
        messages.error(request, _("Write the note before adding it."))
        return redirect("case-detail", pk=case.pk)
    event = None
    if form.cleaned_data["event"]:
        event = get_object_or_404(StatusEvent, pk=form.cleaned_data["event"], case=case)
    with transaction.atomic():
        comment = Comment.objects.create(
            firm=membership.firm,
            case=case,
            event=event,
            author=membership.user,
            body=form.cleaned_data["body"].strip(),
        )
        audit(
            "comment.added",
            object_type="comment",
            object_id=comment.pk,
            firm_id=case.firm_id,
            actor=staff_actor(membership.user_id),
            details={"case_id": case.pk, "event_id": event.pk if event else None},
        )
    messages.success(request, _("Note added."))
    return redirect(f"{case_url(case)}#notes")


def case_url(case: Case) -> str:
    return reverse("case-detail", args=[case.pk])


# --- Editing -----------------------------------------------------------------------


class CaseForm(forms.Form):
    """What staff may change about a case; the receipt only while it is still pending."""

    receipt_number = forms.CharField(
        label=gettext_lazy("Receipt number"),
        required=False,
        max_length=40,
        help_text=gettext_lazy("Three letters and ten digits, as on the USCIS receipt notice."),
    )
    form_type = forms.CharField(
        label=gettext_lazy("Form type"),
        required=False,
        max_length=16,
        help_text=gettext_lazy("For example I-485 or N-400."),
    )
    attorney = forms.TypedChoiceField(
        label=gettext_lazy("Attorney"), required=False, coerce=int, empty_value=None
    )
    paralegal = forms.TypedChoiceField(
        label=gettext_lazy("Paralegal"), required=False, coerce=int, empty_value=None
    )
    tags = forms.CharField(
        label=gettext_lazy("Tags"),
        required=False,
        max_length=500,
        help_text=gettext_lazy("Separated by commas."),
    )
    client_language = forms.ChoiceField(
        label=gettext_lazy("Client's language"),
        required=False,
        help_text=gettext_lazy("casewatch writes to the client in this language."),
    )

    def __init__(self, case: Case, firm: Firm, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.case = case
        self.firm = firm
        people = [("", "—")] + [
            (user.pk, user.get_full_name() or user.get_username()) for user in attorneys(firm)
        ]
        for name in ("attorney", "paralegal"):
            field = self.fields[name]
            assert isinstance(field, forms.ChoiceField)
            field.choices = people
        if not case.receipt_pending:
            del self.fields["receipt_number"]
        if case.client is None:
            del self.fields["client_language"]
        else:
            languages = [(code, str(name)) for code, name in CLIENT_LANGUAGES.items()]
            current = case.client.language
            if current and current not in CLIENT_LANGUAGES:
                languages.append((current, current))
            field = self.fields["client_language"]
            assert isinstance(field, forms.ChoiceField)
            field.choices = languages

    def clean_receipt_number(self) -> str | None:
        text = self.cleaned_data["receipt_number"].strip()
        if not text:
            return None
        try:
            receipt = parse_receipt(text)
        except InvalidReceipt as problem:
            raise forms.ValidationError(
                _("This is not a receipt number: it has three letters and ten digits.")
            ) from problem
        taken = Case.objects.filter(firm=self.firm, receipt_number=receipt.number).exclude(
            pk=self.case.pk
        )
        if taken.exists():
            raise forms.ValidationError(_("Another case of the firm has this receipt number."))
        return receipt.number

    def clean_form_type(self) -> str:
        text = self.cleaned_data["form_type"].strip()
        if not text:
            return ""
        form_type, problem = clean_form_type(text)
        if problem:
            raise forms.ValidationError(_("Write a USCIS form number, like I-485 or N-400."))
        return str(form_type)

    def clean_tags(self) -> list[str]:
        return split_tags(self.cleaned_data["tags"])

    def initial_values(self) -> dict[str, Any]:
        case = self.case
        return {
            "receipt_number": case.receipt_number or "",
            "form_type": case.form_type,
            "attorney": case.attorney_id,
            "paralegal": case.paralegal_id,
            "tags": ", ".join(case.tags),
            "client_language": (case.client.language or "en") if case.client else "",
        }


@staff_view(Action.CHANGE_CASES, change=Action.CHANGE_CASES)
@records_access("case")
def edit_case(request: HttpRequest, membership: Membership, pk: int) -> HttpResponse:
    case = _case_of(membership, pk)
    firm = membership.firm
    if request.method == "POST":
        form = CaseForm(case, firm, request.POST)
        if form.is_valid():
            data = dict(form.cleaned_data)
            member_ids = {user.pk for user in attorneys(firm)}
            for name in ("attorney", "paralegal"):
                if data.get(name) is not None and data[name] not in member_ids:
                    data[name] = getattr(case, f"{name}_id")
            if change_case(case, data, actor=staff_actor(membership.user_id)):
                messages.success(request, _("Case saved."))
            else:
                messages.info(request, _("Nothing was changed."))
            return redirect("case-detail", pk=case.pk)
    else:
        form = CaseForm(case, firm)
        form.initial = form.initial_values()
    return render(request, "cases/edit.html", {"firm": firm, "case": case, "form": form})


# --- Archiving ---------------------------------------------------------------------


@staff_view(Action.CHANGE_CASES, change=Action.CHANGE_CASES)
def archive_case(request: HttpRequest, membership: Membership, pk: int) -> HttpResponse:
    """Archive (or, with `restore`, bring back) a case; a GET only goes back to the page."""
    case = _case_of(membership, pk)
    if request.method != "POST":
        return redirect("case-detail", pk=case.pk)
    restore = request.POST.get("restore") == "1"
    if not set_archived(case, not restore, actor=staff_actor(membership.user_id)):
        return redirect("case-detail", pk=case.pk)
    state = monitoring(case)
    messages.success(request, _("Case is active again.") if restore else str(MONITORING[state]))
    return redirect("case-detail", pk=case.pk)
