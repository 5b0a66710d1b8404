"""Notifications and what they answer to: rules, consent, delivery attempts and receipts.

A Notification is one message to one recipient on one channel, created by the
router in the same transaction that marks its event routed; its idempotency key
makes a second routing of the same event a no-op. Attempts and receipts are
appended, never edited, so "when were you notified, and who told the client?"
has one answer.
"""

from __future__ import annotations

from datetime import time
from typing import Any

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from casewatch.accounts.models import Firm, Membership
from casewatch.cases.fields import EncryptedTextField
from casewatch.cases.models import Case, Client, StatusEvent
from casewatch.monitor.models import OperationalEvent


class Channel(models.TextChoices):
    WHATSAPP = "whatsapp", "WhatsApp"
    SMS = "sms", _("SMS")
    EMAIL = "email", _("E-mail")
    IN_APP = "in_app", _("In the app")
    WEBHOOK = "webhook", _("Webhook")


# Channels a client can be reached on, in the default order of preference.
CLIENT_CHANNELS = (Channel.WHATSAPP, Channel.SMS, Channel.EMAIL)
# Channels a staff member can be alerted on.
STAFF_CHANNELS = (Channel.IN_APP, Channel.EMAIL, Channel.SMS, Channel.WEBHOOK)


class RecipientKind(models.TextChoices):
    STAFF = "staff", _("Staff")
    CLIENT = "client", _("Client")


class NotificationStatus(models.TextChoices):
    PENDING = "pending", _("Waiting to be sent")
    HELD = "held", _("Held for quiet hours")
    SUPPRESSED = "suppressed", _("Not sent: no consent")
    SENDING = "sending", _("Sending")
    SENT = "sent", _("Sent")
    DELIVERED = "delivered", _("Delivered")
    READ = "read", _("Read")
    FAILED = "failed", _("Failed")


# How far along a message is; a receipt never moves a notification backwards.
PROGRESS = {
    NotificationStatus.PENDING: 0,
    NotificationStatus.HELD: 0,
    NotificationStatus.SUPPRESSED: 0,
    NotificationStatus.SENDING: 1,
    NotificationStatus.SENT: 2,
    NotificationStatus.DELIVERED: 3,
    NotificationStatus.READ: 4,
    NotificationStatus.FAILED: 5,
}


class MessageKind(models.TextChoices):
    STATUS_CHANGE = "status_change", _("Status change")
    USCIS_OUTAGE = "uscis_outage", _("USCIS unreadable")
    USCIS_RECOVERED = "uscis_recovered", _("USCIS readable again")
    RECEIPT_PENDING = "receipt_pending", _("Receipt still pending")
    ESCALATION = "escalation", _("Change not acknowledged")
    CARD_DELIVERY_CHECK = "card_delivery_check", _("Confirm the card arrived")
    DIGEST = "digest", _("Daily digest")
    CLIENT_REPLY = "client_reply", _("Client replied")
    DELIVERY_PROBLEM = "delivery_problem", _("A message could not be delivered")
    # Sent to the firm's webhook endpoints only (notify/data/webhook_events.toml).
    DEADLINE_CREATED = "deadline_created", _("Deadline created")
    NOTIFICATION_DELIVERED = "notification_delivered", _("Message delivered")
    NOTIFICATION_FAILED = "notification_failed", _("Message failed")
    # A firm admin's "send a test event" from the webhooks page.
    WEBHOOK_TEST = "webhook_test", _("Test event")


