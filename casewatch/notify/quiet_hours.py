"""Quiet hours: no client message between quiet_from and quiet_until in the client's zone.

The window is read on the client's wall clock (zoneinfo), so it holds across
daylight-saving changes: 21:00 to 8:00 stays 21:00 to 8:00 on a 23- or 25-hour
day. A message in the window waits until quiet_until; the dispatcher sends it then.
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from casewatch.notify.models import MessagingPolicy

log = logging.getLogger(__name__)

# The zone of last resort: where most of casewatch's firms are, and the firm model's default.
FALLBACK_ZONE = "America/New_York"
# What a firm without a MessagingPolicy row gets (the model's defaults).
DEFAULT_QUIET_FROM = time(21, 0)
DEFAULT_QUIET_UNTIL = time(8, 0)


def _zone(name: str) -> ZoneInfo | None:
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


def pick_zone(*names: str) -> str:
    """The first of the names that is a real IANA zone, else America/New_York.

    Called with the client's zone, then the firm's: a misspelled zone never stops a
    message, it only falls back (and the log says which field to fix, not whose).
    """
    for name in names:
        if _zone(name) is not None:
            return name
        if name:
            log.warning("time zone %r is not an IANA zone name; falling back", name[:64])
    return FALLBACK_ZONE


def _window(policy: MessagingPolicy | None) -> tuple[time, time] | None:
    if policy is None:
        return DEFAULT_QUIET_FROM, DEFAULT_QUIET_UNTIL
    if not policy.quiet_hours or policy.quiet_from == policy.quiet_until:
        return None
    return policy.quiet_from, policy.quiet_until


def _wall(day: date, at: time, zone: ZoneInfo) -> datetime:
    """`at` on `day` in `zone`; a time skipped by spring-forward lands just after the gap."""
    local = datetime.combine(day, at, tzinfo=zone)
    # Round-trip through UTC: a wall time inside the gap comes back moved forward.
    return local.astimezone(UTC).astimezone(zone)


def held_until(now: datetime, time_zone: str, policy: MessagingPolicy | None) -> datetime | None:
    """None when a client message may go now; else when quiet hours end, in UTC.

    `policy` None means the firm never changed its settings: the defaults (21:00 to
    8:00) apply. An invalid `time_zone` falls back to America/New_York.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"quiet hours need a timezone-aware time, got {now!r}")
    window = _window(policy)
    if window is None:
        return None
    quiet_from, quiet_until = window
    zone = _zone(time_zone) or ZoneInfo(pick_zone(time_zone))
    local = now.astimezone(zone)
    wall = local.time().replace(tzinfo=None)
    if quiet_from < quiet_until:  # e.g. 01:00 to 06:00, within one day
        quiet = quiet_from <= wall < quiet_until
        release_day = local.date()
    else:  # crosses midnight, e.g. 21:00 to 08:00
        quiet = wall >= quiet_from or wall < quiet_until
        release_day = local.date() + timedelta(days=1) if wall >= quiet_from else local.date()
    if not quiet:
        return None
    release = _wall(release_day, quiet_until, zone).astimezone(UTC)
    return release if release > now else None


__all__ = ["FALLBACK_ZONE", "held_until", "pick_zone"]
