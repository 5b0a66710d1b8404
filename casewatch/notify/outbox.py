"""The outbox as people and programs read it: every notification and how far it got."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from django.db.models import QuerySet

from casewatch.notify.models import Notification


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment else None


def outbox(*, firm_id: int | None = None, receipt: str | None = None) -> QuerySet[Notification]:
    """Notifications oldest first, of one firm and one case when asked."""
    rows = Notification.objects.select_related("case").order_by("created_at", "pk")
    if firm_id is not None:
        rows = rows.filter(firm_id=firm_id)
    if receipt is not None:
        rows = rows.filter(case__receipt_number=receipt)
    return rows


def outbox_entry(notification: Notification) -> dict[str, Any]:
    """One notification in the shape `casewatch outbox --json` promises (cli.md)."""
    case = notification.case
    return {
        "id": notification.pk,
        "case": (case.receipt_number if case is not None else None),
        "recipient_kind": notification.recipient_kind,
        "channel": notification.channel,
        "language": notification.language,
        "status": notification.status,
        "provider_message_id": notification.provider_message_id or None,
        "attempts": notification.attempts,
        "created_at": _iso(notification.created_at),
        "sent_at": _iso(notification.sent_at),
        "delivered_at": _iso(notification.delivered_at),
        "kind": notification.kind,
        "read_at": _iso(notification.read_at),
        "failed_at": _iso(notification.failed_at),
        "last_error": notification.last_error or None,
    }


def outbox_entries(
    *, firm_id: int | None = None, receipt: str | None = None
) -> Iterator[dict[str, Any]]:
    for notification in outbox(firm_id=firm_id, receipt=receipt).iterator(chunk_size=2000):
        yield outbox_entry(notification)