class Notification(models.Model):
    """One message to one recipient on one channel, from routing to its last receipt.

    `message` holds what to say as a message key and parameters, rendered in
    `language` when sent, so the row carries no more personal data than the
    message itself. `address` (phone, e-mail or URL) is the one it was sent to.
    """

    firm = models.ForeignKey(Firm, on_delete=models.CASCADE, related_name="notifications")
    case = models.ForeignKey(
        Case, null=True, blank=True, on_delete=models.CASCADE, related_name="notifications"
    )
    event = models.ForeignKey(
        StatusEvent, null=True, blank=True, on_delete=models.PROTECT, related_name="notifications"
    )
    operational_event = models.ForeignKey(
        OperationalEvent,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="notifications",
    )
    kind = models.CharField(max_length=32, choices=MessageKind.choices)
    recipient_kind = models.CharField(max_length=8, choices=RecipientKind.choices)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="notifications",
    )
    client = models.ForeignKey(
        Client, null=True, blank=True, on_delete=models.SET_NULL, related_name="notifications"
    )
    channel = models.CharField(max_length=10, choices=Channel.choices)
    address = EncryptedTextField(blank=True, default="")
    language = models.CharField(max_length=3, default="en")
    message = models.JSONField(default=dict, blank=True)
    urgency = models.CharField(max_length=16, blank=True)
    status = models.CharField(
        max_length=12, choices=NotificationStatus.choices, default=NotificationStatus.PENDING
    )
    idempotency_key = models.CharField(max_length=64, unique=True)
    provider_message_id = models.CharField(max_length=128, blank=True, default="")
    attempts = models.PositiveSmallIntegerField(default=0)
    # When the dispatcher may next try: now, after a back-off, or the end of quiet hours.
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    # A dispatcher's claim while it sends; an expired claim means it died mid-send.
    claimed_until = models.DateTimeField(null=True, blank=True)
    claimed_by = models.CharField(max_length=64, blank=True, default="")
    last_error = models.TextField(blank=True, default="")
    # The notification this one replaces after its channel failed for good.
    fallback_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="fallbacks"
    )
    created_at = models.DateTimeField()
    sent_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    read_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)
    # The provider's time of the latest receipt applied: older receipts change nothing.
    status_at = models.DateTimeField(null=True, blank=True)
    # The webhook endpoint a webhook notification goes to (its delivery log).
    endpoint = models.ForeignKey(
        "WebhookEndpoint",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="deliveries",
    )
    # When the router told the firm's endpoints that this message was delivered or failed:
    # an outbox mark, like routed_at on events (notify/route.py).
    outcome_routed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["status", "next_attempt_at"], name="notification_due"),
            models.Index(fields=["firm", "created_at"]),
            models.Index(fields=["case", "created_at"]),
            models.Index(fields=["user", "channel", "status"], name="notification_inbox"),
            models.Index(fields=["channel", "provider_message_id"], name="notification_provider"),
            models.Index(
                fields=["status"],
                condition=models.Q(
                    outcome_routed_at__isnull=True, channel__in=["whatsapp", "sms", "email"]
                ),
                name="notification_outcome_due",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} to {self.recipient_kind} by {self.channel} ({self.status})"


class AttemptOutcome(models.TextChoices):
    SENT = "sent", _("Accepted by the provider")
    TRANSIENT = "transient", _("Failed; will retry")
    PERMANENT = "permanent", _("Failed for good")


class DeliveryAttempt(models.Model):
    """One try at handing a notification to its provider; appended, never edited."""

    notification = models.ForeignKey(
        Notification, on_delete=models.CASCADE, related_name="delivery_attempts"
    )
    started_at = models.DateTimeField()
    duration_ms = models.PositiveIntegerField(default=0)
    outcome = models.CharField(max_length=10, choices=AttemptOutcome.choices)
    provider_message_id = models.CharField(max_length=128, blank=True, default="")
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    error_code = models.CharField(max_length=32, blank=True, default="")
    # The provider's answer, trimmed and without the recipient's address.
    response = models.TextField(blank=True, default="")

    class Meta:
        indexes = [models.Index(fields=["notification", "started_at"])]

    def __str__(self) -> str:
        return f"attempt at notification {self.notification_id}: {self.outcome}"


