"""The router: unrouted events in, notifications out, one transaction per event.

Each StatusEvent, OperationalEvent and Reminder with `routed_at` empty is an
outbox entry. The router claims one with a guarded UPDATE (… WHERE routed_at IS
NULL), so two routers never both route it, and in the same transaction creates
its notifications — one per recipient and channel, each with an idempotency key
derived from what it is about and whom it is for — and its audit entry. A crash
before the commit leaves the event unrouted; after it, routing again creates
nothing (the keys are unique).

Who hears is the rules' business (casewatch/notify/rules.py); this module turns
a rule into people, channels and addresses. `message` holds a message key and
parameters only — never a client's name, phone or e-mail.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import transaction
from django.urls import reverse

from casewatch.accounts.models import Firm, Membership
from casewatch.audit.chain import PendingEntry, record, record_many
from casewatch.cases.models import Case, Client, Deadline, Reminder, StatusEvent
from casewatch.monitor.models import OperationalEvent, OperationalKind
from casewatch.notify.channels.errors import scrub
from casewatch.notify.consent import consented_channels
from casewatch.notify.messages import TEST_DATA, client_language, staff_language
from casewatch.notify.models import (
    CLIENT_CHANNELS,
    Channel,
    ContactPlan,
    MessageKind,
    MessagingPolicy,
    Notification,
    NotificationStatus,
    RecipientKind,
    WebhookEndpoint,
)
from casewatch.notify.quiet_hours import held_until, pick_zone
from casewatch.notify.rules import (
    RESPONSIBLE_ATTORNEY,
    RESPONSIBLE_PARALEGAL,
    Rule,
    StaffRef,
    defaults,
    matching_rule,
    rules_for,
)

log = logging.getLogger(__name__)

# Writes a message's parameters in a recipient's language.
ParamsFor = Callable[[str], dict[str, Any]]

# What each operational event is called as a message.
OPERATIONAL_KINDS: dict[str, str] = {
    OperationalKind.USCIS_UNREADABLE: MessageKind.USCIS_OUTAGE,
    OperationalKind.USCIS_RECOVERED: MessageKind.USCIS_RECOVERED,
}
# StatusEvent.source of a change read from a sandbox rather than from USCIS.
SANDBOX_SOURCE = "sandbox"
# What each reminder is called as a message.
REMINDER_KINDS: dict[str, str] = {Reminder.KIND_RECEIPT_PENDING: MessageKind.RECEIPT_PENDING}
# --- small shared pieces ----------------------------------------------------------------


def idempotency_key(source: str, source_pk: object, recipient: str, channel: str) -> str:
    """The notification's identity: the same thing, person and channel give the same key."""
    return hashlib.sha256(f"{source}:{source_pk}:{recipient}:{channel}".encode()).hexdigest()


def case_url(case_id: int) -> str:
    """The case page, as a path: the mail or app adds the host."""
    return reverse("case-detail", args=[case_id])


def _text(value: object) -> str:
    return "" if value is None else str(value)


@dataclass(frozen=True)
class StaffMember:
    """An active member as routing needs them: who, how to reach, in which language."""

    membership_id: int
    user_id: int
    role: str
    language: str
    email: str
    phone: str
    # The channels the member chose (StaffContact.channels); empty: never chose.
    chose: tuple[str, ...]
    time_zone: str

    @property
    def recipient(self) -> str:
        return f"user:{self.user_id}"

    def channels(self, requested: Iterable[str]) -> list[tuple[str, str]]:
        """(channel, address) for each channel this member hears on, in-app always first.

        E-mail goes to members with an address who did not leave it out of their
        own choice; SMS only to those who gave a phone and chose it.
        """
        wanted = set(requested)
        found: list[tuple[str, str]] = [(Channel.IN_APP, "")]
        if (
            Channel.EMAIL in wanted
            and self.email
            and (not self.chose or Channel.EMAIL in self.chose)
        ):
            found.append((Channel.EMAIL, self.email))
        if Channel.SMS in wanted and self.phone and Channel.SMS in self.chose:
            found.append((Channel.SMS, self.phone))
        return found


