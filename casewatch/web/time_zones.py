"""Time zones of the staff app: which zone a member sees dates in, and the zones offered.

A member's own zone (Membership.time_zone) wins; without one, the firm's
(Firm.time_zone). Names are IANA's, as zoneinfo knows them; a name zoneinfo cannot
load (a zone removed from tzdata since it was chosen) falls back to UTC rather than
breaking every page.
"""

from __future__ import annotations

import functools
import zoneinfo
from collections.abc import Mapping
from datetime import UTC, datetime, tzinfo
from typing import Any

from django import forms
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

from casewatch.accounts.models import Firm, Membership

# The zones a US immigration firm and its clients live in, offered before the full
# list: the US's own, then Latin America's from north to south.
COMMON_ZONES: Mapping[str, Promise] = {
    "America/New_York": _("Eastern time (New York, Miami)"),
    "America/Chicago": _("Central time (Chicago, Houston)"),
    "America/Denver": _("Mountain time (Denver)"),
    "America/Phoenix": _("Arizona (Phoenix)"),
    "America/Los_Angeles": _("Pacific time (Los Angeles, San Francisco)"),
    "America/Anchorage": _("Alaska (Anchorage)"),
    "Pacific/Honolulu": _("Hawaii (Honolulu)"),
    "America/Puerto_Rico": _("Puerto Rico (San Juan)"),
    "America/Mexico_City": _("Mexico (Mexico City)"),
    "America/Tijuana": _("Mexico (Tijuana)"),
    "America/Guatemala": _("Guatemala"),
    "America/El_Salvador": _("El Salvador"),
    "America/Tegucigalpa": _("Honduras"),
    "America/Managua": _("Nicaragua"),
    "America/Costa_Rica": _("Costa Rica"),
    "America/Panama": _("Panama"),
    "America/Havana": _("Cuba"),
    "America/Santo_Domingo": _("Dominican Republic"),
    "America/Port-au-Prince": _("Haiti"),
    "America/Bogota": _("Colombia"),
    "America/Caracas": _("Venezuela"),
    "America/Guayaquil": _("Ecuador"),
    "America/Lima": _("Peru"),
    "America/La_Paz": _("Bolivia"),
    "America/Santiago": _("Chile"),
    "America/Argentina/Buenos_Aires": _("Argentina"),
    "America/Asuncion": _("Paraguay"),
    "America/Montevideo": _("Uruguay"),
    "America/Sao_Paulo": _("Brazil (São Paulo)"),
    "UTC": _("Coordinated Universal Time (UTC)"),
}

# Names in tzdata that are not places: a placeholder zone and the machine's own setting.
_NOT_PLACES = frozenset({"Factory", "localtime", "posixrules"})


@functools.cache
def known_zones() -> frozenset[str]:
    """Every IANA name a member or firm may choose."""
    return frozenset(zoneinfo.available_timezones()) - _NOT_PLACES


def is_zone(name: str) -> bool:
    return name in known_zones()


@functools.lru_cache(maxsize=256)
def _zone(name: str) -> tzinfo:
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return UTC


def zone_named(name: str) -> tzinfo:
    """The zone of this IANA name; UTC for a name tzdata does not (or no longer) know."""
    return _zone(name) if name else UTC


def firm_zone(firm: Firm) -> tzinfo:
    return zone_named(firm.time_zone)


def member_zone(membership: Membership) -> tzinfo:
    """The zone this member sees dates in: their own, else their firm's."""
    return zone_named(membership.time_zone or membership.firm.time_zone)


def abbreviation(moment: datetime, zone: tzinfo) -> str:
    """What people call the zone at that moment ("PST", "PDT", "-05" where tzdata has no
    letters), so that a time shown alone says which clock it is on."""
    return moment.astimezone(zone).tzname() or ""


def zone_choices() -> list[tuple[object, object]]:
    """The time zone select: the common zones first, under their names in the page's
    language, then every IANA name."""
    common = [(name, label) for name, label in COMMON_ZONES.items() if is_zone(name)]
    every = [(name, name) for name in sorted(known_zones())]
    return [(_("Common time zones"), common), (_("All time zones"), every)]


class ZoneSelect(forms.Select):
    """The time zone select; an IANA name shown as itself is marked as no language
    (lang="zxx"), so that it is not read out, or checked, as English."""

    def create_option(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        option: dict[str, Any] = super().create_option(*args, **kwargs)
        if option["value"] and str(option["label"]) == str(option["value"]):
            option["attrs"]["lang"] = "zxx"
        return option