class DeliveryReceipt(models.Model):
    """A provider's word on a sent message (sent, delivered, read, failed), kept once."""

    notification = models.ForeignKey(
        Notification, null=True, blank=True, on_delete=models.CASCADE, related_name="receipts"
    )
    channel = models.CharField(max_length=10, choices=Channel.choices)
    provider_message_id = models.CharField(max_length=128)
    status = models.CharField(max_length=16)
    provider_timestamp = models.DateTimeField(null=True, blank=True)
    received_at = models.DateTimeField()
    error_code = models.CharField(max_length=32, blank=True, default="")

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["channel", "provider_message_id", "status"], name="one_receipt_per_status"
            )
        ]

    def __str__(self) -> str:
        return f"{self.channel} {self.status} for {self.provider_message_id}"


class ConsentRecord(models.Model):
    """One entry of a client's consent ledger for one channel; appended, never edited.

    The client's consent on a channel is the latest entry for it: given or withdrawn,
    when, how (a signed form, a call, a STOP reply), by whom, in which words and language.
    """

    firm = models.ForeignKey(Firm, on_delete=models.CASCADE, related_name="consent_records")
    client = models.ForeignKey(Client, on_delete=models.CASCADE, related_name="consent_records")
    channel = models.CharField(max_length=10, choices=Channel.choices)
    granted = models.BooleanField()
    recorded_at = models.DateTimeField()
    actor = models.CharField(max_length=64, help_text="who recorded it: user:<pk>, client, import")
    method = models.CharField(max_length=32, help_text="form, verbal, portal, reply, import")
    wording = models.TextField(blank=True, default="", help_text="the words the client agreed to")
    language = models.CharField(max_length=3, default="en")

    class Meta:
        indexes = [models.Index(fields=["client", "channel", "recorded_at"])]

    def __str__(self) -> str:
        verb = "granted" if self.granted else "withdrawn"
        return f"{self.channel} consent {verb} for client {self.client_id}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None and not self._state.adding:
            raise ValueError("the consent ledger is append-only")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        raise ValueError("the consent ledger is append-only")


class ContactPlan(models.Model):
    """How a client wants to hear from the firm: channels in the order the client chose."""

    client = models.OneToOneField(
        Client, primary_key=True, on_delete=models.CASCADE, related_name="contact_plan"
    )
    channels = models.JSONField(default=list, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"contact plan of client {self.client_id}"


class StaffContact(models.Model):
    """Where a staff member is alerted besides the app: a phone for SMS, chosen channels."""

    membership = models.OneToOneField(
        Membership, primary_key=True, on_delete=models.CASCADE, related_name="contact"
    )
    phone = EncryptedTextField(blank=True, default="")
    channels = models.JSONField(default=list, blank=True)

    def __str__(self) -> str:
        return f"contact of member {self.membership_id}"


class MessagingPolicy(models.Model):
    """A firm's settings for messages: quiet hours, escalation, follow-ups; one per firm."""

    firm = models.OneToOneField(Firm, on_delete=models.CASCADE, related_name="messaging")
    quiet_hours = models.BooleanField(default=True)
    quiet_from = models.TimeField(default=time(21, 0))
    quiet_until = models.TimeField(default=time(8, 0))
    escalate_after_hours = models.PositiveSmallIntegerField(default=4)
    card_delivery_days = models.PositiveSmallIntegerField(default=10)
    # Action-urgency client messages go on the client's first two consented channels.
    action_on_two_channels = models.BooleanField(default=False)
    digest_hour = models.PositiveSmallIntegerField(default=7)

    def __str__(self) -> str:
        return f"messaging policy of {self.firm}"


class RoutingRule(models.Model):
    """A firm's own rule: for changes of this category and urgency, who hears, and how.

    A firm with no rules of its own uses the defaults in notify/data/routing.toml.
    Empty `category` or `urgency` matches any; the first matching rule by `position` wins.
    """

    firm = models.ForeignKey(Firm, on_delete=models.CASCADE, related_name="routing_rules")
    position = models.PositiveSmallIntegerField(default=0)
    category = models.CharField(max_length=32, blank=True, default="")
    urgency = models.CharField(max_length=16, blank=True, default="")
    kind = models.CharField(max_length=32, choices=MessageKind.choices, blank=True, default="")
    # Roles ("attorney", "paralegal", "responsible_attorney", …) and member ids to alert.
    staff = models.JSONField(default=list, blank=True)
    staff_channels = models.JSONField(default=list, blank=True)
    tell_client = models.BooleanField(default=False)
    # Who hears next, in order, when nobody acknowledges an action-urgency change.
    escalate_to = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["firm", "position"]

    def __str__(self) -> str:
        return f"rule {self.position} of {self.firm}"


class InboundMessage(models.Model):
    """A client's message to the firm on WhatsApp or SMS; sender and text encrypted."""

    firm = models.ForeignKey(
        Firm, null=True, blank=True, on_delete=models.CASCADE, related_name="inbound_messages"
    )
    client = models.ForeignKey(
        Client, null=True, blank=True, on_delete=models.SET_NULL, related_name="inbound_messages"
    )
    channel = models.CharField(max_length=10, choices=Channel.choices)
    provider_message_id = models.CharField(max_length=128)
    sender = EncryptedTextField()
    body = EncryptedTextField(blank=True, default="")
    received_at = models.DateTimeField()
    # What casewatch made of it: opt_out, opt_in, reply (forwarded to staff), unknown sender.
    meaning = models.CharField(max_length=16)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["channel", "provider_message_id"], name="one_inbound_per_message"
            )
        ]

    def __str__(self) -> str:
        return f"{self.channel} message {self.pk} ({self.meaning})"


