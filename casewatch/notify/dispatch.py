"""The dispatcher: due notifications out to their providers, each exactly once.

`dispatch_due(now, transports=…)` is the one entry point (a Huey task calls it
every few seconds). It claims due notifications with a lease, in one statement
like the monitor's claims, so any number of dispatchers share the outbox on
PostgreSQL (SKIP LOCKED) and on SQLite (IMMEDIATE transactions serialize the
claim). For each one it re-checks, at the moment of sending, what may have
changed since routing: the client's consent (none: `suppressed`, never sent) and
quiet hours (client messages only: `held` until morning; staff alerts never
wait). Then it renders the message in the recipient's language, marks it
`sending` and COMMITS, calls the provider, and records what came of it: a
DeliveryAttempt, the notification's new state, and audit entries.

Outcomes. Accepted: `sent` with the provider's message id (in-app: `delivered`).
Transient: back to `pending` after an exponential back-off with jitter (base ×
2^(n-1), capped, at least the provider's Retry-After); after the last allowed
attempt, `failed`. Permanent: `failed`. A client message that failed for good
(the provider said the address is not reachable on this channel, or every retry
failed) falls back to the client's next consented channel in their order; with
none left the responsible staff hear in the app. An opt-out at the provider
withdraws consent; an operator problem (expired token, blocked account) is told
to the firm's admins in the app, once per error code per hour.

Crash safety, and why it never sends twice when the provider took the message:
the `sending` mark is committed before the provider is called, so a dispatcher
killed during the call leaves the notification `sending` with a claim that runs
out. Nothing else ever moves a `sending` notification back. Only once its claim
has been expired for a grace period (CASEWATCH_DISPATCH_GRACE_SECONDS, 2 minutes)
may another dispatcher take it, and it first looks for evidence that the
provider accepted it: a provider message id or a delivery receipt. Both can
arrive without the dead dispatcher's help, because every send carries the
notification's idempotency key where the provider echoes it (WhatsApp's
`biz_opaque_callback_data`, the `key` in Twilio's StatusCallback URL), and
notify.receipts ties such a callback to its notification. With evidence, the
notification is adopted as sent and not sent again; without any after the grace
period, the provider most likely never took it and it is sent again. E-mail has
no callbacks: a resend carries the same Message-ID (made from the key), so mail
programs show it once. The same evidence is looked for before each retry after a
timeout, when the provider may have taken a message whose answer was lost.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import random
import secrets
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings as django_settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Q
from django.db.models.expressions import Combinable

from casewatch import config
from casewatch.audit.chain import record
from casewatch.notify.channels.base import Outgoing, Rendered, SendResult, Transport
from casewatch.notify.channels.errors import rule_for, scrub
from casewatch.notify.consent import has_consent, record_consent
from casewatch.notify.messages import Audience, MessagesError, render, whatsapp_language
from casewatch.notify.models import (
    CLIENT_CHANNELS,
    AttemptOutcome,
    Channel,
    DeliveryAttempt,
    DeliveryReceipt,
    InboundMessage,
    MessageKind,
    MessagingPolicy,
    Notification,
    NotificationStatus,
    RecipientKind,
    StaffContact,
    WebhookEndpoint,
)
from casewatch.notify.quiet_hours import held_until, pick_zone
from casewatch.notify.receipts import replay_receipts, status_callback_url
from casewatch.notify.route import (
    Source,
    StaffMember,
    client_address,
    client_plan,
    draft,
    load_firm,
)
from casewatch.notify.rules import RESPONSIBLE_ATTORNEY, RESPONSIBLE_PARALEGAL
from casewatch.notify.unsubscribe import unsubscribe_headers

log = logging.getLogger(__name__)

WORKER = f"{socket.gethostname()}:{os.getpid()}"
ACTOR = "dispatcher"
# WhatsApp allows free text for 24 hours after the client last wrote in.
WHATSAPP_WINDOW = timedelta(hours=24)
# An operator problem (same firm, channel and error code) is told at most this often.
ALERT_EVERY = timedelta(hours=1)
# A webhook endpoint is turned off after this many deliveries in a row failed for good.
WEBHOOK_DISABLE_AFTER = 5
# … or when every delivery has failed for this long (an endpoint that gets few events).
WEBHOOK_DISABLE_AFTER_TIME = timedelta(hours=24)
# How much of a provider's answer an attempt keeps.
RESPONSE_LIMIT = 500

_S = NotificationStatus


@dataclass
class DispatchReport:
    """What one run of the dispatcher did, by outcome."""

    claimed: int = 0
    sent: int = 0
    delivered: int = 0
    retrying: int = 0
    failed: int = 0
    suppressed: int = 0
    held: int = 0
    adopted: int = 0
    fallbacks: int = 0
    # Claims lost to another dispatcher before sending (this one was too slow).
    lost: int = 0

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


@dataclass
class _Run:
    """One call of dispatch_due: its claim, clock and settings."""

    now: datetime
    claim_id: str
    transports: Mapping[str, Transport]
    settings: config.DispatchSettings
    report: DispatchReport
    started: float = dataclasses.field(default_factory=time.monotonic)

    def moment(self) -> datetime:
        """`now` moved on by the real time this run has taken."""
        return self.now + timedelta(seconds=time.monotonic() - self.started)

    @property
    def lease(self) -> timedelta:
        return timedelta(seconds=self.settings.lease_seconds)


# --- claiming ------------------------------------------------------------------------


def due(now: datetime, grace: timedelta) -> Q:
    """What may be dispatched at `now`.

    Pending once its back-off is over, held once quiet hours end, and sending when
    its dispatcher's claim ran out more than `grace` ago (it died mid-send).
    """
    unclaimed = Q(claimed_until__isnull=True) | Q(claimed_until__lte=now)
    came = Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)
    abandoned = Q(claimed_until__isnull=True) | Q(claimed_until__lte=now - grace)
    return (
        (Q(status=_S.PENDING) & came & unclaimed)
        | (Q(status=_S.HELD) & came & unclaimed)
        | (Q(status=_S.SENDING) & abandoned)
    )


def claim(
    now: datetime, limit: int, *, claim_id: str, lease: timedelta, grace: timedelta
) -> list[Notification]:
    """Take up to `limit` due notifications, oldest due first, until `now + lease`."""
    if limit <= 0:
        return []
    until = now + lease
    with transaction.atomic():
        line = (
            Notification.objects.filter(due(now, grace))
            .order_by(F("next_attempt_at").asc(nulls_first=True), "pk")
            .values_list("pk", flat=True)[:limit]
        )
        if connection.features.has_select_for_update_skip_locked:
            ids = list(line.select_for_update(skip_locked=True, of=("self",)))
        else:
            ids = list(line)  # SQLite: IMMEDIATE transactions already serialize writers
        Notification.objects.filter(pk__in=ids).update(claimed_until=until, claimed_by=claim_id)
    return list(
        Notification.objects.filter(pk__in=ids, claimed_by=claim_id, claimed_until=until)
        .select_related("firm", "client", "case", "user")
        .order_by(F("next_attempt_at").asc(nulls_first=True), "pk")
    )


def dispatch_due(
    now: datetime,
    *,
    transports: Mapping[str, Transport],
    limit: int = 100,
    worker: str = WORKER,
) -> DispatchReport:
    """Claim what is due and dispatch it, one notification at a time; see the module doc."""
    settings = config.dispatch_settings()
    # Each run's claim is its own, even for threads of one worker process.
    claim_id = f"{worker[:50]}:{secrets.token_hex(4)}"
    run = _Run(
        now=now,
        claim_id=claim_id,
        transports=transports,
        settings=settings,
        report=DispatchReport(),
    )
    claimed = claim(
        now,
        limit,
        claim_id=claim_id,
        lease=run.lease,
        grace=timedelta(seconds=settings.grace_seconds),
    )
    run.report.claimed = len(claimed)
    for notification in claimed:
        try:
            _dispatch_one(notification, run)
        except Exception:
            # One notification's bug must not hold up the others; its claim runs out and
            # it is tried again then (a `sending` one only after the grace period).
            log.exception("notification %s could not be dispatched", notification.pk)
    return run.report


# --- one notification ----------------------------------------------------------------


def _dispatch_one(notification: Notification, run: _Run) -> None:
    now = run.moment()
    retried = notification.status == _S.SENDING or notification.attempts > 0
    if retried and _adopt(notification, run, now):
        return
    is_client = notification.recipient_kind == RecipientKind.CLIENT
    if is_client and not _may_message_client(notification, run, now):
        return
    if notification.channel == Channel.IN_APP:
        rendered = Rendered(subject="", text="")  # the app shows the row itself
    else:
        written = _render(notification, run, now)
        if written is None:
            return
        rendered = written
    outgoing = _outgoing(notification, rendered, run, now)
    if outgoing is None:
        return
    transport = run.transports.get(notification.channel)
    if transport is None:
        _fail_before_sending(
            notification, run, now, f"no adapter for the {notification.channel} channel"
        )
        return
    if not _mark_sending(notification, run):
        run.report.lost += 1
        return
    started_at = run.moment()
    began = time.monotonic()
    try:
        result = transport.send(outgoing)
    except Exception as exc:  # an adapter's bug: the provider may or may not have it
        log.exception(
            "the %s adapter failed on notification %s", notification.channel, notification.pk
        )
        result = SendResult(
            outcome="transient", error_code="adapter_error", detail=type(exc).__name__
        )
    duration_ms = round((time.monotonic() - began) * 1000)
    _record(notification, result, started_at, duration_ms, run)


def _release(**changes: Any) -> dict[str, Any]:
    return {"claimed_until": None, "claimed_by": "", **changes}


def _audit(notification: Notification, action: str, at: datetime, **details: Any) -> None:
    record(
        f"notification.{action}",
        actor=ACTOR,
        object_type="notification",
        object_id=notification.pk,
        firm_id=notification.firm_id,
        details={"channel": notification.channel, **details},
        at=at,
    )


def _update(notification: Notification, run: _Run, **changes: Any) -> bool:
    """Apply `changes` if this run still holds the claim; the row in memory follows."""
    rows = Notification.objects.filter(pk=notification.pk, claimed_by=run.claim_id).update(
        **changes
    )
    if rows:
        for name, value in changes.items():
            if not isinstance(value, Combinable):
                setattr(notification, name, value)
    return bool(rows)


# --- what may have changed since routing ---------------------------------------------


def provider_evidence(notification: Notification) -> tuple[str, str] | None:
    """(provider message id, how we know) when the provider took this notification already."""
    if notification.provider_message_id:
        return notification.provider_message_id, "provider_id"
    receipt = (
        DeliveryReceipt.objects.filter(notification=notification)
        .order_by("received_at", "pk")
        .values_list("provider_message_id", "status")
        .first()
    )
    if receipt is not None:
        return receipt[0], f"receipt:{receipt[1]}"
    return None


def _adopt(notification: Notification, run: _Run, now: datetime) -> bool:
    """Adopt a send the provider accepted while no dispatcher recorded it; True if so."""
    evidence = provider_evidence(notification)
    if evidence is None:
        if notification.status == _S.SENDING:
            with transaction.atomic():
                _audit(notification, "resend_after_crash", now, attempts=notification.attempts)
        return False
    provider_id, source = evidence
    with transaction.atomic():
        if not _update(
            notification,
            run,
            **_release(
                status=_S.SENT,
                provider_message_id=provider_id,
                sent_at=notification.sent_at or now,
                last_error="",
            ),
        ):
            run.report.lost += 1
            return True
        _audit(notification, "adopted", now, evidence=source, provider_message_id=provider_id)
    replay_receipts(notification, now)
    run.report.adopted += 1
    return True


def _may_message_client(notification: Notification, run: _Run, now: datetime) -> bool:
    """Consent and quiet hours, as they stand now; False when the message must not go yet."""
    client = notification.client
    if (
        client is None
        or notification.channel not in CLIENT_CHANNELS
        or not has_consent(client, notification.channel)
    ):
        reason = f"no consent on {notification.channel} when it was due to be sent"
        with transaction.atomic():
            if _update(notification, run, **_release(status=_S.SUPPRESSED, last_error=reason)):
                _audit(notification, "suppressed", now, reason="no_consent")
                run.report.suppressed += 1
                # The client may still hear on a channel they do consent to; staff are not
                # alerted for a choice the client made.
                if client is not None and fall_back(notification, reason, now, tell_staff=False):
                    run.report.fallbacks += 1
        return False
    policy = MessagingPolicy.objects.filter(firm_id=notification.firm_id).first()
    wait = held_until(now, pick_zone(client.time_zone, notification.firm.time_zone), policy)
    if wait is None:
        return True
    with transaction.atomic():
        if _update(notification, run, **_release(status=_S.HELD, next_attempt_at=wait)):
            _audit(notification, "held", now, until=wait.isoformat())
            run.report.held += 1
    return False


def _render(notification: Notification, run: _Run, now: datetime) -> Rendered | None:
    audience: Audience = (
        "client" if notification.recipient_kind == RecipientKind.CLIENT else "staff"
    )
    try:
        rendered = render(notification.message, notification.language, audience=audience)
        if notification.channel == Channel.WHATSAPP and rendered.template:
            rendered = dataclasses.replace(
                rendered,
                template_language=rendered.template_language
                or whatsapp_language(notification.language),
            )
    except (MessagesError, ValueError, KeyError) as exc:
        _fail_before_sending(notification, run, now, f"the message cannot be written: {exc}")
        return None
    return rendered


def _address(notification: Notification) -> str:
    """Where the notification goes: as routed, else what the recipient has on file now."""
    if notification.address:
        return str(notification.address)
    if notification.recipient_kind == RecipientKind.CLIENT and notification.client is not None:
        return client_address(notification.client, notification.channel)
    if notification.user is not None:
        if notification.channel == Channel.EMAIL:
            return str(notification.user.email or "")
        if notification.channel == Channel.SMS:
            contact = StaffContact.objects.filter(
                membership__firm_id=notification.firm_id, membership__user=notification.user
            ).first()
            return str(contact.phone) if contact is not None else ""
    return ""


def _outgoing(
    notification: Notification, rendered: Rendered, run: _Run, now: datetime
) -> Outgoing | None:
    """The message ready for its adapter, or None (and failed) when it cannot be sent."""
    channel = notification.channel
    address = _address(notification)
    if not address and channel != Channel.IN_APP:
        _fail_before_sending(
            notification, run, now, f"no {channel} address on file", fall_back_too=True
        )
        return None
    key = notification.idempotency_key
    fields: dict[str, Any] = {}
    if channel == Channel.SMS:
        fields["status_callback_url"] = status_callback_url(key, config.callback_base_url())
    elif channel == Channel.WHATSAPP and notification.client_id is not None:
        fields["free_text_allowed"] = InboundMessage.objects.filter(
            client_id=notification.client_id,
            channel=Channel.WHATSAPP,
            received_at__gt=now - WHATSAPP_WINDOW,
        ).exists()
    elif channel == Channel.EMAIL and notification.client_id is not None:
        sender = str(getattr(django_settings, "DEFAULT_FROM_EMAIL", ""))
        fields["extra_headers"] = unsubscribe_headers(
            config.public_url(), notification.client_id, Channel.EMAIL, sender
        )
    elif channel == Channel.WEBHOOK:
        endpoint = _endpoint(notification)
        if endpoint is None:
            _fail_before_sending(
                notification, run, now, "the webhook endpoint was removed or turned off"
            )
            return None
        fields.update(
            event_type=notification.kind,
            payload=webhook_payload(notification, rendered),
            signing_secret=endpoint.secret,
        )
    return Outgoing(
        notification_id=notification.pk,
        idempotency_key=key,
        address=address,
        language=notification.language,
        rendered=rendered,
        **fields,
    )


def _endpoint(notification: Notification) -> WebhookEndpoint | None:
    """The active endpoint a webhook notification goes to (by its link; else by its URL)."""
    endpoints = WebhookEndpoint.objects.filter(firm_id=notification.firm_id, active=True)
    if notification.endpoint_id is not None:
        return endpoints.filter(pk=notification.endpoint_id).first()
    return endpoints.filter(url=notification.address).order_by("pk").first()


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment else None


def webhook_payload(notification: Notification, rendered: Rendered) -> dict[str, Any]:
    """The JSON a firm's endpoint receives: the event, the case, and the staff text."""
    case = notification.case
    return {
        "id": notification.idempotency_key,
        "event": notification.kind,
        "created_at": _iso(notification.created_at),
        "firm": notification.firm.slug,
        "urgency": notification.urgency or None,
        "case": {
            "receipt_number": case.receipt_number,
            "form_type": case.form_type,
            "status": case.status,
            "category": case.category,
            "urgency": case.urgency,
        }
        if case is not None
        else None,
        "data": dict((notification.message or {}).get("params") or {}),
        "language": notification.language,
        "subject": rendered.subject,
        "text": rendered.text,
    }


