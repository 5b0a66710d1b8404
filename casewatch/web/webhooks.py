"""The firm's outbound webhooks: endpoints, their event types, a test event, the delivery log.

Firm admins (Action.MANAGE_MESSAGING) manage them under the Messaging settings. A
new endpoint's signing secret is generated here and shown once, right after it is
added; only the encrypted secret is kept. A test event is a notification like any
other (the dispatcher sends it within seconds), so it appears in the delivery log.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from django import forms
from django.contrib import messages
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from casewatch.accounts.models import Membership
from casewatch.accounts.permissions import Action
from casewatch.audit.chain import record
from casewatch.notify.models import (
    DeliveryAttempt,
    MessageKind,
    Notification,
    WebhookEndpoint,
)
from casewatch.notify.route import Source, save_notifications, webhook_draft
from casewatch.notify.webhook_events import webhook_events
from casewatch.web.access import staff_view
from casewatch.web.once import OnceForm, first_sending

# Plain http is for a receiver on the admin's own machine while they build it.
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
# How many of an endpoint's latest deliveries its page shows.
LOG_SIZE = 50


# A reload of the page that showed a new endpoint's secret sends its form again.
ALREADY_SENT = gettext_lazy(
    "This form was already sent: the endpoint was added, and its secret shown once. If the "
    "secret was not kept, delete that endpoint and add it again."
)


def new_secret() -> str:
    """A signing secret: 32 random bytes, prefixed so it is recognised when pasted."""
    return f"whsec_{secrets.token_urlsafe(32)}"


def url_problem(url: str) -> str | None:
    """Why an endpoint URL is refused, or None: https, or http to this machine for testing."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return None
    if parts.scheme == "http" and parts.hostname in LOCAL_HOSTS:
        return None
    return _("The address must start with https:// (http:// only for 127.0.0.1 or localhost).")


def event_choices() -> list[tuple[str, str]]:
    return [(e.type, _(e.label)) for e in webhook_events()]


class EventTypesField(forms.MultipleChoiceField):
    widget = forms.CheckboxSelectMultiple


