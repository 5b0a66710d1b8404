"""Delivery receipts: a provider's word on a sent message, kept once, applied only forwards.

Providers report late, out of order and more than once (Meta retries for days).
So each receipt is stored once per (channel, provider message id, status) and a
repeat is a no-op; a notification only ever moves forward (models.PROGRESS), and
a receipt older than the last one applied changes nothing. A receipt that comes
before its notification is known to have that provider id is kept unattached:
the idempotency key it carries (WhatsApp's biz_opaque_callback_data, a Twilio
StatusCallback's query) lets it adopt the provider id of a dispatcher that died
after the provider accepted, and `replay_receipts` applies what waited once the
dispatcher records the id itself. A failure reported this way is handled as the
dispatcher handles one at send time: the client's next channel, consent, alerts.
"""

from __future__ import annotations

import logging
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from importlib import resources
from typing import Literal
from urllib.parse import urlencode

from django.db import IntegrityError, transaction
from django.utils import timezone

from casewatch import config
from casewatch.audit.chain import record
from casewatch.notify.channels.errors import refusal
from casewatch.notify.consent import has_consent, record_consent
from casewatch.notify.models import (
    CLIENT_CHANNELS,
    PROGRESS,
    DeliveryReceipt,
    Notification,
    NotificationStatus,
    RecipientKind,
)

log = logging.getLogger(__name__)

# The query parameter of a Twilio StatusCallback URL that carries the notification's
# idempotency key, so that its receipts find it even before its SID is recorded.
CALLBACK_KEY_PARAM = "key"
TWILIO_WEBHOOK_PATH = "/webhooks/twilio"

Result = Literal["applied", "stale", "duplicate", "unmatched", "ignored"]


@dataclass(frozen=True)
class ReceiptResult:
    """What became of one receipt: applied, stale (nothing moved), duplicate, unmatched…"""

    result: Result
    notification_id: int | None = None


@cache
def status_map() -> Mapping[str, Mapping[str, str]]:
    """{channel: {provider status: notification status}}, from data/receipts.toml."""
    source = resources.files("casewatch.notify").joinpath("data", "receipts.toml")
    data: dict[str, dict[str, str]] = tomllib.loads(source.read_text(encoding="utf-8"))
    for channel, table in data.items():
        for provider_status, status in table.items():
            if status not in NotificationStatus.values:
                raise ValueError(
                    f"data/receipts.toml: [{channel}] {provider_status} = {status!r} "
                    "is not a notification status"
                )
    return data


def status_callback_url(idempotency_key: str, base_url: str | None = None) -> str:
    """The StatusCallback to give Twilio for one notification ("" when no address is known).

    `base_url` defaults to CASEWATCH_PUBLIC_URL, the address Twilio can reach.
    """
    base = base_url or config.public_url()
    if not base:
        return ""
    query = urlencode({CALLBACK_KEY_PARAM: idempotency_key})
    return f"{base.rstrip('/')}{TWILIO_WEBHOOK_PATH}?{query}"


def apply_receipt(
    channel: str,
    provider_message_id: str,
    status: str,
    provider_timestamp: datetime | None,
    error_code: str = "",
    idempotency_key: str = "",
    *,
    now: datetime | None = None,
) -> ReceiptResult:
    """Store one delivery receipt once and move its notification forward if it is news.

    `provider_timestamp` is when the provider says it happened (None: now, as for
    Twilio, whose callbacks carry no time). A `failed` receipt for a client message
    hands it to the dispatcher's fallback (the client's next channel).
    """
    provider_status = status.strip().lower()
    mapped = status_map().get(channel, {}).get(provider_status)
    if mapped is None or not provider_message_id:
        return ReceiptResult("ignored")
    now = now or timezone.now()
    at = provider_timestamp or now
    with transaction.atomic():
        notification = _find(channel, provider_message_id, idempotency_key)
        existing = DeliveryReceipt.objects.filter(
            channel=channel, provider_message_id=provider_message_id, status=provider_status
        ).first()
        if existing is not None:
            if existing.notification_id is not None or notification is None:
                return ReceiptResult("duplicate", existing.notification_id)
            # Kept before its notification was known; now it is: attach it and apply it.
            existing.notification = notification
            existing.save(update_fields=["notification"])
        else:
            try:
                with transaction.atomic():
                    DeliveryReceipt.objects.create(
                        notification=notification,
                        channel=channel,
                        provider_message_id=provider_message_id,
                        status=provider_status,
                        provider_timestamp=provider_timestamp,
                        received_at=now,
                        error_code=error_code,
                    )
            except IntegrityError:  # the same receipt, at the same moment, in another thread
                return ReceiptResult("duplicate")
        if notification is None:
            return ReceiptResult("unmatched")
        applied = _advance(notification, mapped, at, channel, error_code, provider_status, now)
    return ReceiptResult("applied" if applied else "stale", notification.pk)