# --- sending and recording -----------------------------------------------------------


def _mark_sending(notification: Notification, run: _Run) -> bool:
    """Commit `sending` (and this attempt's count) before the provider is called.

    The claim is renewed from this moment, so a slow batch never sends on a claim
    that already ran out; False when another dispatcher has taken the notification.
    """
    until = run.moment() + run.lease
    with transaction.atomic():
        ok = _update(
            notification,
            run,
            status=_S.SENDING,
            claimed_until=until,
            attempts=F("attempts") + 1,
        )
    if ok:
        notification.attempts += 1
    return ok


def backoff(
    attempt: int,
    settings: config.DispatchSettings,
    retry_after: float | None = None,
    rng: random.Random | None = None,
) -> timedelta:
    """How long to wait after the `attempt`-th transient failure.

    base × 2^(attempt-1), capped, times a jitter of ±20 % so that messages refused
    together do not come back together; never less than the provider's Retry-After.
    """
    exponent = min(max(attempt - 1, 0), 30)
    delay = min(settings.backoff_cap_seconds, settings.backoff_base_seconds * 2**exponent)
    delay *= 0.8 + 0.4 * (rng or random).random()
    if retry_after is not None:
        delay = max(delay, retry_after)
    return timedelta(seconds=delay)


def _record(
    notification: Notification,
    result: SendResult,
    started_at: datetime,
    duration_ms: int,
    run: _Run,
) -> None:
    now = run.moment()
    report = run.report
    detail = scrub(result.detail, notification.address)
    with transaction.atomic():
        current = Notification.objects.select_for_update().get(pk=notification.pk)
        exhausted = result.outcome == "transient" and current.attempts >= run.settings.max_attempts
        failed = result.outcome == "permanent" or exhausted
        DeliveryAttempt.objects.create(
            notification=current,
            started_at=started_at,
            duration_ms=duration_ms,
            outcome=AttemptOutcome(result.outcome),
            provider_message_id=result.provider_message_id[:128],
            http_status=result.http_status,
            error_code=result.error_code[:32],
            response=detail[:RESPONSE_LIMIT],
        )
        _audit(
            current,
            "attempt",
            now,
            attempt=current.attempts,
            outcome=result.outcome,
            error_code=result.error_code,
            http_status=result.http_status,
            duration_ms=duration_ms,
        )
        # A receipt may have moved the notification on while the call was under way:
        # what the provider said since is newer than this answer, and stays.
        ours = current.status == _S.SENDING
        changes: dict[str, Any] = {}
        if current.claimed_by == run.claim_id:
            changes.update(claimed_until=None, claimed_by="")
        if result.outcome == "sent":
            if result.provider_message_id and not current.provider_message_id:
                changes["provider_message_id"] = result.provider_message_id[:128]
            if current.sent_at is None:
                changes["sent_at"] = now
            if ours:
                changes["status"] = _S.DELIVERED if result.delivered else _S.SENT
                changes["last_error"] = ""
                if result.delivered and current.delivered_at is None:
                    changes["delivered_at"] = now
            final = "delivered" if result.delivered else "sent"
            setattr(report, final, getattr(report, final) + 1)
        elif not failed:
            if ours:
                wait = backoff(current.attempts, run.settings, result.retry_after)
                changes.update(
                    status=_S.PENDING,
                    next_attempt_at=now + wait,
                    last_error=_error_text(result, detail),
                )
            report.retrying += 1
        else:
            if ours:
                changes.update(
                    status=_S.FAILED,
                    failed_at=now,
                    last_error=_error_text(result, detail, exhausted=exhausted),
                )
            report.failed += 1
        for name, value in changes.items():
            setattr(current, name, value)
        current.save(update_fields=list(changes))
        if result.outcome == "sent" and ours:
            _audit(
                current,
                "delivered" if result.delivered else "sent",
                now,
                provider_message_id=current.provider_message_id,
            )
        elif failed and ours:
            _audit(current, "failed", now, error_code=result.error_code, exhausted=exhausted)
        _after_outcome(current, result, now, run, failed=failed, exhausted=exhausted, ours=ours)
    if result.outcome == "sent" and current.provider_message_id:
        replay_receipts(current, now)


