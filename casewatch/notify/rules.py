"""Who hears about what: the routing rules, read from data and from the firm's own rows.

The defaults live in data/routing.toml; a firm's RoutingRule rows are tried
before them, so a firm overrides a default by writing a rule that matches first.
This module only reads, checks and matches rules; the router turns the staff
named in a rule into people (casewatch/notify/route.py).
"""

from __future__ import annotations

import logging
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources

from casewatch.accounts.models import Role
from casewatch.core.statuses import CATEGORIES, URGENCIES, default_catalog
from casewatch.notify.models import STAFF_CHANNELS, MessageKind, RoutingRule

log = logging.getLogger(__name__)

RESPONSIBLE_ATTORNEY = "responsible_attorney"
RESPONSIBLE_PARALEGAL = "responsible_paralegal"
# Who a rule may name besides member ids: the case's own people, or a role.
STAFF_TOKENS = frozenset({RESPONSIBLE_ATTORNEY, RESPONSIBLE_PARALEGAL, *Role.values})
# Kinds a rule may be written for; escalations and digests follow their own rules.
RULE_KINDS = frozenset(
    {
        MessageKind.STATUS_CHANGE,
        MessageKind.USCIS_OUTAGE,
        MessageKind.USCIS_RECOVERED,
        MessageKind.RECEIPT_PENDING,
        MessageKind.CARD_DELIVERY_CHECK,
    }
)
RULE_FIELDS = frozenset(
    {"kind", "category", "urgency", "staff", "staff_channels", "tell_client", "escalate_to"}
)

# A person a rule names: a token from STAFF_TOKENS, or a Membership id.
StaffRef = str | int


class RoutingError(ValueError):
    """A rule in data/routing.toml breaks the rules for rules; raised when loading it."""


@dataclass(frozen=True)
class Rule:
    """One routing rule, from the defaults or from a firm's own rows."""

    origin: str  # "routing.toml rule 7" or "firm rule 12": where to look when it surprises
    kind: str = MessageKind.STATUS_CHANGE
    category: str = ""
    urgency: str = ""
    staff: tuple[StaffRef, ...] = ()
    staff_channels: tuple[str, ...] = ()
    tell_client: bool = False
    escalate_to: tuple[StaffRef, ...] = ()

    def matches(self, kind: str, category: str = "", urgency: str = "") -> bool:
        return (
            self.kind == kind and self.category in ("", category) and self.urgency in ("", urgency)
        )

    @property
    def records_only(self) -> bool:
        """Nobody hears: the change is kept in the case's history and nothing else."""
        return not self.staff and not self.staff_channels and not self.tell_client


@dataclass(frozen=True)
class RoutingDefaults:
    """Everything data/routing.toml says."""

    rules: tuple[Rule, ...]
    # Who hears when a rule's staff resolve to nobody.
    when_nobody: tuple[StaffRef, ...]
    # Statuses meaning "in the mail to the client", for the card-delivery check.
    card_mailed_statuses: frozenset[str]


@dataclass(frozen=True)
class Problem:
    """Something wrong in one rule: where, what, and what was kept instead."""

    origin: str
    message: str

    def __str__(self) -> str:
        return f"{self.origin}: {self.message}"


# --- checking --------------------------------------------------------------------------


def _text(value: object, field: str, allowed: Iterable[str], problems: list[str]) -> str:
    if value is None or value == "":
        return ""
    allowed = sorted(allowed)
    if not isinstance(value, str) or value not in allowed:
        problems.append(f"{field} {value!r} is not one of {', '.join(allowed)}")
        return ""
    return value


def _refs(value: object, field: str, problems: list[str]) -> tuple[StaffRef, ...]:
    if value is None:
        return ()
    if not isinstance(value, list | tuple):
        problems.append(f"{field} must be a list, not {value!r}")
        return ()
    kept: list[StaffRef] = []
    for item in value:
        ref: StaffRef | None = None
        if isinstance(item, bool):
            ref = None
        elif isinstance(item, int) and item > 0:
            ref = item
        elif isinstance(item, str) and item.isdigit() and int(item) > 0:
            ref = int(item)
        elif isinstance(item, str) and item in STAFF_TOKENS:
            ref = item
        if ref is None:
            problems.append(
                f"{field}: {item!r} is neither a member id nor one of "
                f"{', '.join(sorted(STAFF_TOKENS))}; left out"
            )
        elif ref not in kept:
            kept.append(ref)
    return tuple(kept)


def _channels(value: object, problems: list[str]) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list | tuple):
        problems.append(f"staff_channels must be a list, not {value!r}")
        return ()
    kept: list[str] = []
    for item in value:
        if item not in STAFF_CHANNELS:
            problems.append(
                f"staff_channels: {item!r} is not one of {', '.join(STAFF_CHANNELS)}; left out"
            )
        elif item not in kept:
            kept.append(str(item))
    return tuple(kept)


