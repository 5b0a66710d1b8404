"""Notifications' side of a chaos run: none missing, none twice, judged from both ends.

What the outbox says is checked against what the providers' stand-ins took
(WhatsApp and Twilio fakes, the SMTP stand-in): every message a provider
accepted carries its notification's idempotency key (WhatsApp's
`biz_opaque_callback_data`, the `key` in Twilio's StatusCallback, the e-mail's
Message-ID made from the key), so a key accepted twice is a duplicate, and a
notification the outbox calls sent that no provider holds is missing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

# Where a notification may rightly end: told (or stored in the app), or not sent for a
# reason the outbox shows (no consent).
TOLD = frozenset({"sent", "delivered", "read"})
SETTLED = TOLD | {"suppressed", "failed", "held"}
# Channels whose sends a stand-in sees.
PROVIDER_CHANNELS = ("whatsapp", "sms", "email")


@dataclass(frozen=True)
class Entry:
    """One outbox row, as the judgement needs it."""

    pk: int
    event: int | None
    channel: str
    status: str
    key: str
    provider_id: str
    fallback_of: int | None


@dataclass(frozen=True)
class Accepted:
    """One message a provider stand-in accepted: channel, idempotency key, its id, when."""

    channel: str
    key: str
    provider_id: str
    at: float


@dataclass
class NotificationVerdict:
    duplicate: int = 0
    missing: int = 0
    unsettled: int = 0
    email_resent_same_message_id: int = 0
    told_by_channel: dict[str, int] = field(default_factory=dict)
    examples: list[str] = field(default_factory=list)


def whatsapp_accepted(messages: Iterable[dict[str, object]]) -> list[Accepted]:
    """The WhatsApp fake's GET /_fake/messages, the accepted sends."""
    return [
        Accepted(
            "whatsapp",
            str(_idempotency(m).get("biz_opaque_callback_data", "")),
            str(m.get("id") or ""),
            _epoch(m),
        )
        for m in messages
        if m.get("accepted")
    ]


def sms_accepted(messages: Iterable[dict[str, object]]) -> list[Accepted]:
    """The Twilio fake's GET /_fake/messages, the accepted sends (key from StatusCallback)."""
    accepted = []
    for m in messages:
        if not m.get("accepted"):
            continue
        callback = str(_idempotency(m).get("status_callback", ""))
        key = parse_qs(urlsplit(callback).query).get("key", [""])[0]
        accepted.append(Accepted("sms", key, str(m.get("sid") or ""), _epoch(m)))
    return accepted


def _idempotency(message: dict[str, object]) -> dict[str, object]:
    value = message.get("idempotency")
    return value if isinstance(value, dict) else {}


def _epoch(message: dict[str, object]) -> float:
    from datetime import datetime

    return datetime.fromisoformat(str(message["received_at"])).timestamp()


def expected_keys(change_ids: Iterable[int]) -> dict[int, list[str]]:
    """The idempotency keys each status change calls for, by the router's own rules.

    Routing again (without saving) gives the same drafts as the first time, since
    nothing the rules read (consent, contacts, quiet hours) changes in the run.
    """
    from casewatch.cases.models import StatusEvent
    from casewatch.notify.route import Firms, status_change_notifications

    firms = Firms()
    keys: dict[int, list[str]] = {}
    events = StatusEvent.objects.select_related("case", "case__client").filter(pk__in=change_ids)
    for event in events:
        _, drafts = status_change_notifications(event, firms.get(event.firm_id), event.observed_at)
        keys[event.pk] = [d.idempotency_key for d in drafts]
    return keys


def judge_notifications(
    entries: Sequence[Entry],
    due: dict[int, list[str]],
    unrouted: int,
    accepted: Sequence[Accepted],
) -> NotificationVerdict:
    """Count what went wrong between the status changes, the outbox and the providers.

    Missing: a change never routed; a notification the rules call for (`due`: keys
    by change) that is not in the outbox; one still waiting, or failed for good with
    no fallback that told the person; one the outbox calls sent that no provider
    took. Duplicate: a WhatsApp or SMS notification (one idempotency key) a provider
    accepted more than once, or a send no notification's key names. An e-mail sent
    again after a crash carries the same Message-ID (mail programs show it once):
    counted apart.
    """
    verdict = NotificationVerdict(missing=unrouted)
    if unrouted:
        _example(verdict, f"{unrouted} status changes were never routed")
    in_outbox = {entry.key for entry in entries}
    for change, keys in sorted(due.items()):
        for key in keys:
            if key not in in_outbox:
                verdict.missing += 1
                _example(verdict, f"status event {change}: no notification {key}")
    fallbacks: dict[int, list[Entry]] = {}
    for entry in entries:
        if entry.fallback_of is not None:
            fallbacks.setdefault(entry.fallback_of, []).append(entry)

    def told_later(entry: Entry) -> bool:
        return any(f.status in TOLD or told_later(f) for f in fallbacks.get(entry.pk, []))

    taken = {(a.channel, a.provider_id) for a in accepted}
    for entry in entries:
        if entry.status not in SETTLED:
            verdict.unsettled += 1
            verdict.missing += 1
            _example(verdict, f"notification {entry.pk} ({entry.channel}) still {entry.status}")
        elif entry.status == "failed" and not told_later(entry):
            verdict.missing += 1
            _example(verdict, f"notification {entry.pk} ({entry.channel}) failed, no fallback")
        elif (
            entry.status in TOLD
            and entry.channel in PROVIDER_CHANNELS
            and (entry.channel, entry.provider_id) not in taken
        ):
            verdict.missing += 1
            _example(verdict, f"notification {entry.pk} is {entry.status}, no provider has it")
        if entry.status in TOLD:
            told = verdict.told_by_channel
            told[entry.channel] = told.get(entry.channel, 0) + 1
    for channel in ("whatsapp", "sms"):
        times_taken = Counter(a.key for a in accepted if a.channel == channel)
        for key, times in times_taken.items():
            extra = times - 1 if key in in_outbox else times
            if extra:
                verdict.duplicate += extra
                _example(verdict, f"{channel} accepted key {key!r} {times} times")
    ids = Counter(a.provider_id for a in accepted if a.channel == "email")
    verdict.email_resent_same_message_id = sum(times - 1 for times in ids.values())
    return verdict


def _example(verdict: NotificationVerdict, text: str) -> None:
    if len(verdict.examples) < 5:
        verdict.examples.append(text)


def channel_recovery(accepted: Sequence[Accepted], channel: str, ended_at: float) -> float | None:
    """When a provider next accepted a message on `channel` after an outage ending at `ended_at`."""
    later = [a.at for a in accepted if a.channel == channel and a.at >= ended_at]
    return min(later) if later else None