def _error_text(result: SendResult, detail: str, *, exhausted: bool = False) -> str:
    code = f"{result.error_code}: " if result.error_code else ""
    ending = " (no attempts left)" if exhausted else ""
    return f"{code}{detail}{ending}"[:1000]


def _after_outcome(
    notification: Notification,
    result: SendResult,
    now: datetime,
    run: _Run,
    *,
    failed: bool,
    exhausted: bool,
    ours: bool,
) -> None:
    """What an outcome means beyond this notification: consent, fallback, alerts, endpoints."""
    client = notification.client
    is_client = notification.recipient_kind == RecipientKind.CLIENT and client is not None
    if result.opted_out and is_client and notification.channel in CLIENT_CHANNELS:
        assert client is not None
        if has_consent(client, notification.channel):
            record_consent(
                client,
                notification.channel,
                granted=False,
                at=now,
                actor="provider",
                method="provider",
            )
    if failed and ours and is_client and (result.fall_back or result.opted_out or exhausted):
        if fall_back(notification, notification.last_error, now) is not None:
            run.report.fallbacks += 1
    elif failed and ours and is_client:
        # Failed for a reason another channel would not fix: staff should know.
        fall_back(notification, notification.last_error, now, next_channel=False)
    if result.alert_operator:
        alert_operator(notification, result, now)
    if notification.channel == Channel.WEBHOOK:
        _note_webhook(notification, result, now, failed=failed)


