"""What an audit entry's hash covers, byte for byte, and the MAC of the chain head.

An entry's `hash` is HMAC-SHA256, keyed with the installation's audit key, of the
canonical JSON of every other column of its row::

    {"action":…,"actor":…,"at":…,"details":…,"firm_id":…,"object_id":…,
     "object_type":…,"prev_hash":…,"seq":…}

Canonical JSON here means: keys sorted, no whitespace, non-ASCII characters as
themselves (`ensure_ascii=False`), encoded as UTF-8. `at` is written as ISO 8601 in
UTC with microseconds (`2026-03-02T15:00:00.000000Z`); both SQLite and PostgreSQL
keep microseconds, so the instant read back formats to the very same string.

`details` is the one column whose value is itself JSON. It is stored as the
canonical JSON *text* (a text column, not a JSON column) and that stored text is
spliced verbatim into the document above. So what is hashed is exactly what the
database holds: no backend gets to re-normalize it (a JSON column on PostgreSQL is
jsonb, which reorders keys, drops duplicate keys and rewrites numbers: 1e2 comes
back as 100), and a reader recomputes the hash from the stored bytes without
depending on how a driver decodes JSON. For an
honest row the result is simply the canonical JSON of the whole row, because the
canonical JSON of an object nested inside is the same text as on its own.

The key is what makes this tamper-evident rather than merely checksummed: whoever
edits the database file by hand can recompute a SHA-256, but not this HMAC.
The head's `mac` (HMAC of `"{seq}:{hash}"`) does the same for the chain's end, so
removing the last entries and rewinding the head is detected too.

Pure Python: no Django here, so the definition can be read (and checked) alone.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any

# The prev_hash of entry 1, and the hash of the empty chain.
GENESIS_HASH = "0" * 64


def _as_text(value: object) -> str:
    """Values JSON has no type for, as the text a reader would expect."""
    if isinstance(value, datetime) and value.tzinfo is not None:
        return format_at(value)
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, Decimal | uuid.UUID):
        return str(value)
    raise TypeError(f"audit details cannot hold a {type(value).__name__}")


# One encoder, built once: json.dumps with options builds a new one per call.
_ENCODER = json.JSONEncoder(
    sort_keys=True,
    separators=(",", ":"),
    ensure_ascii=False,
    allow_nan=False,
    default=_as_text,
)
# The string encoder that encoder uses (the C one when available), called directly.
_string = json.encoder.encode_basestring


def canonical_json(value: Any) -> str:
    """Sorted keys, no whitespace, Unicode as itself; dates, decimals and UUIDs as text.

    Not-a-number floats are refused: they are not JSON, and would not read back.
    """
    return _ENCODER.encode(value)


def format_at(at: datetime) -> str:
    """The moment as hashed: ISO 8601, UTC, always with microseconds."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("audit times must be timezone-aware")
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_bytes(
    *,
    seq: int,
    at: datetime,
    firm_id: int | None,
    actor: str,
    action: str,
    object_type: str,
    object_id: str,
    details_json: str,
    prev_hash: str,
) -> bytes:
    """The bytes an entry's hash covers: every column but `hash`, `details` verbatim."""
    return canonical_row(
        seq, format_at(at), firm_id, actor, action, object_type, object_id, details_json, prev_hash
    )


def canonical_row(
    seq: int,
    at_text: str,
    firm_id: int | None,
    actor: str,
    action: str,
    object_type: str,
    object_id: str,
    details_json: str,
    prev_hash: str,
) -> bytes:
    """`canonical_bytes` with `at` already formatted: the form the hot loops call.

    Written out member by member in key order, which is the text `canonical_json` gives
    for the whole row (a test holds the two together) at a fraction of the cost; an
    import writes 50,000 of these. Values of an unexpected type, which only a hand
    edit of the database can produce, go through the general encoder, so they can
    never come out as the text of a value of the right type.
    """
    return (
        f'{{"action":{_text(action)},"actor":{_text(actor)},"at":{_text(at_text)},'
        f'"details":{details_json},"firm_id":{_integer(firm_id)},'
        f'"object_id":{_text(object_id)},"object_type":{_text(object_type)},'
        f'"prev_hash":{_text(prev_hash)},"seq":{_integer(seq)}}}'
    ).encode()


def _text(value: object) -> str:
    return _string(value) if type(value) is str else _ENCODER.encode(value)


def _integer(value: object) -> str:
    if value is None:
        return "null"
    return str(value) if type(value) is int else _ENCODER.encode(value)


def entry_hash(key: bytes, canonical: bytes) -> str:
    return hmac.digest(key, canonical, "sha256").hex()


def head_mac(key: bytes, seq: int, hash_: str) -> str:
    return hmac.new(key, f"{seq}:{hash_}".encode(), hashlib.sha256).hexdigest()


def same(a: object, b: object) -> bool:
    """Constant-time comparison of two digests; a value that is not text matches nothing."""
    if not isinstance(a, str) or not isinstance(b, str):
        return False
    return hmac.compare_digest(a.encode(), b.encode())