@dataclass
class FirmContext:
    """What routing needs to know about one firm, read once per run."""

    firm: Firm
    rules: tuple[Rule, ...]
    policy: MessagingPolicy | None
    members: tuple[StaffMember, ...]
    endpoints: tuple[WebhookEndpoint, ...]

    def resolve(self, refs: Sequence[StaffRef], case: Case | None = None) -> list[StaffMember]:
        """The members a rule names, once each, in the rule's order.

        When the rule names someone but nobody resolves (a case with no paralegal,
        a firm with no operations lead), the `when_nobody` roles hear instead.
        """
        found = self._resolve(refs, case)
        if refs and not found:
            found = self._resolve(defaults().when_nobody, case)
        return found

    def _resolve(self, refs: Sequence[StaffRef], case: Case | None) -> list[StaffMember]:
        found: list[StaffMember] = []
        for ref in refs:
            for member in self._named(ref, case):
                if member not in found:
                    found.append(member)
        return found

    def _named(self, ref: StaffRef, case: Case | None) -> list[StaffMember]:
        if ref in (RESPONSIBLE_ATTORNEY, RESPONSIBLE_PARALEGAL):
            if case is None:
                return []
            user_id = case.attorney_id if ref == RESPONSIBLE_ATTORNEY else case.paralegal_id
            return [m for m in self.members if m.user_id == user_id]
        if isinstance(ref, int):
            return [m for m in self.members if m.membership_id == ref]
        return [m for m in self.members if m.role == ref]

    def endpoints_for(self, *event_types: str) -> list[WebhookEndpoint]:
        """Active webhook endpoints that take this kind of event (no types: all of them)."""
        wanted = {t for t in event_types if t}
        return [e for e in self.endpoints if not e.event_types or wanted & set(e.event_types)]


class Firms:
    """FirmContexts read on first use and kept for one run of the router or a follow-up."""

    def __init__(self) -> None:
        self._known: dict[int, FirmContext] = {}

    def get(self, firm_id: int) -> FirmContext:
        if firm_id not in self._known:
            self._known[firm_id] = load_firm(firm_id)
        return self._known[firm_id]


def load_firm(firm_id: int) -> FirmContext:
    firm = Firm.objects.get(pk=firm_id)
    memberships = (
        Membership.objects.filter(firm_id=firm_id, user__is_active=True)
        .select_related("user", "contact")
        .order_by("pk")
    )
    members = []
    for membership in memberships:
        contact = getattr(membership, "contact", None)
        members.append(
            StaffMember(
                membership_id=membership.pk,
                user_id=membership.user_id,
                role=membership.role,
                language=staff_language(membership.language),
                email=membership.user.email or "",
                phone=contact.phone if contact is not None else "",
                chose=tuple(contact.channels or ()) if contact is not None else (),
                time_zone=membership.time_zone,
            )
        )
    return FirmContext(
        firm=firm,
        rules=rules_for(firm_id),
        policy=MessagingPolicy.objects.filter(firm_id=firm_id).first(),
        members=tuple(members),
        endpoints=tuple(
            WebhookEndpoint.objects.filter(
                firm_id=firm_id, active=True, disabled_at__isnull=True
            ).order_by("pk")
        ),
    )


# --- what a notification says ----------------------------------------------------------


def event_due_on(event: StatusEvent) -> str:
    deadline = Deadline.objects.filter(event=event).order_by("due_on").first()
    return deadline.effective_due_on.isoformat() if deadline is not None else ""


def _title(event: StatusEvent, language: str) -> str:
    return event.title_es if language == "es" and event.title_es else event.title_en


def test_data_params(event: StatusEvent) -> dict[str, str]:
    """{"test_data": "1"} for a change read from the sandbox: its messages say so."""
    return {TEST_DATA: "1"} if event.source == SANDBOX_SOURCE else {}