def _fail_before_sending(
    notification: Notification,
    run: _Run,
    now: datetime,
    reason: str,
    *,
    fall_back_too: bool = False,
) -> None:
    """Give up on a notification that cannot be sent at all (nothing reached a provider)."""
    with transaction.atomic():
        if not _update(
            notification, run, **_release(status=_S.FAILED, failed_at=now, last_error=reason[:1000])
        ):
            run.report.lost += 1
            return
        _audit(notification, "failed", now, error_code="not_sent")
        run.report.failed += 1
        if notification.recipient_kind == RecipientKind.CLIENT and fall_back_too:
            if fall_back(notification, reason, now) is not None:
                run.report.fallbacks += 1
        elif notification.recipient_kind == RecipientKind.CLIENT:
            fall_back(notification, reason, now, next_channel=False)


def _note_webhook(
    notification: Notification, result: SendResult, now: datetime, *, failed: bool
) -> None:
    """Count an endpoint's deliveries failed for good in a row; disable it at the limit.

    A success resets the count. A 410 Gone disables at once; otherwise
    WEBHOOK_DISABLE_AFTER failed deliveries in a row do (retries do not count: a
    delivery fails for good only after its last attempt), or failures only for
    WEBHOOK_DISABLE_AFTER_TIME. The firm's admins hear.
    """
    endpoint = _endpoint(notification)
    if endpoint is None:
        return
    endpoints = WebhookEndpoint.objects.filter(pk=endpoint.pk, active=True)
    if result.outcome == "sent":
        endpoints.exclude(consecutive_failures=0).update(consecutive_failures=0)
        return
    if not failed:
        return
    endpoints.update(consecutive_failures=F("consecutive_failures") + 1)
    endpoint.refresh_from_db()
    failing_since = _failing_since(endpoint)
    if result.http_status == 410:
        reason = "410 Gone"
    elif endpoint.consecutive_failures >= WEBHOOK_DISABLE_AFTER:
        reason = f"{endpoint.consecutive_failures} deliveries in a row failed"
    elif failing_since is not None and now - failing_since >= WEBHOOK_DISABLE_AFTER_TIME:
        reason = f"every delivery failed since {failing_since.isoformat()}"
    else:
        return
    if not endpoints.update(active=False, disabled_at=now):
        return  # another dispatcher disabled it a moment ago
    record(
        "webhook.disabled",
        actor=ACTOR,
        object_type="webhook_endpoint",
        object_id=endpoint.pk,
        firm_id=endpoint.firm_id,
        details={"reason": reason},
        at=now,
    )
    alert_endpoint_disabled(endpoint, reason, now)


