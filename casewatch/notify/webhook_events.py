"""The event types a firm's webhook endpoint can subscribe to (notify/data/webhook_events.toml).

Kept as data so the web app's choices, the router and docs/api.md name the same
types; a test checks that each type has a producer in the router.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from django.utils.translation import gettext_noop

from casewatch.notify.models import MessageKind

DATA = Path(__file__).parent / "data" / "webhook_events.toml"
# The table's labels, marked so that makemessages keeps them in the catalogs.
LABELS = (
    gettext_noop("Status changed"),
    gettext_noop("Deadline created"),
    gettext_noop("Message delivered"),
    gettext_noop("Message failed"),
    gettext_noop("USCIS outage"),
    gettext_noop("USCIS readable again"),
)


@dataclass(frozen=True)
class WebhookEvent:
    """One event type: its wire name, what produces it, when, and its label in the app."""

    type: str
    produced_by: str
    when: str
    label: str


@cache
def webhook_events() -> tuple[WebhookEvent, ...]:
    """Every event type, in the table's order; each must be a MessageKind."""
    with DATA.open("rb") as handle:
        rows = tomllib.load(handle)["event"]
    events = tuple(WebhookEvent(**row) for row in rows)
    unknown = {e.type for e in events} - set(MessageKind.values)
    if unknown:
        raise ValueError(f"{DATA.name}: not message kinds: {', '.join(sorted(unknown))}")
    unmarked = {e.label for e in events} - set(LABELS)
    if unmarked:
        raise ValueError(f"{DATA.name}: labels not in LABELS: {', '.join(sorted(unmarked))}")
    return events


def event_types() -> tuple[str, ...]:
    return tuple(e.type for e in webhook_events())


__all__ = ["WebhookEvent", "event_types", "webhook_events"]