def client_change_params(
    event: StatusEvent, case: Case, firm: Firm, due_on: str, language: str
) -> dict[str, str]:
    """What a client's status-change message needs: the case, the change, the firm's name."""
    return {
        "receipt": _text(case.receipt_number),
        "form_type": case.form_type,
        "status": event.status,
        "category": event.category,
        "firm_name": firm.name,
        "due_on": due_on,
        "uscis_title": _title(event, language),
        **test_data_params(event),
    }


def staff_change_params(
    event: StatusEvent, case: Case, due_on: str, language: str
) -> dict[str, str]:
    """What a staff status-change message needs; the client by the firm's reference only."""
    client_reference = case.client.reference if case.client is not None else ""
    return {
        "receipt": _text(case.receipt_number),
        "form_type": case.form_type,
        "status": event.status,
        "category": event.category,
        "urgency": event.urgency,
        "uscis_title": _title(event, language),
        "due_on": due_on,
        "case_url": case_url(case.pk),
        "client_reference": client_reference,
        **test_data_params(event),
    }


def _message(kind: str, params: dict[str, Any]) -> dict[str, Any]:
    return {"key": kind, "params": params}


def same_params(params: dict[str, Any]) -> ParamsFor:
    """Parameters that read the same in every language (ids, dates, paths)."""
    return lambda _language: params


# --- who hears, on which channel --------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """What notifications are about: the thing routed, for keys and foreign keys."""

    name: str  # status_event, operational_event, reminder, escalation, …
    pk: object
    kind: str
    firm_id: int
    case: Case | None = None
    event: StatusEvent | None = None
    operational_event: OperationalEvent | None = None
    urgency: str = ""


def draft(
    source: Source,
    *,
    recipient: str,
    recipient_kind: str,
    channel: str,
    address: str,
    language: str,
    params: dict[str, Any],
    now: datetime,
    status: str = NotificationStatus.PENDING,
    next_attempt_at: datetime | None = None,
    last_error: str = "",
    user_id: int | None = None,
    client: Client | None = None,
) -> Notification:
    delivered = channel == Channel.IN_APP
    return Notification(
        firm_id=source.firm_id,
        case=source.case,
        event=source.event,
        operational_event=source.operational_event,
        kind=source.kind,
        recipient_kind=recipient_kind,
        user_id=user_id,
        client=client,
        channel=channel,
        address=address,
        language=language,
        message=_message(source.kind, params),
        urgency=source.urgency,
        # An in-app notification is delivered when it is stored (spec/cli.md).
        status=NotificationStatus.DELIVERED if delivered else status,
        delivered_at=now if delivered else None,
        # The dispatcher's next look: now, or when quiet hours end; never for the unsendable.
        next_attempt_at=(
            None
            if delivered or status == NotificationStatus.SUPPRESSED
            else (next_attempt_at or now)
        ),
        last_error=last_error,
        idempotency_key=idempotency_key(source.name, source.pk, recipient, channel),
        created_at=now,
    )


def staff_notifications(
    source: Source,
    people: Iterable[StaffMember],
    channels: Sequence[str],
    params_for: ParamsFor,
    now: datetime,
) -> list[Notification]:
    """One notification per member and channel; `params_for(language)` writes the message.

    Staff alerts are never held for quiet hours: in-app and e-mail wait silently
    until read, and SMS goes only to those who chose it for action-urgency changes.
    """
    drafts = []
    for member in people:
        for channel, address in member.channels(channels):
            drafts.append(
                draft(
                    source,
                    recipient=member.recipient,
                    recipient_kind=RecipientKind.STAFF,
                    channel=channel,
                    address=address,
                    language=member.language,
                    params=params_for(member.language),
                    now=now,
                    user_id=member.user_id,
                )
            )
    return drafts


