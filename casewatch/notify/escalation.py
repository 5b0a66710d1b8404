"""Follow-ups the worker runs periodically: escalation, the card-delivery check, digests.

Each is a plain function of `now`, safe to run as often as wanted and on several
workers at once: what it creates carries an idempotency key naming what it is
about (the event and level, the mailing, the member and local date), so a
second run creates nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from django.db import transaction
from django.db.models import Q
from django.urls import reverse

from casewatch.accounts.models import Firm
from casewatch.audit.chain import record
from casewatch.cases.models import Case, EventFollowUp, StatusEvent
from casewatch.notify.models import (
    Channel,
    MessageKind,
    MessagingPolicy,
    Notification,
    RecipientKind,
    RoutingRule,
)
from casewatch.notify.quiet_hours import pick_zone
from casewatch.notify.route import (
    FirmContext,
    Firms,
    Source,
    StaffMember,
    case_url,
    draft,
    event_due_on,
    idempotency_key,
    same_params,
    save_notifications,
    staff_change_params,
    staff_notifications,
    webhook_notifications,
)
from casewatch.notify.rules import StaffRef, defaults, firm_rule, matching_rule

# Escalations go where they are seen soonest without waking anyone.
ESCALATION_CHANNELS = (Channel.IN_APP, Channel.EMAIL)
# The most changes one digest lists; the count says how many there were in all.
DIGEST_MOST = 100
# The first digest of a member covers the day before it.
FIRST_DIGEST_COVERS = timedelta(hours=24)


def _policy(ctx: FirmContext) -> MessagingPolicy:
    """The firm's settings; a firm that never changed them gets the model's defaults."""
    return ctx.policy or MessagingPolicy(firm_id=ctx.firm.pk)


def _new_only(drafts: Sequence[Notification]) -> list[Notification]:
    """The drafts whose key is not taken yet: what a run adds, for its counts and audit."""
    keys = [d.idempotency_key for d in drafts]
    taken = set(
        Notification.objects.filter(idempotency_key__in=keys).values_list(
            "idempotency_key", flat=True
        )
    )
    return [d for d in drafts if d.idempotency_key not in taken]


# --- escalation ------------------------------------------------------------------------


def _longest_ladder() -> int:
    """The most escalation levels any rule has: how far back an unanswered change can matter."""
    ladders = [len(rule.escalate_to) for rule in defaults().rules]
    ladders += [len(firm_rule(row).escalate_to) for row in RoutingRule.objects.all()]
    return max(ladders, default=0)


def _told(event: StatusEvent) -> set[int]:
    """Members already told about this change, at routing or an earlier level."""
    return set(
        Notification.objects.filter(event=event, user_id__isnull=False)
        .filter(kind__in=(MessageKind.STATUS_CHANGE, MessageKind.ESCALATION))
        .values_list("user_id", flat=True)
    )


def _escalate(
    event: StatusEvent, ctx: FirmContext, ladder: Sequence[StaffRef], levels: int, now: datetime
) -> int:
    """Tell levels 1..`levels` of the ladder who has not heard yet; returns how many created."""
    created = 0
    with transaction.atomic():
        # The follow-up row is the lock: an acknowledgement and this never cross.
        follow_up, _ = EventFollowUp.objects.select_for_update().get_or_create(
            event=event, defaults={"firm_id": event.firm_id}
        )
        if follow_up.acknowledged_at is not None:
            return 0
        case = event.case
        due_on = event_due_on(event)
        hours = _policy(ctx).escalate_after_hours
        for level in range(1, levels + 1):
            told = _told(event)
            people = [m for m in ctx.resolve([ladder[level - 1]], case) if m.user_id not in told]
            source = Source(
                name="escalation",
                pk=f"{event.pk}.{level}",
                kind=MessageKind.ESCALATION,
                firm_id=event.firm_id,
                case=case,
                event=event,
                urgency=event.urgency,
            )

            def params(language: str, level: int = level) -> dict[str, str]:
                return {
                    **staff_change_params(event, case, due_on, language),
                    "level": str(level),
                    "hours": str(hours * level),
                }

            drafts = _new_only(
                staff_notifications(source, people, ESCALATION_CHANNELS, params, now)
            )
            if not drafts:
                continue
            save_notifications(drafts)
            created += len(drafts)
            record(
                "status_event.escalated",
                object_type="status_event",
                object_id=event.pk,
                firm_id=event.firm_id,
                actor="router",
                details={
                    "case_id": event.case_id,
                    "level": level,
                    "to": str(ladder[level - 1]),
                    "members": len({d.user_id for d in drafts}),
                    "notifications": len(drafts),
                },
                at=now,
            )
    return created


def escalate_unacknowledged(now: datetime) -> int:
    """Escalate action-urgency changes nobody acknowledged; returns notifications created.

    Level k of the matching rule's `escalate_to` hears k × escalate_after_hours
    after the change was routed, unless someone acknowledged it by then. A firm
    with escalate_after_hours 0 does not escalate.
    """
    ladder_length = _longest_ladder()
    if ladder_length == 0:
        return 0
    hours = [h for h in MessagingPolicy.objects.values_list("escalate_after_hours", flat=True) if h]
    default_hours = MessagingPolicy._meta.get_field("escalate_after_hours").get_default()
    longest_wait = timedelta(hours=max([default_hours, *hours]))
    candidates = (
        StatusEvent.objects.filter(
            urgency="action",
            initial=False,
            routed_at__isnull=False,
            routed_at__gte=now - longest_wait * (ladder_length + 1),
            routed_at__lte=now,
        )
        .filter(Q(follow_up__isnull=True) | Q(follow_up__acknowledged_at__isnull=True))
        .select_related("case", "case__client")
        .order_by("routed_at", "pk")
    )
    firms = Firms()
    created = 0
    for event in candidates:
        ctx = firms.get(event.firm_id)
        every = _policy(ctx).escalate_after_hours
        rule = matching_rule(ctx.rules, MessageKind.STATUS_CHANGE, event.category, event.urgency)
        if not every or rule is None or not rule.escalate_to or event.routed_at is None:
            continue
        levels = min(int((now - event.routed_at) / timedelta(hours=every)), len(rule.escalate_to))
        if levels > 0:
            created += _escalate(event, ctx, rule.escalate_to, levels, now)
    return created


# --- card delivery ---------------------------------------------------------------------


def _mailing(case: Case, mailed: frozenset[str]) -> StatusEvent | None:
    """The change that put the case in the mail: the first of its latest run of mailed statuses.

    "Card mailed" then "picked up by USPS" is one mailing, counted from the first.
    """
    start = None
    for event in case.events.order_by("-observed_at", "-pk")[:20]:
        if event.status not in mailed:
            break
        start = event
    return start


def check_card_delivery(now: datetime) -> int:
    """Ask the paralegal to confirm a card arrived, once per mailing; returns how many created.

    A case still in a mailed status card_delivery_days after the mailing (USCIS's
    date, else when casewatch saw it) was not seen delivered. A firm with
    card_delivery_days 0 does not check. Archived cases are left alone.
    """
    mailed = defaults().card_mailed_statuses
    firms = Firms()
    created = 0
    cases = (
        Case.objects.filter(status__in=mailed, archived_at__isnull=True)
        .select_related("client")
        .order_by("pk")
    )
    for case in cases:
        ctx = firms.get(case.firm_id)
        days = _policy(ctx).card_delivery_days
        start = _mailing(case, mailed)
        if not days or start is None:
            continue
        mailed_at = start.uscis_date or start.observed_at
        if now - mailed_at < timedelta(days=days):
            continue
        rule = matching_rule(ctx.rules, MessageKind.CARD_DELIVERY_CHECK)
        if rule is None or rule.records_only:
            continue
        source = Source(
            name="card_delivery_check",
            pk=start.pk,
            kind=MessageKind.CARD_DELIVERY_CHECK,
            firm_id=case.firm_id,
            case=case,
            event=start,
            urgency=start.urgency,
        )
        params = {
            "receipt": case.receipt_number or "",
            "form_type": case.form_type,
            "status": start.status,
            "mailed_on": mailed_at.date().isoformat(),
            "days": str((now - mailed_at).days),
            "case_url": case_url(case.pk),
            "client_reference": case.client.reference if case.client is not None else "",
        }
        drafts = staff_notifications(
            source,
            ctx.resolve(rule.staff, case),
            rule.staff_channels,
            same_params(params),
            now,
        )
        drafts += webhook_notifications(source, ctx, rule.staff_channels, params, now)
        with transaction.atomic():
            drafts = _new_only(drafts)
            if not drafts:
                continue
            save_notifications(drafts)
            record(
                "case.card_delivery_check",
                object_type="case",
                object_id=case.pk,
                firm_id=case.firm_id,
                actor="router",
                details={"event_id": start.pk, "days": days, "notifications": len(drafts)},
                at=now,
            )
        created += len(drafts)
    return created


# --- daily digest ----------------------------------------------------------------------


@dataclass(frozen=True)
class _DigestSlot:
    member: StaffMember
    day: str
    channel: str
    address: str


def _digest_slot(member: StaffMember, ctx: FirmContext, now: datetime) -> _DigestSlot | None:
    """The member's digest for today if this is their digest hour, on e-mail (else in-app)."""
    zone = ZoneInfo(pick_zone(member.time_zone, ctx.firm.time_zone))
    local = now.astimezone(zone)
    if local.hour != _policy(ctx).digest_hour:
        return None
    channel, address = member.channels([Channel.EMAIL])[-1]
    return _DigestSlot(member, local.date().isoformat(), channel, address)


