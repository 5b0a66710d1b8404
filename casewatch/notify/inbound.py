"""What a client writes to the firm on WhatsApp or SMS, and what casewatch makes of it.

A whole-message STOP word (data/replies.toml) withdraws the client's consent on
that channel at once; a START word gives it again; anything else reaches the
responsible attorney and paralegal in the app. A message from a number no client
has is kept (encrypted) and goes nowhere.

Clients' phones are encrypted, so there is no column to look a sender up by.
`clients_with_phone` keeps a keyed-hash index in memory instead (HMAC of the
number's digits under a key derived from keys/name_index.key, so the index holds
no number in clear), rebuilt from the clients when they have changed.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import threading
import time
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from importlib import resources
from typing import Literal

from django.db import IntegrityError, transaction
from django.db.models import Count, Max
from django.urls import reverse

from casewatch.accounts.models import Membership, Role
from casewatch.cases.models import Case, Client
from casewatch.cases.name_index import fold
from casewatch.config import name_index_key
from casewatch.notify.consent import has_consent, record_consent
from casewatch.notify.models import (
    Channel,
    InboundMessage,
    MessageKind,
    Notification,
    NotificationStatus,
    RecipientKind,
)

Meaning = Literal["opt_out", "opt_in", "reply", "unknown"]
# How long a built index is trusted for a number it does not know before it is rebuilt.
INDEX_TRUST_SECONDS = 60.0
_NOT_WORD = re.compile(r"[\W_]+")


# -- STOP and START ----------------------------------------------------------------------


@dataclass(frozen=True)
class Keywords:
    opt_out: frozenset[str]
    opt_in: frozenset[str]


def normalize_reply(text: str) -> str:
    """A reply as keywords are compared: no accents, case or punctuation ("¡Baja!" → "baja")."""
    return " ".join(_NOT_WORD.sub(" ", fold(text)).split())


def _forms(word: str) -> set[str]:
    normal = normalize_reply(word)
    return {normal, normal.replace(" ", "")}


@cache
def keywords() -> Keywords:
    source = resources.files("casewatch.notify").joinpath("data", "replies.toml")
    data: dict[str, list[str]] = tomllib.loads(source.read_text(encoding="utf-8"))
    return Keywords(
        opt_out=frozenset(form for word in data["opt_out"] for form in _forms(word)),
        opt_in=frozenset(form for word in data["opt_in"] for form in _forms(word)),
    )


def keyword_meaning(body: str) -> Literal["opt_out", "opt_in"] | None:
    """Whether the whole message is a STOP or a START word."""
    normal = normalize_reply(body)
    if not normal:
        return None
    if normal in keywords().opt_out or normal.replace(" ", "") in keywords().opt_out:
        return "opt_out"
    if normal in keywords().opt_in or normal.replace(" ", "") in keywords().opt_in:
        return "opt_in"
    return None


# -- finding the client by phone -----------------------------------------------------------


def phone_digits(number: str) -> str:
    """A number as the index compares it: its digits ("+1 (555) 010-0123" → 15550100123)."""
    return "".join(ch for ch in number if ch.isdigit())


@cache
def _index_key(master: bytes) -> bytes:
    return hmac.new(master, b"casewatch phone index", hashlib.sha256).digest()


def phone_token(number: str) -> str:
    """The keyed hash a phone number is indexed under; without the key it names no one."""
    return hmac.new(
        _index_key(name_index_key()), phone_digits(number).encode(), hashlib.sha256
    ).hexdigest()[:32]


@dataclass
class _PhoneIndex:
    tokens: dict[str, list[int]] = field(default_factory=dict)
    fingerprint: tuple[object, ...] = ()
    built_at: float = 0.0


_index = _PhoneIndex()
_index_lock = threading.Lock()


def _fingerprint() -> tuple[object, ...]:
    """Changes whenever a client is added, removed or edited."""
    seen = Client.objects.aggregate(count=Count("id"), top=Max("id"), edited=Max("updated_at"))
    return (seen["count"], seen["top"], seen["edited"])


def _rebuild(fingerprint: tuple[object, ...]) -> None:
    tokens: dict[str, list[int]] = {}
    for pk, personal in Client.objects.values_list("pk", "personal").iterator(chunk_size=2000):
        phone = str(personal.get("phone") or "")
        if phone_digits(phone):
            tokens.setdefault(phone_token(phone), []).append(pk)
    _index.tokens, _index.fingerprint, _index.built_at = tokens, fingerprint, time.monotonic()


def clients_with_phone(number: str) -> list[Client]:
    """Every client (of any firm) whose phone is `number`, oldest first."""
    digits = phone_digits(number)
    if not digits:
        return []
    token = phone_token(number)
    with _index_lock:
        fingerprint = _fingerprint()
        if fingerprint != _index.fingerprint:
            _rebuild(fingerprint)
        found = _matching(_index.tokens.get(token, []), digits)
        if not found and time.monotonic() - _index.built_at > INDEX_TRUST_SECONDS:
            # An edit the fingerprint cannot see (a bulk update): look again from scratch.
            _rebuild(fingerprint)
            found = _matching(_index.tokens.get(token, []), digits)
    return found


def _matching(ids: list[int], digits: str) -> list[Client]:
    """The indexed clients that still have this number (the index may be behind)."""
    if not ids:
        return []
    clients = Client.objects.filter(pk__in=ids).select_related("firm").order_by("pk")
    return [client for client in clients if phone_digits(client.phone) == digits]


# -- handling a message --------------------------------------------------------------------


def handle_inbound(
    channel: str, sender_e164: str, body: str, provider_message_id: str, at: datetime
) -> InboundMessage:
    """Keep one inbound message once and act on it; a repeat returns the first, unchanged."""
    existing = InboundMessage.objects.filter(
        channel=channel, provider_message_id=provider_message_id
    ).first()
    if existing is not None:
        return existing
    clients = clients_with_phone(sender_e164)
    meaning: Meaning = "unknown"
    if clients:
        meaning = _meaning(body, clients, channel)
    first = clients[0] if clients else None
    with transaction.atomic():
        try:
            with transaction.atomic():
                message = InboundMessage.objects.create(
                    firm=first.firm if first else None,
                    client=first,
                    channel=channel,
                    provider_message_id=provider_message_id,
                    sender=sender_e164,
                    body=body,
                    received_at=at,
                    meaning=meaning,
                )
        except IntegrityError:  # the same message, at the same moment, in another thread
            return InboundMessage.objects.get(
                channel=channel, provider_message_id=provider_message_id
            )
        if meaning in ("opt_out", "opt_in"):
            word = normalize_reply(body).upper()
            for client in clients:
                record_consent(
                    client,
                    channel,
                    granted=meaning == "opt_in",
                    at=at,
                    actor="client",
                    method="reply",
                    wording=f'replied "{word}"',
                    language=client.language or "en",
                )
        elif meaning == "reply":
            for client in clients:
                tell_staff(message, client, at)
    return message


def _meaning(body: str, clients: list[Client], channel: str) -> Meaning:
    """A STOP word always counts; a START word only where consent is not given already."""
    word = keyword_meaning(body)
    if word == "opt_out":
        return "opt_out"
    if word == "opt_in" and not all(has_consent(client, channel) for client in clients):
        return "opt_in"
    return "reply"


def responsible_staff(client: Client) -> list[Membership]:
    """Who hears a client's reply: the attorneys and paralegals of their open cases.

    Only people still in the client's firm; when there is no one, the firm's admins.
    """
    people: set[int] = set()
    for attorney, paralegal in Case.objects.filter(
        client=client, archived_at__isnull=True
    ).values_list("attorney_id", "paralegal_id"):
        people.update(pk for pk in (attorney, paralegal) if pk is not None)
    members = list(
        Membership.objects.filter(firm_id=client.firm_id, user_id__in=people, user__is_active=True)
        .select_related("user")
        .order_by("pk")
    )
    if members:
        return members
    return list(
        Membership.objects.filter(firm_id=client.firm_id, role=Role.ADMIN, user__is_active=True)
        .select_related("user")
        .order_by("pk")
    )


def reply_key(message: InboundMessage, user_id: int) -> str:
    """The idempotency key of a reply's in-app notice to one person (64 characters at most)."""
    raw = f"{message.channel}:{message.provider_message_id}:user:{user_id}"
    return "inbound:" + hashlib.sha256(raw.encode()).hexdigest()[:56]


