"""The messages casewatch sent (or holds, or could not send) to clients and staff.

A case-management system reads here whether a client was told, on which channel, and
whether it was delivered and read. The address a message went to and the error a
provider gave are write-token fields: both may hold a phone or an e-mail address.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.http import Http404, HttpRequest
from ninja import Field, Query, Router, Schema

from casewatch.accounts.models import ApiToken
from casewatch.api.auth import may_see_clients, token_of
from casewatch.api.cases import ERRORS, WITH_404, ProblemOut
from casewatch.api.pages import PageQuery, page_of
from casewatch.api.problems import Problem
from casewatch.notify.models import (
    Channel,
    MessageKind,
    Notification,
    NotificationStatus,
    RecipientKind,
)

router = Router(tags=["notifications"])


class NotificationOut(Schema):
    id: int
    case_id: int | None
    receipt_number: str | None
    event_id: int | None = Field(description="the status event it tells of, if any")
    kind: str
    recipient_kind: str = Field(description="client or staff")
    client_id: int | None
    user_id: int | None = Field(description="the staff member it went to")
    channel: str
    language: str
    urgency: str
    status: str
    attempts: int
    created_at: datetime
    sent_at: datetime | None
    delivered_at: datetime | None
    read_at: datetime | None
    failed_at: datetime | None
    next_attempt_at: datetime | None = Field(description="when it is tried next, if waiting")
    fallback_of: int | None = Field(description="the message on a failed channel it replaces")
    address: str | None = Field(None, description="write tokens only")
    last_error: str | None = Field(None, description="write tokens only")


class NotificationPage(Schema):
    items: list[NotificationOut]
    next: str | None


class NotificationQuery(PageQuery):
    case_id: int | None = None
    recipient: str | None = Field(None, description="client or staff")
    channel: str | None = Field(None, description="whatsapp, sms, email, in_app or webhook")
    status: str | None = Field(None, description="pending, held, sent, delivered, read, failed…")
    kind: str | None = Field(None, description="status_change, digest, escalation…")
    since: datetime | None = Field(None, description="only those created at or after")


# Each enumerated filter: its model field and the values it takes.
CHOICES: dict[str, tuple[str, tuple[str, ...]]] = {
    "recipient": ("recipient_kind", tuple(RecipientKind.values)),
    "channel": ("channel", tuple(Channel.values)),
    "status": ("status", tuple(NotificationStatus.values)),
    "kind": ("kind", tuple(MessageKind.values)),
}


def notification_out(notification: Notification, token: ApiToken) -> dict[str, Any]:
    personal = may_see_clients(token)
    case = notification.case
    return {
        "id": notification.pk,
        "case_id": notification.case_id,
        "receipt_number": case.receipt_number if case is not None else None,
        "event_id": notification.event_id,
        "kind": notification.kind,
        "recipient_kind": notification.recipient_kind,
        "client_id": notification.client_id,
        "user_id": notification.user_id,
        "channel": notification.channel,
        "language": notification.language,
        "urgency": notification.urgency,
        "status": notification.status,
        "attempts": notification.attempts,
        "created_at": notification.created_at,
        "sent_at": notification.sent_at,
        "delivered_at": notification.delivered_at,
        "read_at": notification.read_at,
        "failed_at": notification.failed_at,
        "next_attempt_at": notification.next_attempt_at,
        "fallback_of": notification.fallback_of_id,
        "address": notification.address if personal else None,
        "last_error": notification.last_error if personal else None,
    }


@router.get(
    "/notifications",
    response={200: NotificationPage, **ERRORS, 400: ProblemOut},
    url_name="api-notifications",
)
def list_notifications(request: HttpRequest, query: Query[NotificationQuery]) -> dict[str, Any]:
    """The firm's messages, oldest first: a case's, a channel's, the failed ones, …"""
    token = token_of(request)
    errors = [
        {"field": name, "in": "query", "message": f"one of: {', '.join(allowed)}"}
        for name, (_field, allowed) in CHOICES.items()
        if getattr(query, name) not in (None, "", *allowed)
    ]
    if errors:
        raise Problem(422, "Some filters have values casewatch does not know.", errors=errors)
    rows = Notification.objects.filter(firm_id=token.firm_id)
    kept: dict[str, str] = {}
    for name, (field, _allowed) in CHOICES.items():
        value = getattr(query, name)
        if value:
            rows = rows.filter(**{field: value})
            kept[name] = value
    if query.case_id is not None:
        rows = rows.filter(case_id=query.case_id)
        kept["case_id"] = str(query.case_id)
    if query.since is not None:
        rows = rows.filter(created_at__gte=query.since)
        kept["since"] = query.since.isoformat()
    rows = rows.select_related("case").order_by("created_at", "pk")
    items, following = page_of(request, rows, kept, query.cursor, query.limit)
    return {"items": [notification_out(n, token) for n in items], "next": following}


@router.get(
    "/notifications/{int:notification_id}",
    response={200: NotificationOut, **WITH_404},
    url_name="api-notification",
)
def get_notification(request: HttpRequest, notification_id: int) -> dict[str, Any]:
    """One message of the firm."""
    token = token_of(request)
    found = (
        Notification.objects.select_related("case")
        .filter(firm_id=token.firm_id, pk=notification_id)
        .first()
    )
    if found is None:
        raise Http404
    return notification_out(found, token)
