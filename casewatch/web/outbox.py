"""What the firm sent and how far each message got: the outbox, one notification's
delivery, a case's notifications, and each member's own in-app inbox.

Lists name a staff recipient and say "client" for a client, with the channel: never a
phone number or an e-mail address. A notification's page shows its attempts (duration,
outcome, the provider's answer) and the provider's receipts in the order they came, and
the address only masked. Opening an in-app notification in the inbox marks it read
(cli.md: "in_app … read when opened").

A client's reply reaches staff as an in-app notice that names the InboundMessage, not
its words; opening the notice shows the words (decrypted) to a member of the message's
firm who may view cases, and the reading is written to the audit chain (ids only).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any
from urllib.parse import urlencode, urlsplit

from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils import timezone
from django.utils.functional import Promise
from django.utils.translation import get_language, gettext_lazy
from django.utils.translation import gettext as _

from casewatch.accounts.models import Membership
from casewatch.accounts.permissions import Action, may
from casewatch.audit.chain import record as audit
from casewatch.audit.chain import staff_actor
from casewatch.cases.models import Case
from casewatch.core.receipts import normalize_receipt
from casewatch.notify.messages import Audience
from casewatch.notify.messages import render as render_message
from casewatch.notify.models import (
    Channel,
    InboundMessage,
    MessageKind,
    Notification,
    NotificationStatus,
    RecipientKind,
)
from casewatch.notify.portal_links import portal_figure
from casewatch.web.access import membership_of, staff_view

PAGE_SIZE = 50
# Matches are counted up to here; beyond, the page says "more than".
COUNT_CAP = 1000
MAX_PAGE = 10_000
# A case page lists this many of its newest notifications, then links to the outbox.
CASE_SHOWN = 20
INBOX_SHOWN = 100
# In-app notifications waiting to be opened: stored (delivered) or handed over (sent).
UNREAD = (NotificationStatus.SENT, NotificationStatus.DELIVERED)
INBOX_SHOWS = (*UNREAD, NotificationStatus.READ)

# What casewatch made of a client's message, as staff read it (InboundMessage.meaning).
MEANINGS: Mapping[str, Promise] = {
    "reply": gettext_lazy("Reply"),
    "opt_out": gettext_lazy("Opt-out"),
    "opt_in": gettext_lazy("Opt-in"),
    "unknown": gettext_lazy("From an unknown number"),
}


# --- Filters: one query parameter each ----------------------------------------------


def _choice(choices: type[Any], column: str) -> Callable[[str], Q | None]:
    values = {str(value) for value in choices.values}
    return lambda text: Q(**{column: text}) if text in values else None


def _receipt(text: str) -> Q | None:
    receipt = normalize_receipt(text)
    return Q(case__receipt_number=receipt) if receipt else None


FILTERS: Mapping[str, Callable[[str], Q | None]] = {
    "status": _choice(NotificationStatus, "status"),
    "channel": _choice(Channel, "channel"),
    "recipient": _choice(RecipientKind, "recipient_kind"),
    "case": _receipt,
}


def clean_parameters(query: Mapping[str, str]) -> dict[str, str]:
    """The outbox's own parameters, without empty ones or ones it does not understand."""
    cleaned = {}
    for name, read in FILTERS.items():
        value = str(query.get(name, "") or "").strip()[:40]
        if value and read(value) is not None:
            cleaned[name] = value
    return cleaned


def matching_notifications(firm_id: int, parameters: Mapping[str, str]) -> QuerySet[Notification]:
    """The firm's notifications the parameters ask for, newest first."""
    rows = Notification.objects.filter(firm_id=firm_id)
    for name, value in parameters.items():
        condition = FILTERS[name](value)
        if condition is not None:
            rows = rows.filter(condition)
    return rows.order_by("-created_at", "-pk")