def webhook_notifications(
    source: Source,
    ctx: FirmContext,
    channels: Sequence[str],
    params: dict[str, Any],
    now: datetime,
    category: str = "",
) -> list[Notification]:
    """One notification per active endpoint of the firm that takes this event."""
    if Channel.WEBHOOK not in channels:
        return []
    return [
        webhook_draft(source, endpoint, params, now)
        for endpoint in ctx.endpoints_for(source.kind, category)
    ]


def webhook_draft(
    source: Source, endpoint: WebhookEndpoint, params: dict[str, Any], now: datetime
) -> Notification:
    """The (unsaved) notification that sends this event to one endpoint."""
    note = draft(
        source,
        recipient=f"webhook:{endpoint.pk}",
        recipient_kind=RecipientKind.STAFF,
        channel=Channel.WEBHOOK,
        address=endpoint.url,
        language="en",
        params=params,
        now=now,
    )
    note.endpoint = endpoint
    return note


def client_plan(client: Client) -> list[str]:
    """The client's channels in the order they chose (default: WhatsApp, SMS, e-mail)."""
    plan = ContactPlan.objects.filter(client=client).values_list("channels", flat=True).first()
    chosen = [c for c in (plan or ()) if c in CLIENT_CHANNELS]
    ordered = list(dict.fromkeys(chosen))
    return ordered or [str(c) for c in CLIENT_CHANNELS]


def client_address(client: Client, channel: str) -> str:
    return client.email if channel == Channel.EMAIL else client.phone


def client_notifications(
    source: Source,
    ctx: FirmContext,
    client: Client,
    params_for: ParamsFor,
    now: datetime,
) -> list[Notification]:
    """The client's message on the first channel they consented to (two, if the firm asks).

    Channels without an address are skipped. With no consent on any channel, one
    notification on the first channel is stored as suppressed, so the outbox shows
    that the client was not told, and why. In quiet hours the message is held.
    """
    plan = client_plan(client)
    reachable = [c for c in plan if client_address(client, c)]
    consented = consented_channels([client.pk])[client.pk]
    two = (
        source.urgency == "action" and ctx.policy is not None and ctx.policy.action_on_two_channels
    )
    chosen = [c for c in reachable if c in consented][: 2 if two else 1]
    language = client_language(client.language)
    recipient = f"client:{client.pk}"
    if not chosen:
        reason = (
            f"no consent on {', '.join(reachable)}"
            if reachable
            else "no phone or e-mail on file for the client"
        )
        return [
            draft(
                source,
                recipient=recipient,
                recipient_kind=RecipientKind.CLIENT,
                channel=(reachable or plan)[0],
                address="",
                language=language,
                params=params_for(language),
                now=now,
                status=NotificationStatus.SUPPRESSED,
                last_error=reason,
                client=client,
            )
        ]
    wait = held_until(now, pick_zone(client.time_zone, ctx.firm.time_zone), ctx.policy)
    return [
        draft(
            source,
            recipient=recipient,
            recipient_kind=RecipientKind.CLIENT,
            channel=channel,
            address=client_address(client, channel),
            language=language,
            params=params_for(language),
            now=now,
            status=NotificationStatus.HELD if wait else NotificationStatus.PENDING,
            next_attempt_at=wait or now,
            client=client,
        )
        for channel in chosen
    ]


# --- routing each kind of outbox entry -------------------------------------------------