class EndpointForm(OnceForm):
    """The address (only when adding) and the event types the endpoint takes."""

    url = forms.URLField(label=gettext_lazy("Address (URL)"), max_length=500, assume_scheme="https")
    event_types = EventTypesField(label=gettext_lazy("Events to send"))

    def __init__(self, *args: Any, adding: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["event_types"]
        assert isinstance(field, forms.MultipleChoiceField)
        field.choices = event_choices()
        if not adding:
            del self.fields["url"]

    def clean_url(self) -> str:
        url = str(self.cleaned_data["url"])
        problem = url_problem(url)
        if problem:
            raise forms.ValidationError(problem)
        return url


class SettingsForm(EndpointForm):
    """An endpoint's event types and whether it is on."""

    active = forms.BooleanField(label=gettext_lazy("Send events to this endpoint"), required=False)


def _audit(membership: Membership, action: str, endpoint: WebhookEndpoint, **details: Any) -> None:
    record(
        f"webhook.{action}",
        actor=f"user:{membership.user_id}",
        object_type="webhook_endpoint",
        object_id=endpoint.pk,
        firm_id=membership.firm_id,
        details={"host": urlsplit(endpoint.url).hostname or "", **details},
    )


@dataclass(frozen=True)
class LogLine:
    """One attempt at one delivery, as the log shows it."""

    at: datetime
    event: str
    delivery: int
    status: str
    http_status: int | None
    duration_ms: int | None
    outcome: str
    error: str


def delivery_log(endpoint: WebhookEndpoint, limit: int = LOG_SIZE) -> list[LogLine]:
    """The endpoint's latest deliveries, each attempt a line; an unsent one, a line of its own."""
    kinds = dict(MessageKind.choices)
    lines: list[LogLine] = []
    deliveries = Notification.objects.filter(endpoint=endpoint).order_by("-created_at", "-pk")
    for note in deliveries[:limit]:
        attempts = list(
            DeliveryAttempt.objects.filter(notification=note).order_by("-started_at", "-pk")
        )
        event = str(kinds.get(note.kind, note.kind))
        if not attempts:
            lines.append(
                LogLine(
                    note.created_at,
                    event,
                    note.pk,
                    note.get_status_display(),
                    None,
                    None,
                    "",
                    note.last_error,
                )
            )
        for attempt in attempts:
            lines.append(
                LogLine(
                    attempt.started_at,
                    event,
                    note.pk,
                    note.get_status_display(),
                    attempt.http_status,
                    attempt.duration_ms,
                    attempt.get_outcome_display(),
                    attempt.response if attempt.outcome != "sent" else "",
                )
            )
    return lines


@staff_view(Action.MANAGE_MESSAGING, change=Action.MANAGE_MESSAGING)
def webhooks(request: HttpRequest, membership: Membership) -> HttpResponse:
    """The firm's endpoints; a POST adds one and shows its secret once."""
    posted = request.POST if request.method == "POST" else None
    form = EndpointForm(posted, initial={"event_types": [e.type for e in webhook_events()]})
    if posted is not None and form.is_valid() and not first_sending(request, form):
        messages.info(request, ALREADY_SENT)
        return redirect("webhooks")
    if posted is not None and form.is_valid():
        secret = new_secret()
        with transaction.atomic():
            endpoint = WebhookEndpoint.objects.create(
                firm_id=membership.firm_id,
                url=form.cleaned_data["url"],
                secret=secret,
                event_types=list(form.cleaned_data["event_types"]),
            )
            _audit(membership, "added", endpoint, event_types=endpoint.event_types)
        # Shown in this answer only: the secret is never put in the session or a redirect.
        form = SettingsForm(
            None,
            adding=False,
            initial={"event_types": endpoint.event_types, "active": endpoint.active},
        )
        response = _detail_page(request, membership, endpoint, form, secret=secret)
        response["Cache-Control"] = "no-store"
        return response
    endpoints = WebhookEndpoint.objects.filter(firm_id=membership.firm_id).order_by("pk")
    return render(
        request,
        "webhooks/list.html",
        {"firm": membership.firm, "form": form, "endpoints": endpoints},
        status=400 if posted is not None else 200,
    )


def _endpoint(membership: Membership, pk: int) -> WebhookEndpoint:
    return get_object_or_404(WebhookEndpoint, pk=pk, firm_id=membership.firm_id)


@staff_view(Action.MANAGE_MESSAGING, change=Action.MANAGE_MESSAGING)
def webhook(request: HttpRequest, membership: Membership, pk: int) -> HttpResponse:
    """One endpoint: its secret (once, when new), settings and delivery log."""
    endpoint = _endpoint(membership, pk)
    posted = request.POST if request.method == "POST" else None
    form = SettingsForm(
        posted,
        adding=False,
        initial={"event_types": endpoint.event_types, "active": endpoint.active},
    )
    if posted is not None and form.is_valid():
        turned_on = form.cleaned_data["active"] and not endpoint.active
        endpoint.event_types = list(form.cleaned_data["event_types"])
        endpoint.active = bool(form.cleaned_data["active"])
        if turned_on:
            endpoint.disabled_at = None
            endpoint.consecutive_failures = 0
        elif not endpoint.active and endpoint.disabled_at is None:
            endpoint.disabled_at = timezone.now()
        with transaction.atomic():
            endpoint.save(
                update_fields=["event_types", "active", "disabled_at", "consecutive_failures"]
            )
            _audit(
                membership,
                "changed",
                endpoint,
                event_types=endpoint.event_types,
                active=endpoint.active,
            )
        messages.success(request, _("The webhook endpoint is saved."))
        return redirect("webhook", pk=endpoint.pk)
    return _detail_page(
        request, membership, endpoint, form, status=400 if posted is not None else 200
    )


def _detail_page(
    request: HttpRequest,
    membership: Membership,
    endpoint: WebhookEndpoint,
    form: SettingsForm,
    *,
    secret: str = "",
    status: int = 200,
) -> HttpResponse:
    labels = dict(event_choices())
    return render(
        request,
        "webhooks/detail.html",
        {
            "firm": membership.firm,
            "endpoint": endpoint,
            "event_labels": [labels.get(t, t) for t in endpoint.event_types],
            "form": form,
            "secret": secret,
            "log": delivery_log(endpoint),
        },
        status=status,
    )


@staff_view(Action.MANAGE_MESSAGING, change=Action.MANAGE_MESSAGING)
def delete_webhook(request: HttpRequest, membership: Membership, pk: int) -> HttpResponse:
    """GET asks to confirm; POST deletes the endpoint (its deliveries stay in the outbox)."""
    endpoint = _endpoint(membership, pk)
    if request.method == "POST":
        with transaction.atomic():
            _audit(membership, "deleted", endpoint)
            endpoint.delete()
        messages.success(request, _("The webhook endpoint is deleted."))
        return redirect("webhooks")
    return render(request, "webhooks/delete.html", {"firm": membership.firm, "endpoint": endpoint})


def queue_test_event(endpoint: WebhookEndpoint, membership: Membership) -> Notification:
    """A test event for the endpoint, in the outbox: the dispatcher sends it, signed."""
    now = timezone.now()
    source = Source(
        name=f"webhook_test:{secrets.token_hex(8)}",
        pk=endpoint.pk,
        kind=MessageKind.WEBHOOK_TEST,
        firm_id=endpoint.firm_id,
    )
    note = webhook_draft(
        source, endpoint, {"test": True, "requested_by": f"user:{membership.user_id}"}, now
    )
    with transaction.atomic():
        save_notifications([note])
        _audit(membership, "test_queued", endpoint)
    return note


@staff_view(Action.MANAGE_MESSAGING, change=Action.MANAGE_MESSAGING)
def test_webhook(request: HttpRequest, membership: Membership, pk: int) -> HttpResponse:
    """POST: queue a test event for the endpoint (GET: back to its page)."""
    endpoint = _endpoint(membership, pk)
    if request.method == "POST":
        if not endpoint.active:
            messages.error(request, _("Turn the endpoint on before sending it a test event."))
        else:
            queue_test_event(endpoint, membership)
            messages.success(
                request,
                _("A test event is on its way; it appears in the delivery log within a minute."),
            )
    return redirect("webhook", pk=endpoint.pk)


__all__ = [
    "delete_webhook",
    "delivery_log",
    "new_secret",
    "queue_test_event",
    "test_webhook",
    "url_problem",
    "webhook",
    "webhooks",
]