def _digest_params(slot: _DigestSlot, ctx: FirmContext, now: datetime) -> dict[str, Any] | None:
    """The member's progress changes since their last digest; None when there are none."""
    user_id = slot.member.user_id
    last = (
        Notification.objects.filter(firm_id=ctx.firm.pk, user_id=user_id, kind=MessageKind.DIGEST)
        .order_by("-created_at")
        .first()
    )
    since = (
        datetime.fromisoformat(last.message["params"]["until"])
        if last is not None and last.message.get("params", {}).get("until")
        else now - FIRST_DIGEST_COVERS
    )
    changes = (
        StatusEvent.objects.filter(
            firm_id=ctx.firm.pk,
            initial=False,
            urgency="progress",
            observed_at__gt=since,
            observed_at__lte=now,
        )
        .filter(Q(case__attorney_id=user_id) | Q(case__paralegal_id=user_id))
        .select_related("case", "case__client")
        .order_by("observed_at", "pk")
    )
    count = changes.count()
    if not count:
        return None
    language = slot.member.language
    listed = []
    for event in changes[:DIGEST_MOST]:
        params = staff_change_params(event, event.case, "", language)
        listed.append({k: v for k, v in params.items() if k not in ("due_on", "urgency")})
    return {
        "dashboard_url": reverse("home"),
        "date": slot.day,
        "since": since.isoformat(),
        "until": now.isoformat(),
        "count": str(count),
        "changes": listed,
    }