@dataclass
class RouteReport:
    """What one run of the router did."""

    status_events: int = 0
    initial_events: int = 0
    operational_events: int = 0
    reminders: int = 0
    # Messages whose delivery or failure was told to the firm's endpoints (not "routed").
    outcomes: int = 0
    notifications: int = 0
    by_channel: Counter[str] = field(default_factory=Counter)
    held: int = 0
    suppressed: int = 0

    def add(self, drafts: Sequence[Notification]) -> dict[str, Any]:
        """Count the drafts; return the audit's details for them (no personal data)."""
        channels = Counter(str(d.channel) for d in drafts)
        statuses = Counter(str(d.status) for d in drafts)
        self.notifications += len(drafts)
        self.by_channel.update(channels)
        self.held += statuses[NotificationStatus.HELD]
        self.suppressed += statuses[NotificationStatus.SUPPRESSED]
        return {
            "notifications": dict(sorted(channels.items())),
            "staff": sum(1 for d in drafts if d.recipient_kind == RecipientKind.STAFF),
            "client": sum(1 for d in drafts if d.recipient_kind == RecipientKind.CLIENT),
            "held": statuses[NotificationStatus.HELD],
            "suppressed": statuses[NotificationStatus.SUPPRESSED],
        }

    @property
    def routed(self) -> int:
        return self.status_events + self.initial_events + self.operational_events + self.reminders

    def as_dict(self) -> dict[str, Any]:
        return {
            "status_events": self.status_events,
            "initial_events": self.initial_events,
            "operational_events": self.operational_events,
            "reminders": self.reminders,
            "outcomes": self.outcomes,
            "notifications": self.notifications,
            "by_channel": dict(sorted(self.by_channel.items())),
            "held": self.held,
            "suppressed": self.suppressed,
        }


def save_notifications(drafts: Sequence[Notification]) -> None:
    """Insert; a notification whose key exists already is left as it is (a second routing)."""
    if drafts:
        Notification.objects.bulk_create(drafts, ignore_conflicts=True)


def status_change_notifications(
    event: StatusEvent, ctx: FirmContext, now: datetime
) -> tuple[Rule | None, list[Notification]]:
    """The notifications one status change calls for under the firm's rules."""
    rule = matching_rule(ctx.rules, MessageKind.STATUS_CHANGE, event.category, event.urgency)
    if rule is None or rule.records_only:
        return rule, []
    case = event.case
    source = Source(
        name="status_event",
        pk=event.pk,
        kind=MessageKind.STATUS_CHANGE,
        firm_id=event.firm_id,
        case=case,
        event=event,
        urgency=event.urgency,
    )
    due_on = event_due_on(event)

    def staff_params(language: str) -> dict[str, str]:
        return staff_change_params(event, case, due_on, language)

    drafts = staff_notifications(
        source, ctx.resolve(rule.staff, case), rule.staff_channels, staff_params, now
    )
    drafts += webhook_notifications(
        source, ctx, rule.staff_channels, staff_params("en"), now, event.category
    )
    if rule.tell_client and case.client is not None:

        def client_params(language: str) -> dict[str, str]:
            return client_change_params(event, case, ctx.firm, due_on, language)

        drafts += client_notifications(source, ctx, case.client, client_params, now)
    return rule, drafts


def _route_status_event(event_id: int, firms: Firms, now: datetime, report: RouteReport) -> None:
    with transaction.atomic():
        claimed = StatusEvent.objects.filter(pk=event_id, routed_at__isnull=True).update(
            routed_at=now
        )
        if not claimed:
            return
        event = StatusEvent.objects.select_related("case", "case__client").get(pk=event_id)
        ctx = firms.get(event.firm_id)
        rule, drafts = status_change_notifications(event, ctx, now)
        drafts += deadline_notifications(event, ctx, now)
        save_notifications(drafts)
        details = report.add(drafts)
        record(
            "status_event.routed",
            object_type="status_event",
            object_id=event.pk,
            firm_id=event.firm_id,
            actor="router",
            details={
                "case_id": event.case_id,
                "category": event.category,
                "rule": rule.origin if rule is not None else None,
                **details,
            },
            at=now,
        )
    report.status_events += 1