def _failing_since(endpoint: WebhookEndpoint) -> datetime | None:
    """When the endpoint's current run of failed deliveries began; None under two failures.

    The run is its last `consecutive_failures` failed deliveries, so a success or an
    admin turning the endpoint on again (both reset the count) starts a new one.
    """
    count = endpoint.consecutive_failures
    if count < 2:
        return None
    times = list(
        Notification.objects.filter(endpoint=endpoint, status=_S.FAILED, failed_at__isnull=False)
        .order_by("-failed_at")
        .values_list("failed_at", flat=True)[:count]
    )
    return times[-1] if len(times) == count else None


def alert_endpoint_disabled(endpoint: WebhookEndpoint, reason: str, now: datetime) -> bool:
    """Tell the firm's admins in the app that casewatch turned off one of their endpoints."""
    admins = load_firm(endpoint.firm_id).resolve(("admin",))
    source = Source(
        name=f"webhook_disabled:{endpoint.pk}:{now.isoformat()}",
        pk=endpoint.pk,
        kind=MessageKind.DELIVERY_PROBLEM,
        firm_id=endpoint.firm_id,
    )
    host = urlsplit(endpoint.url).hostname or "?"
    params = {
        "receipt": "",
        "channel": Channel.WEBHOOK,
        "error": f"the webhook endpoint at {host} was turned off: {reason}",
        "error_code": "endpoint_disabled",
        "operator": True,
        "endpoint": endpoint.pk,
    }
    made = _in_app(source, admins, params, now)
    for note in made:
        _audit(note, "delivered", now, about=endpoint.pk, reason="webhook_disabled")
    return bool(made)