def tell_staff(message: InboundMessage, client: Client, at: datetime) -> list[Notification]:
    """An in-app notice of the reply to each responsible person, once each.

    The notice names the message, not its words: the text stays encrypted in the
    InboundMessage, where the app shows it to those allowed to see it.
    """
    open_cases = list(
        Case.objects.filter(client=client, archived_at__isnull=True).values_list(
            "pk", "receipt_number"
        )
    )
    case_id, receipt = open_cases[0] if len(open_cases) == 1 else (None, None)
    notices = []
    for member in responsible_staff(client):
        notice, _ = Notification.objects.get_or_create(
            idempotency_key=reply_key(message, member.user_id),
            defaults={
                "firm_id": client.firm_id,
                "case_id": case_id,
                "kind": MessageKind.CLIENT_REPLY,
                "recipient_kind": RecipientKind.STAFF,
                "user_id": member.user_id,
                "client": client,
                "channel": Channel.IN_APP,
                "language": (member.language or "en").split("-")[0][:3],
                "message": _reply_message(message, client, case_id, receipt),
                "status": NotificationStatus.DELIVERED,
                "created_at": at,
                "sent_at": at,
                "delivered_at": at,
                "status_at": at,
            },
        )
        notices.append(notice)
    return notices


def _reply_message(
    message: InboundMessage, client: Client, case_id: int | None, receipt: str | None
) -> Mapping[str, object]:
    """The notice's message (notify.messages renders staff.client_reply); no reply text."""
    return {
        "key": MessageKind.CLIENT_REPLY.value,
        "params": {
            "receipt": receipt or "",
            "channel": message.channel,
            "case_url": reverse("case-detail", args=[case_id]) if case_id else "",
            "inbound_message_id": message.pk,
            "client_id": client.pk,
        },
    }