class PortalLink(models.Model):
    """A client's private link to their portal: signed, revocable, expiring.

    Only the SHA-256 of the link's secret is kept.
    """

    firm = models.ForeignKey(Firm, on_delete=models.CASCADE, related_name="portal_links")
    client = models.ForeignKey(Client, on_delete=models.CASCADE, related_name="portal_links")
    token_hash = models.CharField(max_length=64, unique=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_visit_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"portal link {self.pk} of client {self.client_id}"


class PortalVisit(models.Model):
    """One opening of a client's portal: the count that shows fewer "any update?" calls."""

    firm = models.ForeignKey(Firm, on_delete=models.CASCADE, related_name="portal_visits")
    client = models.ForeignKey(Client, on_delete=models.CASCADE, related_name="portal_visits")
    link = models.ForeignKey(PortalLink, on_delete=models.CASCADE, related_name="visits")
    at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["firm", "at"])]

    def __str__(self) -> str:
        return f"portal visit {self.pk}"


class WebhookEndpoint(models.Model):
    """A URL of the firm's own systems that receives signed events (the webhook channel)."""

    firm = models.ForeignKey(Firm, on_delete=models.CASCADE, related_name="webhook_endpoints")
    url = models.URLField(max_length=500)
    secret = EncryptedTextField()
    event_types = models.JSONField(default=list, blank=True)
    active = models.BooleanField(default=True)
    consecutive_failures = models.PositiveIntegerField(default=0)
    disabled_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"webhook {self.pk} of {self.firm}"


__all__ = [
    "CLIENT_CHANNELS",
    "PROGRESS",
    "STAFF_CHANNELS",
    "AttemptOutcome",
    "Channel",
    "ConsentRecord",
    "ContactPlan",
    "DeliveryAttempt",
    "DeliveryReceipt",
    "InboundMessage",
    "MessageKind",
    "MessagingPolicy",
    "Notification",
    "NotificationStatus",
    "PortalLink",
    "PortalVisit",
    "RecipientKind",
    "RoutingRule",
    "StaffContact",
    "WebhookEndpoint",
]