def deadline_notifications(
    event: StatusEvent, ctx: FirmContext, now: datetime
) -> list[Notification]:
    """A deadline_created webhook for each deadline the change set (created with it)."""
    if not ctx.endpoints:
        return []
    case = event.case
    drafts: list[Notification] = []
    for deadline in Deadline.objects.filter(event=event).order_by("due_on", "pk"):
        source = Source(
            name="deadline",
            pk=deadline.pk,
            kind=MessageKind.DEADLINE_CREATED,
            firm_id=event.firm_id,
            case=case,
            event=event,
            urgency=event.urgency,
        )
        params = {
            "receipt": _text(case.receipt_number),
            "form_type": case.form_type,
            "deadline_kind": deadline.kind,
            "due_on": deadline.effective_due_on.isoformat(),
            "due_at": deadline.due_at.isoformat() if deadline.due_at else "",
            "basis": deadline.basis_text,
            "case_url": case_url(case.pk),
        }
        drafts += webhook_notifications(source, ctx, (Channel.WEBHOOK,), params, now)
    return drafts


def _route_initial_events(event_ids: Sequence[int], now: datetime, report: RouteReport) -> None:
    """Mark first-seen statuses routed, with no notification: they are news to nobody.

    The first status casewatch reads for a case is where the case already stood
    when the firm added it; the firm knows it and the client was told by USCIS.
    """
    if not event_ids:
        return
    with transaction.atomic():
        claimed = []
        for event_id in event_ids:
            if StatusEvent.objects.filter(pk=event_id, routed_at__isnull=True).update(
                routed_at=now
            ):
                claimed.append(event_id)
        firm_of = dict(StatusEvent.objects.filter(pk__in=claimed).values_list("pk", "firm_id"))
        record_many(
            [
                PendingEntry(
                    action="status_event.routed",
                    object_type="status_event",
                    object_id=event_id,
                    firm_id=firm_of[event_id],
                    actor="router",
                    details={"initial": True, "notifications": {}},
                    at=now,
                )
                for event_id in claimed
            ]
        )
    report.initial_events += len(claimed)


def operational_notifications(
    event: OperationalEvent, ctx: FirmContext, now: datetime
) -> list[Notification]:
    """The firm's notifications for an operational event (for every firm, when it has none)."""
    kind = OPERATIONAL_KINDS.get(event.kind)
    if kind is None:
        return []
    rule = matching_rule(ctx.rules, kind)
    if rule is None or rule.records_only:
        return []
    source = Source(
        name="operational_event",
        pk=event.pk,
        kind=kind,
        firm_id=ctx.firm.pk,
        operational_event=event,
    )
    details = event.details or {}
    params = {
        "message": event.message,
        "since": _text(details.get("unreadable_since", "")),
        "minutes": _text(details.get("minutes", details.get("duration_minutes", ""))),
        "last_error": _text(details.get("last_error", "")),
        "occurred_at": event.occurred_at.isoformat(),
    }
    drafts = staff_notifications(
        source, ctx.resolve(rule.staff), rule.staff_channels, same_params(params), now
    )
    drafts += webhook_notifications(source, ctx, rule.staff_channels, params, now)
    return drafts


def _route_operational_event(
    event_id: int, firms: Firms, now: datetime, report: RouteReport
) -> None:
    with transaction.atomic():
        claimed = OperationalEvent.objects.filter(pk=event_id, routed_at__isnull=True).update(
            routed_at=now
        )
        if not claimed:
            return
        event = OperationalEvent.objects.get(pk=event_id)
        firm_ids = (
            [event.firm_id]
            if event.firm_id is not None
            else list(Firm.objects.order_by("pk").values_list("pk", flat=True))
        )
        drafts: list[Notification] = []
        for firm_id in firm_ids:
            drafts += operational_notifications(event, firms.get(firm_id), now)
        save_notifications(drafts)
        details = report.add(drafts)
        record(
            "operational_event.routed",
            object_type="operational_event",
            object_id=event.pk,
            firm_id=event.firm_id,
            actor="router",
            details={"kind": event.kind, "firms": len(firm_ids), **details},
            at=now,
        )
    report.operational_events += 1