# --- fallback and alerts -------------------------------------------------------------


def fallback_key(original: Notification, channel: str) -> str:
    """The fallback's idempotency key: derived from the original's, one per channel."""
    return hashlib.sha256(f"{original.idempotency_key}:fallback:{channel}".encode()).hexdigest()


def _chain(notification: Notification) -> list[Notification]:
    """The notification and the ones it replaced, back to the one the router made."""
    chain = [notification]
    seen = {notification.pk}
    current = notification
    while current.fallback_of_id is not None and current.fallback_of_id not in seen:
        previous = Notification.objects.filter(pk=current.fallback_of_id).first()
        if previous is None:
            break
        chain.append(previous)
        seen.add(previous.pk)
        current = previous
    return chain


def _channels_tried(notification: Notification) -> set[str]:
    """Channels this message already went (or was meant to go) to the client on."""
    chain = _chain(notification)
    tried = {n.channel for n in chain}
    root = chain[-1]
    siblings = Notification.objects.filter(
        client=notification.client, recipient_kind=RecipientKind.CLIENT, kind=root.kind
    )
    if root.event_id is not None:
        tried |= set(siblings.filter(event_id=root.event_id).values_list("channel", flat=True))
    elif root.operational_event_id is not None:
        tried |= set(
            siblings.filter(operational_event_id=root.operational_event_id).values_list(
                "channel", flat=True
            )
        )
    return tried


