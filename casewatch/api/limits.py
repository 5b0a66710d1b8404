"""Per-token rate limit: a fixed one-minute window counted in the database.

The database, not a cache: every web process and replica sees the same count without
another service. One UPDATE per request (an INSERT for a token's first in a minute).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from casewatch.accounts.models import ApiToken
from casewatch.api.models import RateWindow

WINDOW = timedelta(minutes=1)
# Windows older than this are deleted now and then, as new ones open.
KEEP = timedelta(minutes=10)


def per_minute() -> int:
    return int(getattr(settings, "CASEWATCH_API_RATE_PER_MINUTE", 600))


def seconds_to_wait(token: ApiToken, now: datetime | None = None) -> int | None:
    """Count this request; None when it is allowed, else the seconds until the next window."""
    now = now or timezone.now()
    minute = now.replace(second=0, microsecond=0)
    with transaction.atomic():
        counted = RateWindow.objects.filter(token=token, minute=minute).update(
            requests=F("requests") + 1
        )
        if not counted:
            try:
                with transaction.atomic():
                    RateWindow.objects.create(token=token, minute=minute, requests=1)
            except IntegrityError:  # another request opened the window a moment ago
                RateWindow.objects.filter(token=token, minute=minute).update(
                    requests=F("requests") + 1
                )
            else:
                RateWindow.objects.filter(token=token, minute__lt=minute - KEEP).delete()
        used = RateWindow.objects.filter(token=token, minute=minute).values_list(
            "requests", flat=True
        )[0]
    if used <= per_minute():
        return None
    return max(1, int((minute + WINDOW - now).total_seconds() + 0.999))