@dataclass(frozen=True)
class OutboxPage:
    """One page of notifications; counts stop at COUNT_CAP (`more`: there are more)."""

    rows: list[Notification]
    number: int
    has_next: bool
    count: int
    more: bool

    @property
    def has_previous(self) -> bool:
        return self.number > 1

    @property
    def last(self) -> int | None:
        return None if self.more else max(1, -(-self.count // PAGE_SIZE))

    @property
    def first_shown(self) -> int:
        return (self.number - 1) * PAGE_SIZE + 1 if self.rows else 0

    @property
    def last_shown(self) -> int:
        return (self.number - 1) * PAGE_SIZE + len(self.rows)


def outbox_page(rows: QuerySet[Notification], number: int) -> OutboxPage:
    """Page `number`: one row more than shown is read to know whether another follows."""
    total = rows.order_by()[: COUNT_CAP + 1].count()
    if total <= COUNT_CAP:
        number = min(number, max(1, -(-total // PAGE_SIZE)))
    start = (number - 1) * PAGE_SIZE
    found = list(with_people(rows)[start : start + PAGE_SIZE + 1])
    return OutboxPage(
        rows=found[:PAGE_SIZE],
        number=number,
        has_next=len(found) > PAGE_SIZE,
        count=min(total, COUNT_CAP),
        more=total > COUNT_CAP,
    )


def with_people(rows: QuerySet[Notification]) -> QuerySet[Notification]:
    """Rows with what a list shows beside them, and without the encrypted fields it does not."""
    return rows.select_related("user", "case").defer("address", "case__notes", "last_error")


def recipient(notification: Notification) -> str:
    """To whom, as a list says it: the staff member's name, or "client" and the channel."""
    if notification.recipient_kind == RecipientKind.STAFF:
        user: User | None = notification.user
        if user is None:
            return _("staff (no longer a member)")
        return user.get_full_name() or user.get_username()
    return _("client by %(channel)s") % {"channel": notification.get_channel_display()}


def described(rows: list[Notification]) -> list[Notification]:
    """Rows with what a list says of each: to whom, and its language by name."""
    # The case page names the client languages, and lists a case's notifications from here.
    from casewatch.web.case_page import CLIENT_LANGUAGES

    for row in rows:
        row.to_whom = recipient(row)  # type: ignore[attr-defined]
        name = CLIENT_LANGUAGES.get(row.language, row.language)
        row.language_name = str(name)  # type: ignore[attr-defined]
    return rows


def _page_number(text: str | None) -> int:
    return min(max(int(text), 1), MAX_PAGE) if text and text.isdigit() else 1


@staff_view(Action.VIEW_OUTBOX)
def outbox(request: HttpRequest, membership: Membership) -> HttpResponse:
    """The firm's notifications, newest first, filtered and a page at a time."""
    firm = membership.firm
    parameters = clean_parameters(request.GET)
    page = outbox_page(
        matching_notifications(firm.pk, parameters), _page_number(request.GET.get("page"))
    )
    described(page.rows)
    return render(
        request,
        "outbox/outbox.html",
        {
            "firm": firm,
            "page": page,
            "p": parameters,
            "query": urlencode(parameters),
            "filtered": bool(parameters),
            "statuses": NotificationStatus.choices,
            "channels": Channel.choices,
            "recipients": RecipientKind.choices,
            "figure": portal_figure(firm.pk, at=timezone.now()),
            "count_cap": COUNT_CAP,
        },
    )


def case_notifications(case: Case) -> list[Notification]:
    """The case's newest notifications, each with whom it went to, for the case page."""
    return described(
        list(with_people(case.notifications.order_by("-created_at", "-pk"))[:CASE_SHOWN])
    )


# --- One notification ---------------------------------------------------------------


def masked_address(channel: str, address: str) -> str:
    """Enough of an address to tell two apart, not enough to use: the end of a phone
    number, the first letter and domain of an e-mail, the host of a webhook."""
    if not address:
        return ""
    if channel == Channel.EMAIL and "@" in address:
        local, _at, domain = address.rpartition("@")
        return f"{local[:1]}…@{domain}"
    if channel == Channel.WEBHOOK:
        return urlsplit(address).hostname or "…"
    digits = [c for c in address if c.isdigit()]
    return "… " + "".join(digits[-4:]) if len(digits) > 4 else "…"


def message_text(notification: Notification, language: str | None = None) -> str:
    """The message rendered again from its key and parameters: in the language it was sent
    in, or in `language` (an alert read inside the app is read in the app's language)."""
    audience: Audience = "staff" if notification.recipient_kind == RecipientKind.STAFF else "client"
    rendered = render_message(
        notification.message, language or notification.language, audience=audience
    )
    return rendered.text


@staff_view(Action.VIEW_OUTBOX)
def notification_detail(request: HttpRequest, membership: Membership, pk: int) -> HttpResponse:
    notification = get_object_or_404(
        Notification.objects.select_related("user", "case", "fallback_of"),
        pk=pk,
        firm=membership.firm,
    )
    described([notification])
    attempts = notification.delivery_attempts.order_by("started_at", "pk")
    receipts = notification.receipts.order_by("received_at", "pk")
    return render(
        request,
        "outbox/detail.html",
        {
            "n": notification,
            "address": masked_address(notification.channel, notification.address),
            "attempts": attempts,
            "receipts": receipts,
            "fallbacks": notification.fallbacks.order_by("created_at", "pk"),
            "text": _text_or_none(notification),
            "kind": MessageKind(notification.kind).label
            if notification.kind in MessageKind.values
            else notification.kind,
        },
    )


def _text_or_none(notification: Notification, language: str | None = None) -> str | None:
    """The message's text, or None when its key or parameters say nothing renderable (the
    page then shows its kind and parameters as stored)."""
    try:
        return message_text(notification, language)
    except (KeyError, LookupError, ValueError):
        return None


# --- A member's own in-app notifications --------------------------------------------


def inbox_rows(membership: Membership) -> QuerySet[Notification]:
    return Notification.objects.filter(
        firm_id=membership.firm_id,
        user_id=membership.user_id,
        channel=Channel.IN_APP,
        status__in=INBOX_SHOWS,
    )


def unread_count(membership: Membership) -> int:
    """One count over the inbox index (user, channel, status)."""
    return inbox_rows(membership).filter(status__in=UNREAD).count()


@staff_view(Action.OWN_INBOX)
def inbox(request: HttpRequest, membership: Membership) -> HttpResponse:
    rows = list(
        inbox_rows(membership)
        .select_related("case")
        .defer("address", "case__notes")
        .order_by("-created_at", "-pk")[:INBOX_SHOWN]
    )
    language = get_language() or "en"
    for row in rows:
        row.text = _text_or_none(row, language)  # type: ignore[attr-defined]
        row.unread = row.status in UNREAD  # type: ignore[attr-defined]
    return render(request, "outbox/inbox.html", {"rows": rows, "shown": INBOX_SHOWN})


@staff_view(Action.OWN_INBOX)
def inbox_open(request: HttpRequest, membership: Membership, pk: int) -> HttpResponse:
    """One of the member's in-app notifications; opening it marks it read.

    A client's reply also shows what the client wrote, and that reading is audited.
    """
    notification = get_object_or_404(
        inbox_rows(membership).select_related("case").defer("case__notes"), pk=pk
    )
    inbound = client_message_of(notification, membership)
    now = timezone.now()
    with transaction.atomic():
        if notification.status in UNREAD:
            Notification.objects.filter(pk=notification.pk, status__in=UNREAD).update(
                status=NotificationStatus.READ, read_at=now, status_at=now
            )
            notification.status, notification.read_at = NotificationStatus.READ, now
        if inbound is not None:
            audit(
                "inbound.viewed",
                object_type="inbound_message",
                object_id=inbound.pk,
                firm_id=membership.firm_id,
                actor=staff_actor(membership.user_id),
                details={"notification_id": notification.pk, "client_id": inbound.client_id},
                at=now,
            )
    language = get_language() or "en"
    return render(
        request,
        "outbox/inbox_item.html",
        {
            "n": notification,
            "text": _text_or_none(notification, language),
            "inbound": inbound,
            "meaning": MEANINGS.get(inbound.meaning, inbound.meaning) if inbound else None,
            "client_link": _client_link(notification, inbound),
        },
    )


def client_message_of(notification: Notification, membership: Membership) -> InboundMessage | None:
    """The client's message a client_reply notice names, when this member may read it:
    the message belongs to the member's firm and their role may view cases."""
    if notification.kind != MessageKind.CLIENT_REPLY:
        return None
    params = notification.message.get("params") if isinstance(notification.message, dict) else None
    message_id = params.get("inbound_message_id") if isinstance(params, dict) else None
    if not isinstance(message_id, int) or not may(membership.role, Action.VIEW_CASES):
        return None
    return (
        InboundMessage.objects.filter(pk=message_id, firm_id=membership.firm_id)
        .select_related("client")
        .first()
    )


def _client_link(notification: Notification, inbound: InboundMessage | None) -> str:
    """Where to act on a client's message: the case the notice names, else the client's
    contact page; nothing for other notices (their case link is shown as before)."""
    if inbound is None or notification.case is not None:
        return ""
    client_id = inbound.client_id or notification.client_id
    return reverse("client-contact", args=[client_id]) if client_id else ""


def inbox_badge(request: HttpRequest) -> dict[str, Any]:
    """The header's count of unread in-app notifications; counted only when a page shows it."""
    if not request.user.is_authenticated:
        return {}

    @cache
    def count() -> int:
        membership = membership_of(request)
        return unread_count(membership) if membership is not None else 0

    return {"inbox_unread": count}
