"""The consent ledger: nothing goes to a client on a channel without consent on it.

Consent is the latest ledger entry for the client and channel; entries are only
ever appended, each in the audit chain, so a firm can show when and how a client
agreed or withdrew.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from django.db import transaction
from django.db.models import Max

from casewatch.audit.chain import record
from casewatch.cases.models import Client
from casewatch.notify.models import CLIENT_CHANNELS, ConsentRecord


def record_consent(
    client: Client,
    channel: str,
    *,
    granted: bool,
    at: datetime,
    actor: str,
    method: str,
    wording: str = "",
    language: str = "",
) -> ConsentRecord:
    """Append one entry (given or withdrawn) and its audit entry, in one transaction."""
    if channel not in CLIENT_CHANNELS:
        raise ValueError(f"clients give consent per channel: {', '.join(CLIENT_CHANNELS)}")
    with transaction.atomic():
        entry = ConsentRecord.objects.create(
            firm_id=client.firm_id,
            client=client,
            channel=channel,
            granted=granted,
            recorded_at=at,
            actor=actor,
            method=method,
            wording=wording,
            language=language or client.language or "en",
        )
        record(
            "consent.granted" if granted else "consent.withdrawn",
            actor=actor,
            object_type="client",
            object_id=client.pk,
            firm_id=client.firm_id,
            details={"channel": channel, "method": method, "entry": entry.pk},
            at=at,
        )
    return entry


def has_consent(client: Client, channel: str) -> bool:
    """Whether the client's latest word on this channel is yes."""
    latest = (
        ConsentRecord.objects.filter(client=client, channel=channel)
        .order_by("-recorded_at", "-pk")
        .values_list("granted", flat=True)
        .first()
    )
    return bool(latest)


def consented_channels(clients: Iterable[int]) -> dict[int, set[str]]:
    """For many clients at once: the channels each currently consents to."""
    ids = list(clients)
    latest = (
        ConsentRecord.objects.filter(client_id__in=ids)
        .values("client_id", "channel")
        .annotate(last=Max("pk"))
        .values_list("last", flat=True)
    )
    result: dict[int, set[str]] = {pk: set() for pk in ids}
    for client_id, channel in ConsentRecord.objects.filter(
        pk__in=list(latest), granted=True
    ).values_list("client_id", "channel"):
        result[client_id].add(channel)
    return result