def reminder_notifications(
    reminder: Reminder, ctx: FirmContext, now: datetime
) -> list[Notification]:
    kind = REMINDER_KINDS.get(reminder.kind)
    if kind is None:
        log.warning(
            "reminder %s of kind %r has no message; recorded only", reminder.pk, reminder.kind
        )
        return []
    rule = matching_rule(ctx.rules, kind)
    if rule is None or rule.records_only:
        return []
    case = reminder.case
    source = Source(name="reminder", pk=reminder.pk, kind=kind, firm_id=reminder.firm_id, case=case)
    since = case.filed_on or case.created_at.date()
    reference = case.client.reference if case.client is not None else ""
    params = {
        "form_type": case.form_type,
        "filed_on": since.isoformat(),
        "days": str(max(0, (now.date() - since).days)),
        "case_url": case_url(case.pk),
        "reference": reference,
        "client_reference": reference,
    }
    drafts = staff_notifications(
        source, ctx.resolve(rule.staff, case), rule.staff_channels, same_params(params), now
    )
    drafts += webhook_notifications(source, ctx, rule.staff_channels, params, now)
    return drafts


def _route_reminder(reminder_id: int, firms: Firms, now: datetime, report: RouteReport) -> None:
    with transaction.atomic():
        claimed = Reminder.objects.filter(pk=reminder_id, routed_at__isnull=True).update(
            routed_at=now
        )
        if not claimed:
            return
        reminder = Reminder.objects.select_related("case", "case__client").get(pk=reminder_id)
        drafts = reminder_notifications(reminder, firms.get(reminder.firm_id), now)
        save_notifications(drafts)
        details = report.add(drafts)
        record(
            "reminder.routed",
            object_type="reminder",
            object_id=reminder.pk,
            firm_id=reminder.firm_id,
            actor="router",
            details={"case_id": reminder.case_id, "kind": reminder.kind, **details},
            at=now,
        )
    report.reminders += 1


# Channels whose delivered or failed messages are told to the firm's endpoints: in-app is
# delivered when stored (no news), and a webhook's own outcome would announce itself forever.
OUTCOME_CHANNELS = (Channel.WHATSAPP, Channel.SMS, Channel.EMAIL)
OUTCOME_KINDS: dict[str, str] = {
    NotificationStatus.DELIVERED: MessageKind.NOTIFICATION_DELIVERED,
    NotificationStatus.READ: MessageKind.NOTIFICATION_DELIVERED,
    NotificationStatus.FAILED: MessageKind.NOTIFICATION_FAILED,
}


def outcome_notifications(
    notification: Notification, ctx: FirmContext, now: datetime
) -> list[Notification]:
    """The webhooks telling the firm's systems that a message was delivered or failed."""
    kind = OUTCOME_KINDS.get(notification.status)
    if kind is None or not ctx.endpoints:
        return []
    case = notification.case
    source = Source(
        name="notification_outcome",
        pk=notification.pk,
        kind=kind,
        firm_id=notification.firm_id,
        case=case,
        event=notification.event,
        operational_event=notification.operational_event,
        urgency=notification.urgency,
    )
    at = notification.failed_at if kind == MessageKind.NOTIFICATION_FAILED else None
    at = at or notification.delivered_at or notification.read_at or now
    params = {
        "notification": notification.pk,
        "about": notification.kind,
        "channel": notification.channel,
        "recipient_kind": notification.recipient_kind,
        "status": notification.status,
        "receipt": _text(case.receipt_number) if case is not None else "",
        "at": at.isoformat(),
        "error": (
            scrub(notification.last_error, notification.address)[:300]
            if kind == MessageKind.NOTIFICATION_FAILED
            else ""
        ),
    }
    return webhook_notifications(source, ctx, (Channel.WEBHOOK,), params, now)