def replay_receipts(notification: Notification, now: datetime | None = None) -> int:
    """Apply receipts that came before the notification's provider id was recorded.

    The dispatcher calls this right after it stores a provider message id, so a
    callback that beat it there is not lost. Returns how many moved it forward.
    """
    if not notification.provider_message_id:
        return 0
    now = now or timezone.now()
    moved = 0
    with transaction.atomic():
        locked = Notification.objects.select_for_update().filter(pk=notification.pk).first()
        if locked is None:
            return 0
        waiting = list(
            DeliveryReceipt.objects.filter(
                channel=locked.channel,
                provider_message_id=locked.provider_message_id,
                notification__isnull=True,
            ).order_by("provider_timestamp", "received_at", "pk")
        )
        for receipt in waiting:
            receipt.notification = locked
            receipt.save(update_fields=["notification"])
            mapped = status_map().get(receipt.channel, {}).get(receipt.status)
            if mapped is None:
                continue
            at = receipt.provider_timestamp or receipt.received_at
            moved += _advance(
                locked, mapped, at, receipt.channel, receipt.error_code, receipt.status, now
            )
    if moved:
        notification.refresh_from_db()
    return moved


def _find(channel: str, provider_message_id: str, idempotency_key: str) -> Notification | None:
    """The notification a receipt is about, locked; adopting the provider id if need be."""
    found = (
        Notification.objects.select_for_update()
        .filter(channel=channel, provider_message_id=provider_message_id)
        .first()
    )
    if found is not None or not idempotency_key:
        return found
    adopted = (
        Notification.objects.select_for_update()
        .filter(channel=channel, idempotency_key=idempotency_key)
        .first()
    )
    if adopted is None:
        return None
    if adopted.provider_message_id:
        # The key names a message sent under another provider id: not this one.
        log.warning(
            "a %s receipt names notification %s, which has another provider id", channel, adopted.pk
        )
        return None
    adopted.provider_message_id = provider_message_id
    adopted.save(update_fields=["provider_message_id"])
    record(
        "notification.provider_id_adopted",
        actor=f"provider:{channel}",
        object_type="notification",
        object_id=adopted.pk,
        firm_id=adopted.firm_id,
        details={"channel": channel},
    )
    return adopted


def _advance(
    notification: Notification,
    status: str,
    at: datetime,
    channel: str,
    error_code: str,
    provider_status: str,
    now: datetime,
) -> bool:
    """Move the notification to `status` if that is forward and not older; True if it moved.

    `failed` may follow `sent` (a message accepted and then not delivered), but never
    `delivered` or `read`: what arrived stays arrived.
    """
    current = notification.status
    if notification.status_at is not None and at < notification.status_at:
        return False
    if status == NotificationStatus.FAILED:
        if current in (
            NotificationStatus.DELIVERED,
            NotificationStatus.READ,
            NotificationStatus.FAILED,
        ):
            return False
    elif PROGRESS[NotificationStatus(status)] <= PROGRESS[NotificationStatus(current)]:
        return False
    notification.status = status
    notification.status_at = at
    fields = ["status", "status_at"]
    # Read implies delivered, delivered implies sent: fill in what was skipped.
    reached = {
        "sent_at": PROGRESS[NotificationStatus(status)] >= PROGRESS[NotificationStatus.SENT],
        "delivered_at": status in (NotificationStatus.DELIVERED, NotificationStatus.READ),
        "read_at": status == NotificationStatus.READ,
    }
    for field, due in reached.items():
        if due and status != NotificationStatus.FAILED and getattr(notification, field) is None:
            setattr(notification, field, at)
            fields.append(field)
    if status == NotificationStatus.FAILED:
        detail = f" (error {error_code})" if error_code else ""
        notification.failed_at = at
        notification.last_error = f"{channel} reported {provider_status}{detail}"
        fields += ["failed_at", "last_error"]
    notification.save(update_fields=fields)
    record(
        "notification.receipt",
        actor=f"provider:{channel}",
        object_type="notification",
        object_id=notification.pk,
        firm_id=notification.firm_id,
        details={
            "status": status,
            "provider_status": provider_status,
            "error_code": error_code,
            "from": current,
        },
        at=now,
    )
    if status == NotificationStatus.FAILED:
        after_failure(notification, channel, error_code, now)
    return True


def after_failure(notification: Notification, channel: str, error_code: str, now: datetime) -> None:
    """What a failure reported later means, as the dispatcher treats a refusal at send time.

    The provider has given up on the message, so a client message goes to the client's
    next consented channel (dispatch.fall_back; with none left, the staff hear). The
    error table (data/provider_errors.toml) says whether the client opted out at the
    provider (consent withdrawn) and whether the operator must act (admins alerted).
    """
    from casewatch.notify import dispatch  # it imports this module: import when needed

    result = refusal(channel, code=error_code or None, status=None, detail=notification.last_error)
    client = notification.client
    if notification.recipient_kind == RecipientKind.CLIENT and client is not None:
        if result.opted_out and channel in CLIENT_CHANNELS and has_consent(client, channel):
            record_consent(
                client, channel, granted=False, at=now, actor="provider", method="provider"
            )
        dispatch.fall_back(notification, notification.last_error, now)
    if result.alert_operator:
        dispatch.alert_operator(notification, result, now)
