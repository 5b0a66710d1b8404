"""The access log: who looked at a case page or a client's personal data, when, from where.

Staff pages call `record` after showing such data; admins read the log in the web app.
Nothing here reads the data looked at: a record holds ids and a route name only.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import router
from django.utils import timezone

from casewatch.audit.models import AccessRecord


def record(
    *,
    firm_id: int,
    actor: str,
    page: str,
    object_type: str = "",
    object_id: str | int = "",
    address: str | None = None,
    at: datetime | None = None,
) -> AccessRecord:
    """Write one look; `address` is where the request came from, as the server saw it."""
    return AccessRecord.objects.create(
        at=at or timezone.now(),
        firm_id=firm_id,
        actor=actor[:64],
        page=page[:64],
        object_type=object_type[:32],
        object_id=str(object_id)[:64],
        address=(address or "")[:64],
    )


def prune(*, keep_days: int, now: datetime | None = None) -> int:
    """Forget looks older than `keep_days` (the documented retention); returns how many."""
    cutoff = (now or timezone.now()) - timedelta(days=keep_days)
    old = AccessRecord.objects.filter(at__lt=cutoff)
    # The queryset refuses delete() so that nothing else removes records by accident.
    return int(old._raw_delete(router.db_for_write(AccessRecord)))