def _route_outcome(notification_id: int, firms: Firms, now: datetime, report: RouteReport) -> None:
    with transaction.atomic():
        claimed = Notification.objects.filter(
            pk=notification_id, outcome_routed_at__isnull=True
        ).update(outcome_routed_at=now)
        if not claimed:
            return
        notification = Notification.objects.select_related("case").get(pk=notification_id)
        drafts = outcome_notifications(notification, firms.get(notification.firm_id), now)
        save_notifications(drafts)
        report.add(drafts)
    report.outcomes += 1


@dataclass(frozen=True)
class PendingBatch:
    """What a router read as waiting: ids only; each is claimed when its turn comes."""

    initial_events: tuple[int, ...] = ()
    status_events: tuple[int, ...] = ()
    operational_events: tuple[int, ...] = ()
    reminders: tuple[int, ...] = ()
    outcomes: tuple[int, ...] = ()


def pending_batch(limit: int = 500) -> PendingBatch:
    """Up to `limit` unrouted entries of each kind, oldest first.

    Another router may take any of them before this one gets to it: the claim
    (a guarded UPDATE) decides, not this list.
    """
    changes = list(
        StatusEvent.objects.filter(routed_at__isnull=True)
        .order_by("observed_at", "pk")
        .values_list("pk", "initial")[:limit]
    )
    operational = (
        OperationalEvent.objects.filter(routed_at__isnull=True)
        .order_by("occurred_at", "pk")
        .values_list("pk", flat=True)[:limit]
    )
    reminders = (
        Reminder.objects.filter(routed_at__isnull=True)
        .order_by("created_at", "pk")
        .values_list("pk", flat=True)[:limit]
    )
    outcomes = (
        Notification.objects.filter(
            outcome_routed_at__isnull=True,
            channel__in=OUTCOME_CHANNELS,
            status__in=list(OUTCOME_KINDS),
        )
        .order_by("pk")
        .values_list("pk", flat=True)[:limit]
    )
    return PendingBatch(
        initial_events=tuple(pk for pk, initial in changes if initial),
        status_events=tuple(pk for pk, initial in changes if not initial),
        operational_events=tuple(operational),
        reminders=tuple(reminders),
        outcomes=tuple(outcomes),
    )


def route_batch(batch: PendingBatch, now: datetime) -> RouteReport:
    """Claim and route each entry of the batch that nobody has routed yet."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"the router needs a timezone-aware time, got {now!r}")
    report = RouteReport()
    firms = Firms()
    _route_initial_events(batch.initial_events, now, report)
    for pk in batch.status_events:
        _route_status_event(pk, firms, now, report)
    for pk in batch.operational_events:
        _route_operational_event(pk, firms, now, report)
    for pk in batch.reminders:
        _route_reminder(pk, firms, now, report)
    for pk in batch.outcomes:
        _route_outcome(pk, firms, now, report)
    return report


def route_pending(now: datetime, *, limit: int = 500) -> RouteReport:
    """Route up to `limit` unrouted entries of each kind, oldest first; safe to run anywhere.

    Each entry is claimed and routed in its own transaction, so a crash loses
    nothing and another router running at the same time skips what this one took.
    The worker calls this periodically (and after a check that recorded changes).
    """
    return route_batch(pending_batch(limit), now)


def unrouted() -> int:
    """How many entries wait for the router (for health pages and tests)."""
    return (
        StatusEvent.objects.filter(routed_at__isnull=True).count()
        + OperationalEvent.objects.filter(routed_at__isnull=True).count()
        + Reminder.objects.filter(routed_at__isnull=True).count()
    )


__all__ = [
    "FirmContext",
    "Firms",
    "PendingBatch",
    "RouteReport",
    "Source",
    "StaffMember",
    "case_url",
    "client_notifications",
    "deadline_notifications",
    "draft",
    "event_due_on",
    "idempotency_key",
    "load_firm",
    "outcome_notifications",
    "pending_batch",
    "route_batch",
    "route_pending",
    "same_params",
    "save_notifications",
    "staff_notifications",
    "status_change_notifications",
    "unrouted",
]
