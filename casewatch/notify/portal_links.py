"""A client's private portal link: issued by staff, checked on every visit, revocable, expiring.

The link carries a random secret (`secrets.token_urlsafe(32)`) that is shown once, to the
member who creates it; only its SHA-256 is kept (`PortalLink.token_hash`), so a copy of
the database opens no portal. A secret that is unknown, expired or revoked finds nothing,
the same nothing for all three, so a guess learns neither that a client exists nor that
a link once worked. Creating and revoking a link are in the audit chain, with ids only.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Q, QuerySet

from casewatch.audit.chain import record, staff_actor
from casewatch.cases.models import Client
from casewatch.config import portal_link_days
from casewatch.notify.models import (
    Notification,
    NotificationStatus,
    PortalLink,
    PortalVisit,
    RecipientKind,
)

TOKEN_BYTES = 32
# The portal figure looks back this far: "visits in the last 30 days".
FIGURE_DAYS = 30


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def issue_link(
    client: Client, *, by_user_id: int | None, at: datetime, days: int | None = None
) -> tuple[PortalLink, str]:
    """A new link for the client, valid for CASEWATCH_PORTAL_LINK_DAYS; the secret is
    returned here only, never stored. Earlier links keep working until revoked."""
    token = secrets.token_urlsafe(TOKEN_BYTES)
    with transaction.atomic():
        link = PortalLink.objects.create(
            firm_id=client.firm_id,
            client=client,
            token_hash=token_hash(token),
            created_by_id=by_user_id,
            created_at=at,
            expires_at=at + timedelta(days=days or portal_link_days()),
        )
        record(
            "portal_link.created",
            actor=staff_actor(by_user_id),
            object_type="portal_link",
            object_id=link.pk,
            firm_id=client.firm_id,
            details={"client_id": client.pk, "expires_at": link.expires_at.isoformat()},
            at=at,
        )
    return link, token


def revoke_link(link: PortalLink, *, by_user_id: int | None, at: datetime) -> bool:
    """Stop the link at once; False when it was revoked already (nothing recorded twice)."""
    with transaction.atomic():
        changed = PortalLink.objects.filter(pk=link.pk, revoked_at__isnull=True).update(
            revoked_at=at
        )
        if not changed:
            return False
        record(
            "portal_link.revoked",
            actor=staff_actor(by_user_id),
            object_type="portal_link",
            object_id=link.pk,
            firm_id=link.firm_id,
            details={"client_id": link.client_id},
            at=at,
        )
    link.revoked_at = at
    return True


def verify_link(token: str, *, at: datetime) -> PortalLink | None:
    """The live link this secret opens, or None: unknown, expired and revoked alike."""
    if not token or len(token) > 200:
        return None
    return (
        PortalLink.objects.select_related("client", "firm")
        .filter(token_hash=token_hash(token), revoked_at__isnull=True, expires_at__gt=at)
        .first()
    )


def record_visit(link: PortalLink, *, at: datetime) -> PortalVisit:
    """Count one opening of the portal (per firm) and note it on the link."""
    with transaction.atomic():
        visit = PortalVisit.objects.create(
            firm_id=link.firm_id, client_id=link.client_id, link=link, at=at
        )
        PortalLink.objects.filter(pk=link.pk).update(last_visit_at=at)
    link.last_visit_at = at
    return visit


def live_links(client: Client, *, at: datetime) -> QuerySet[PortalLink]:
    """The client's links that still open the portal, newest first."""
    return (
        PortalLink.objects.filter(client=client, revoked_at__isnull=True, expires_at__gt=at)
        .select_related("created_by")
        .order_by("-created_at", "-pk")
    )


@dataclass(frozen=True)
class PortalFigure:
    """What clients read by themselves instead of calling: portal visits and messages read."""

    days: int
    visits: int
    messages_read: int


def portal_figure(firm_id: int, *, at: datetime, days: int = FIGURE_DAYS) -> PortalFigure:
    """Portal visits and client messages read in the last `days`, for one firm.

    A message counts when its provider reported it read within the window (`read_at`,
    else the time of the receipt that made it read).
    """
    since = at - timedelta(days=days)
    visits = PortalVisit.objects.filter(firm_id=firm_id, at__gt=since, at__lte=at).count()
    read = Notification.objects.filter(
        firm_id=firm_id,
        recipient_kind=RecipientKind.CLIENT,
        status=NotificationStatus.READ,
    ).filter(
        Q(read_at__gt=since, read_at__lte=at)
        | Q(read_at__isnull=True, status_at__gt=since, status_at__lte=at)
    )
    return PortalFigure(days=days, visits=visits, messages_read=read.count())


__all__ = [
    "PortalFigure",
    "issue_link",
    "live_links",
    "portal_figure",
    "record_visit",
    "revoke_link",
    "token_hash",
    "verify_link",
]