def fall_back(
    notification: Notification,
    reason: str,
    now: datetime,
    *,
    tell_staff: bool = True,
    next_channel: bool = True,
) -> Notification | None:
    """Create the client's message on their next consented channel, once; None if none is left.

    The next channel is the first in the client's order (ContactPlan; default
    WhatsApp, SMS, e-mail) that this message has not been tried on, that the client
    consents to and has an address for. Calling it again for the same notification
    gives the same fallback. With no channel left, the responsible staff hear in
    the app that the client could not be told (unless `tell_staff` is False).
    """
    if notification.recipient_kind != RecipientKind.CLIENT or notification.client is None:
        return None
    with transaction.atomic():
        existing = Notification.objects.filter(fallback_of=notification).order_by("pk").first()
        if existing is not None:
            return existing
        client = notification.client
        tried = _channels_tried(notification)
        for channel in client_plan(client) if next_channel else []:
            if channel in tried or not client_address(client, channel):
                continue
            if not has_consent(client, channel):
                continue
            key = fallback_key(notification, channel)
            found = Notification.objects.filter(idempotency_key=key).first()
            if found is not None:
                return found
            try:
                with transaction.atomic():
                    created = Notification.objects.create(
                        firm_id=notification.firm_id,
                        case_id=notification.case_id,
                        event_id=notification.event_id,
                        operational_event_id=notification.operational_event_id,
                        kind=notification.kind,
                        recipient_kind=RecipientKind.CLIENT,
                        client=client,
                        channel=channel,
                        address=client_address(client, channel),
                        language=notification.language,
                        message=notification.message,
                        urgency=notification.urgency,
                        status=_S.PENDING,
                        idempotency_key=key,
                        next_attempt_at=now,
                        fallback_of=notification,
                        created_at=now,
                    )
            except IntegrityError:  # another dispatcher made it a moment ago
                return Notification.objects.filter(idempotency_key=key).first()
            _audit(
                created,
                "fallback",
                now,
                replaces=notification.pk,
                from_channel=notification.channel,
            )
            return created
        if tell_staff:
            _tell_staff(notification, reason, now)
    return None