def send_digests(now: datetime) -> int:
    """Each staff member's daily digest of their cases' progress changes; returns how many.

    Made in the member's digest hour (MessagingPolicy.digest_hour, on their own
    clock: their time zone, else the firm's), once per local date, only when
    there is something to say. A day without a digest loses nothing: the next one
    covers everything since the last.
    """
    firms = Firms()
    created = 0
    for firm_id in Firm.objects.order_by("pk").values_list("pk", flat=True):
        ctx = firms.get(firm_id)
        for member in ctx.members:
            slot = _digest_slot(member, ctx, now)
            if slot is None:
                continue
            source = Source(
                name="digest",
                pk=f"{member.membership_id}/{slot.day}",
                kind=MessageKind.DIGEST,
                firm_id=firm_id,
            )
            key = idempotency_key(source.name, source.pk, member.recipient, slot.channel)
            if Notification.objects.filter(idempotency_key=key).exists():
                continue
            params = _digest_params(slot, ctx, now)
            if params is None:
                continue
            save_notifications(
                [
                    draft(
                        source,
                        recipient=member.recipient,
                        recipient_kind=RecipientKind.STAFF,
                        channel=slot.channel,
                        address=slot.address,
                        language=member.language,
                        params=params,
                        now=now,
                        user_id=member.user_id,
                    )
                ]
            )
            created += 1
    return created


__all__ = ["check_card_delivery", "escalate_unacknowledged", "send_digests"]