def build_rule(origin: str, fields: Mapping[str, object]) -> tuple[Rule, list[Problem]]:
    """A Rule from raw fields, keeping what is valid; the problems say what was left out.

    An invalid kind, category or urgency would widen the rule to match anything, so
    such a rule matches nothing instead (its kind becomes empty, which no event has).
    """
    problems: list[str] = []
    unknown = sorted(set(fields) - RULE_FIELDS)
    if unknown:
        problems.append(f"unknown fields {', '.join(unknown)}; ignored")
    narrowing: list[str] = []
    kind = _text(fields.get("kind"), "kind", RULE_KINDS, narrowing) or MessageKind.STATUS_CHANGE
    category = _text(fields.get("category"), "category", CATEGORIES, narrowing)
    urgency = _text(fields.get("urgency"), "urgency", URGENCIES, narrowing)
    if narrowing:
        problems.extend(f"{p}; the rule matches nothing" for p in narrowing)
        kind = ""
    tell_client = fields.get("tell_client", False)
    if not isinstance(tell_client, bool):
        problems.append(f"tell_client must be true or false, not {tell_client!r}; false kept")
        tell_client = False
    if tell_client and kind not in ("", MessageKind.STATUS_CHANGE):
        problems.append(f"only status changes are told to clients, not {kind}; false kept")
        tell_client = False
    rule = Rule(
        origin=origin,
        kind=kind,
        category=category,
        urgency=urgency,
        staff=_refs(fields.get("staff"), "staff", problems),
        staff_channels=_channels(fields.get("staff_channels"), problems),
        tell_client=tell_client,
        escalate_to=_refs(fields.get("escalate_to"), "escalate_to", problems),
    )
    return rule, [Problem(origin, p) for p in problems]


def load_defaults(data: Mapping[str, object]) -> RoutingDefaults:
    """Check routing.toml's contents and build the defaults; RoutingError names the problem.

    The defaults are the product's own data: anything wrong in them is a bug, so
    every problem is an error here, where a firm's rule only loses its bad part.
    """
    unknown = sorted(set(data) - {"rule", "when_nobody", "follow_ups"})
    if unknown:
        raise RoutingError(f"routing.toml: unknown top-level keys {', '.join(unknown)}")
    entries = data.get("rule", [])
    if not isinstance(entries, list) or not entries:
        raise RoutingError("routing.toml: [[rule]] entries are missing")
    rules: list[Rule] = []
    for number, entry in enumerate(entries, start=1):
        if not isinstance(entry, dict):
            raise RoutingError(f"routing.toml rule {number}: not a table")
        rule, problems = build_rule(f"routing.toml rule {number}", entry)
        if problems:
            raise RoutingError("; ".join(str(p) for p in problems))
        rules.append(rule)
    nobody_problems: list[str] = []
    when_nobody = _refs(data.get("when_nobody", []), "when_nobody", nobody_problems)
    if nobody_problems or any(ref not in Role.values for ref in when_nobody):
        raise RoutingError("routing.toml: when_nobody lists roles only")
    follow_ups = data.get("follow_ups", {})
    if not isinstance(follow_ups, dict):
        raise RoutingError("routing.toml: [follow_ups] must be a table")
    mailed = follow_ups.get("card_mailed_statuses", [])
    statuses = default_catalog().statuses
    if not isinstance(mailed, list) or not mailed:
        raise RoutingError("routing.toml: follow_ups.card_mailed_statuses must list statuses")
    strangers = [key for key in mailed if key not in statuses]
    if strangers:
        raise RoutingError(
            f"routing.toml: follow_ups.card_mailed_statuses names {strangers}, "
            "which are not catalog statuses (core/data/statuses.toml)"
        )
    return RoutingDefaults(
        rules=tuple(rules),
        when_nobody=when_nobody,
        card_mailed_statuses=frozenset(mailed),
    )


@cache
def defaults() -> RoutingDefaults:
    """The default rules shipped in data/routing.toml, read and checked once."""
    text = resources.files("casewatch.notify").joinpath("data", "routing.toml").read_text("utf-8")
    return load_defaults(tomllib.loads(text))


# --- a firm's rules ---------------------------------------------------------------------


def firm_rule(row: RoutingRule) -> Rule:
    """A firm's RoutingRule row as a Rule; a bad part is left out and logged, never fatal.

    Routing must go on for every other change when one rule has a typo, so the
    rule keeps what is valid, and the log line says what was dropped.
    """
    fields: dict[str, object] = {
        "category": row.category,
        "urgency": row.urgency,
        "staff": row.staff,
        "staff_channels": row.staff_channels,
        "tell_client": row.tell_client,
        "escalate_to": row.escalate_to,
    }
    if row.kind:
        fields["kind"] = row.kind
    rule, problems = build_rule(f"firm rule {row.pk}", fields)
    for problem in problems:
        log.warning("routing rule of firm %s: %s", row.firm_id, problem)
    return rule


def rules_for(firm_id: int) -> tuple[Rule, ...]:
    """The firm's own rules by position, then the defaults: the order they are tried in."""
    own = RoutingRule.objects.filter(firm_id=firm_id).order_by("position", "pk")
    return (*(firm_rule(row) for row in own), *defaults().rules)


def matching_rule(
    rules: Sequence[Rule], kind: str, category: str = "", urgency: str = ""
) -> Rule | None:
    """The first rule that matches, or None: then nobody hears (recorded only)."""
    for rule in rules:
        if rule.matches(kind, category, urgency):
            return rule
    return None


__all__ = [
    "RESPONSIBLE_ATTORNEY",
    "RESPONSIBLE_PARALEGAL",
    "STAFF_TOKENS",
    "Problem",
    "RoutingDefaults",
    "RoutingError",
    "Rule",
    "StaffRef",
    "build_rule",
    "defaults",
    "firm_rule",
    "load_defaults",
    "matching_rule",
    "rules_for",
]