def _in_app(
    source: Source,
    people: list[StaffMember],
    params: dict[str, Any],
    now: datetime,
) -> list[Notification]:
    """In-app notifications (delivered as stored) for each person, once per idempotency key."""
    made = []
    for member in people:
        note = draft(
            source,
            recipient=member.recipient,
            recipient_kind=RecipientKind.STAFF,
            channel=Channel.IN_APP,
            address="",
            language=member.language,
            params=params,
            now=now,
            user_id=member.user_id,
        )
        note.sent_at = now
        if Notification.objects.filter(idempotency_key=note.idempotency_key).exists():
            continue
        try:
            with transaction.atomic():
                note.save()
        except IntegrityError:
            continue
        made.append(note)
    return made


def _tell_staff(notification: Notification, reason: str, now: datetime) -> list[Notification]:
    """The case's attorney and paralegal (else the admins) hear that a message did not arrive."""
    case = notification.case
    ctx = load_firm(notification.firm_id)
    people = ctx.resolve((RESPONSIBLE_ATTORNEY, RESPONSIBLE_PARALEGAL), case)
    # A staff member's own undelivered alert goes to them in the app, not to others.
    if notification.recipient_kind == RecipientKind.STAFF and notification.user_id is not None:
        people = [m for m in ctx.members if m.user_id == notification.user_id] or people
    source = Source(
        name="delivery_problem",
        pk=notification.pk,
        kind=MessageKind.DELIVERY_PROBLEM,
        firm_id=notification.firm_id,
        case=case,
        event=notification.event,
        operational_event=notification.operational_event,
        urgency=notification.urgency,
    )
    params = {
        "receipt": (case.receipt_number or "") if case is not None else "",
        "channel": notification.channel,
        "error": scrub(reason, notification.address)[:300],
        "recipient_kind": notification.recipient_kind,
        "notification": notification.pk,
    }
    made = _in_app(source, people, params, now)
    for note in made:
        _audit(note, "delivered", now, about=notification.pk, reason="delivery_problem")
    return made


def alert_operator(notification: Notification, result: SendResult, now: datetime) -> bool:
    """Tell the firm's admins in the app that the operator must act; once per code per hour."""
    code = result.error_code or "unknown"
    recent = Notification.objects.filter(
        firm_id=notification.firm_id,
        kind=MessageKind.DELIVERY_PROBLEM,
        channel=Channel.IN_APP,
        created_at__gt=now - ALERT_EVERY,
        message__params__error_code=code,
        message__params__channel=notification.channel,
    )
    if recent.exists():
        return False
    ctx = load_firm(notification.firm_id)
    admins = ctx.resolve(("admin",))
    hour = now.replace(minute=0, second=0, microsecond=0).isoformat()
    meaning = rule_for(notification.channel, code, result.http_status).meaning
    source = Source(
        name=f"operator_alert:{notification.channel}:{code}:{hour}",
        pk=notification.firm_id,
        kind=MessageKind.DELIVERY_PROBLEM,
        firm_id=notification.firm_id,
    )
    params = {
        "receipt": "",
        "channel": notification.channel,
        "error": f"{code}: {meaning}" if meaning else code,
        "error_code": code,
        "operator": True,
    }
    made = _in_app(source, admins, params, now)
    for note in made:
        _audit(note, "delivered", now, about=notification.pk, reason="operator_alert")
    return bool(made)


__all__ = [
    "WEBHOOK_DISABLE_AFTER",
    "WEBHOOK_DISABLE_AFTER_TIME",
    "WORKER",
    "DispatchReport",
    "alert_endpoint_disabled",
    "alert_operator",
    "backoff",
    "claim",
    "dispatch_due",
    "due",
    "fall_back",
    "fallback_key",
    "provider_evidence",
    "webhook_payload",
]
