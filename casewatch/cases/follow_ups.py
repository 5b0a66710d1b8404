"""The firm's handling of a change: acknowledge it, give it to someone, comment on it.

A StatusEvent is never edited, so its handling lives beside it in an EventFollowUp.
Each step is written with its audit entry in one transaction; the entries name
people by id and never hold a comment's text, which may name the client.
"""

from __future__ import annotations

from datetime import datetime

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from casewatch.accounts.models import Membership
from casewatch.audit.chain import record, staff_actor
from casewatch.cases.models import Comment, EventFollowUp, StatusEvent

COMMENT_MAX_LENGTH = 5000


def _follow_up(event: StatusEvent) -> EventFollowUp:
    follow_up, _created = EventFollowUp.objects.select_for_update().get_or_create(
        event=event, defaults={"firm_id": event.firm_id}
    )
    return follow_up


def acknowledge(event: StatusEvent, *, by: User, at: datetime | None = None) -> bool:
    """Mark the change as seen to by `by`; False when someone had acknowledged it already."""
    with transaction.atomic():
        follow_up = _follow_up(event)
        if follow_up.acknowledged_at is not None:
            return False
        follow_up.acknowledged_at = at or timezone.now()
        follow_up.acknowledged_by = by
        follow_up.save(update_fields=["acknowledged_at", "acknowledged_by", "updated_at"])
        record(
            "follow_up.acknowledged",
            object_type="status_event",
            object_id=event.pk,
            firm_id=event.firm_id,
            actor=staff_actor(by.pk),
            details={"case_id": event.case_id},
            at=follow_up.acknowledged_at,
        )
    return True


def assign(event: StatusEvent, member: Membership | None, *, by: User) -> None:
    """Give the change to a member of the event's firm to act on (None: to nobody)."""
    if member is not None and member.firm_id != event.firm_id:
        raise ValueError("a change is assigned only within its own firm")
    with transaction.atomic():
        follow_up = _follow_up(event)
        follow_up.assigned_to_id = member.user_id if member is not None else None
        follow_up.save(update_fields=["assigned_to", "updated_at"])
        record(
            "follow_up.assigned",
            object_type="status_event",
            object_id=event.pk,
            firm_id=event.firm_id,
            actor=staff_actor(by.pk),
            details={
                "case_id": event.case_id,
                "assigned_to": staff_actor(member.user_id) if member is not None else None,
            },
        )


def comment(event: StatusEvent, body: str, *, by: User) -> Comment:
    """A staff comment on the change, kept encrypted with the case's notes."""
    body = body.strip()
    if not body or len(body) > COMMENT_MAX_LENGTH:
        raise ValueError(f"a comment has 1 to {COMMENT_MAX_LENGTH} characters")
    with transaction.atomic():
        note = Comment.objects.create(
            firm_id=event.firm_id, case_id=event.case_id, event=event, author=by, body=body
        )
        record(
            "comment.added",
            object_type="comment",
            object_id=note.pk,
            firm_id=event.firm_id,
            actor=staff_actor(by.pk),
            details={"case_id": event.case_id, "event_id": event.pk},
        )
    return note
