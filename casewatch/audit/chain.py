"""Appending to the audit chain and verifying it.

Callers write an entry in the same transaction as the change it records::

    with transaction.atomic():
        case.save()
        record("case.updated", object_type="case", object_id=case.pk,
               firm_id=case.firm_id, actor=f"user:{user.pk}", details={"status": …})

`record()` and `record_many()` join the caller's transaction (they open one only
when there is none), so a rolled-back change leaves no entry, and a committed one
always has its entry. `details` must hold only non-personal or masked values: the
log is kept forever and cannot be edited, so it cannot be made to forget.

Appends are serialized by locking the `AuditHead` row (`select_for_update`) on
PostgreSQL; on SQLite the project's transactions are IMMEDIATE, so writers are
serialized already. The lock is held until the caller's transaction ends, so
keep audited transactions short.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NoReturn

from django.db import connection, transaction
from django.utils import timezone

from casewatch.audit.hashing import (
    GENESIS_HASH,
    canonical_json,
    canonical_row,
    entry_hash,
    format_at,
    head_mac,
    same,
)
from casewatch.audit.models import AuditEntry, AuditHead
from casewatch.bulk import insert_rows
from casewatch.config import audit_key

HEAD_PK = 1
VERIFY_CHUNK = 2000
_TEXT_LIMITS = (("actor", 64), ("action", 64), ("object_type", 64), ("object_id", 128))


class AuditChainError(Exception):
    """The chain cannot be appended to: its head was changed behind the application's back.

    Appending anyway would seal the tampering under a fresh, valid head, so every
    audited write fails instead until someone looks (`casewatch audit verify`).
    """


@dataclass(frozen=True)
class PendingEntry:
    """One entry to append with `record_many`: the arguments of `record`, as data."""

    action: str
    object_type: str
    object_id: str | int
    firm_id: int | None = None
    actor: str = "system"
    details: Mapping[str, Any] | None = None
    at: datetime | None = None


@dataclass(frozen=True)
class ChainReport:
    """What `verify` found. `problem` is a sentence for people; None when intact."""

    ok: bool
    entries: int
    first_broken_seq: int | None = None
    problem: str | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "entries": self.entries,
            "first_broken_seq": self.first_broken_seq,
            "problem": self.problem,
        }


def staff_actor(user_pk: int | None) -> str:
    """How the chain names a staff member: by id, so no e-mail address is kept forever."""
    return f"user:{user_pk}"


def record(
    action: str,
    *,
    object_type: str,
    object_id: str | int,
    firm_id: int | None = None,
    actor: str = "system",
    details: Mapping[str, Any] | None = None,
    at: datetime | None = None,
) -> AuditEntry:
    """Append one entry to the chain, inside the caller's transaction, and return it.

    `at` defaults to now and must be timezone-aware. Raises ValueError for a value
    the log would not keep the same on every backend (empty or over-long text, a
    naive time, details that are not JSON), and `AuditChainError` when the chain's
    head was tampered with.
    """
    pending = PendingEntry(
        action=action,
        object_type=object_type,
        object_id=object_id,
        firm_id=firm_id,
        actor=actor,
        details=details,
        at=at,
    )
    (row,) = _append([pending])
    entry = AuditEntry(**dict(zip(_COLUMNS, row, strict=True)))
    entry._state.adding, entry._state.db = False, connection.alias  # As if read back.
    return entry


def record_many(entries: Sequence[PendingEntry]) -> int:
    """Append entries in the given order under one lock; return how many.

    Made for imports (50,000 entries in one go). It does not use `bulk_create`:
    Django compiles SQL for every 99 rows there (SQLite's 999-parameter limit) and
    prepares each value in Python, about 5 s for 50,000 rows on SQLite, ten times
    the cost of everything else together. Rows go in as plain tuples instead, by
    `executemany` on SQLite and COPY on PostgreSQL (see `_insert`); no model
    instances are made.
    """
    if not entries:
        return 0
    return len(_append(entries))


_Row = tuple[int, datetime, int | None, str, str, str, str, str, str, str]
# The columns in the order of `_Row`, of the INSERT, and of what `verify` reads.
_COLUMNS = [
    "seq",
    "at",
    "firm_id",
    "actor",
    "action",
    "object_type",
    "object_id",
    "details_json",
    "prev_hash",
    "hash",
]


def _append(pendings: Sequence[PendingEntry]) -> list[_Row]:
    # Whatever can be refused is refused before the head is locked.
    now = timezone.now()
    prepared = [_prepare(pending, now) for pending in pendings]
    key = audit_key()
    at_texts: dict[datetime, str] = {}
    with transaction.atomic():
        head = _locked_head(key)
        seq, prev_hash = head.seq, head.hash
        rows: list[_Row] = []
        for at, firm_id, actor, action, object_type, object_id, details_json in prepared:
            seq += 1
            at_text = at_texts.get(at) or at_texts.setdefault(at, format_at(at))
            canonical = canonical_row(
                seq,
                at_text,
                firm_id,
                actor,
                action,
                object_type,
                object_id,
                details_json,
                prev_hash,
            )
            digest = entry_hash(key, canonical)
            rows.append(
                (
                    seq,
                    at,
                    firm_id,
                    actor,
                    action,
                    object_type,
                    object_id,
                    details_json,
                    prev_hash,
                    digest,
                )
            )
            prev_hash = digest
        _insert(rows)
        head.seq, head.hash, head.mac = seq, prev_hash, head_mac(key, seq, prev_hash)
        head.save(update_fields=("seq", "hash", "mac"))
    return rows


def _prepare(
    pending: PendingEntry, now: datetime
) -> tuple[datetime, int | None, str, str, str, str, str]:
    """What one entry stores, apart from its place in the chain; or ValueError.

    Written for speed (an import prepares 50,000): one combined test, and the
    detailed reason only when it fails.
    """
    at = pending.at
    if at is None:
        at = now
    elif at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"audit times must be timezone-aware, got {at!r}")
    else:
        at = at.astimezone(UTC)
    firm_id = pending.firm_id
    if firm_id is not None and type(firm_id) is not int:
        raise ValueError(f"firm_id must be an integer or None, got {firm_id!r}")
    actor, action, object_type = pending.actor, pending.action, pending.object_type
    object_id = pending.object_id if type(pending.object_id) is str else str(pending.object_id)
    texts = (actor, action, object_type, object_id)
    if not (
        type(actor) is str
        and type(action) is str
        and type(object_type) is str
        and 0 < len(actor) <= 64
        and 0 < len(action) <= 64
        and 0 < len(object_type) <= 64
        and 0 < len(object_id) <= 128
        and "\x00" not in f"{actor}{action}{object_type}{object_id}"
    ):
        _refuse_texts(texts)
    details_json = canonical_json(dict(pending.details or {}))
    details_json.encode()  # Refuses lone surrogates here rather than at the database.
    return at, firm_id, actor, action, object_type, object_id, details_json


def _refuse_texts(texts: tuple[object, ...]) -> NoReturn:
    for (name, limit), text in zip(_TEXT_LIMITS, texts, strict=True):
        # The same rules on every backend: SQLite would store what PostgreSQL refuses.
        if not isinstance(text, str) or not 0 < len(text) <= limit or "\x00" in text:
            raise ValueError(f"audit {name} must be 1 to {limit} characters, got {text!r}")
    raise AssertionError("unreachable")


def _insert(rows: list[_Row]) -> None:
    """Insert the rows on the caller's connection, the fastest way each backend offers.

    (50,000 rows on PostgreSQL: COPY 0.6 s, executemany 2.4 s, 1,000-row INSERTs 4.6 s.)
    """
    meta = AuditEntry._meta
    column_of = {field.attname: str(field.column) for field in meta.concrete_fields}
    stored: Sequence[Sequence[Any]] = rows
    if connection.vendor != "postgresql":
        adapt = connection.ops.adapt_datetimefield_value
        stored_at: dict[datetime, Any] = {}
        stored = [
            (row[0], stored_at.get(row[1]) or stored_at.setdefault(row[1], adapt(row[1])), *row[2:])
            for row in rows
        ]
    insert_rows(meta.db_table, [column_of[name] for name in _COLUMNS], stored)


def _locked_head(key: bytes) -> AuditHead:
    """The head row, locked until the transaction ends; created with the first entry."""
    head, created = AuditHead.objects.select_for_update().get_or_create(
        pk=HEAD_PK,
        defaults={"seq": 0, "hash": GENESIS_HASH, "mac": head_mac(key, 0, GENESIS_HASH)},
    )
    if created and AuditEntry.objects.exists():
        raise AuditChainError(
            "the audit chain head is missing although entries exist; run `casewatch audit verify`"
        )
    if not same(head.mac, head_mac(key, head.seq, head.hash)):
        raise AuditChainError(
            "the audit chain head does not verify with the audit key (it was altered, "
            "or keys/audit.key is not the key that wrote the chain); "
            "run `casewatch audit verify`"
        )
    return head


# --- verifying -------------------------------------------------------------------

# What a value stored by hand can make a database converter (SQLite's for `at`) raise.
_UNREADABLE = (ValueError, TypeError, AttributeError, OverflowError)


def verify() -> ChainReport:
    """Check every entry and the head; report the first broken link in chain order.

    Entries are streamed in seq order, `VERIFY_CHUNK` at a time, so a chain of
    millions never sits in memory. Each entry must sit at the next position, carry
    the hash of its own contents under the audit key, and name the previous entry's
    hash; the head must carry a valid MAC and name an entry that exists. So an
    entry altered, inserted or removed anywhere is found without the key, and so
    is the end of the chain cut off.

    The head is read before the entries, so entries appended while this runs only
    make the chain longer than the head says, which is allowed: each of them is
    still checked on its own. It follows that an entry appended after the head by
    someone holding the key is indistinguishable from a legitimate one; so is
    anything else done with the key. Two things no chain kept in one database can
    tell: that the whole log was emptied (entries and head; that looks like a
    fresh installation), and that the end was cut off and an older, genuine head
    row put back. Copies of the head kept elsewhere would catch both.
    """
    key = audit_key()
    head = _read_head()
    entries = 0
    last_seq = 0
    prev_hash = GENESIS_HASH
    hash_at_head: str | None = None
    broken: tuple[int, str] | None = None
    # Entries written together share their time: format each time once.
    formatted = functools.lru_cache(maxsize=64)(format_at)
    rows: Iterator[tuple[Any, ...]] = (
        AuditEntry.objects.order_by("seq").values_list(*_COLUMNS).iterator(chunk_size=VERIFY_CHUNK)
    )
    try:
        for row in rows:
            entries += 1
            if broken is not None:
                continue  # Only counting now: past the first break, nothing follows from it.
            broken = _check_entry(key, row, last_seq, prev_hash, head, formatted)
            last_seq, prev_hash = row[0], row[-1]
            if head is not None and last_seq == head.seq:
                hash_at_head = prev_hash
    except _UNREADABLE as exc:
        entries = AuditEntry.objects.count()
        if broken is None:
            which = f"the entry after entry {last_seq}" if last_seq else "the first entry"
            broken = (
                last_seq + 1,
                f"{which} cannot be read ({type(exc).__name__}): "
                "a value in it was replaced by one its column cannot hold",
            )
    if broken is None and entries and head is None:
        head = _read_head()  # The first append may have committed after the head was read.
    if broken is None:
        broken = _check_head(key, head, entries, last_seq, hash_at_head)
    if broken is None:
        return ChainReport(ok=True, entries=entries)
    return ChainReport(ok=False, entries=entries, first_broken_seq=broken[0], problem=broken[1])


def _read_head() -> AuditHead | None:
    return AuditHead.objects.filter(pk=HEAD_PK).first()


def _check_entry(
    key: bytes,
    row: tuple[Any, ...],
    last_seq: int,
    prev_hash: str,
    head: AuditHead | None,
    format_time: Callable[[datetime], str] = format_at,
) -> tuple[int, str] | None:
    """The first thing wrong with one entry, given the one before it; None when sound."""
    seq, at, firm_id, actor, action, object_type, object_id, details_json, prev, digest = row
    expected = last_seq + 1
    if not isinstance(seq, int) or seq < expected:
        return seq if isinstance(seq, int) else expected, (
            f"an entry numbered {seq!r} does not belong in the chain, which starts at 1 "
            "and counts up by one"
        )
    if seq > expected:
        missing = (
            f"entry {expected} is missing"
            if seq == expected + 1
            else f"entries {expected} to {seq - 1} are missing"
        )
        where = (
            f"the chain starts at {seq}"
            if last_seq == 0
            else f"the chain jumps from {last_seq} to {seq}"
        )
        return expected, f"{missing}: {where}"
    try:
        canonical = canonical_row(
            seq, format_time(at), firm_id, actor, action, object_type, object_id, details_json, prev
        )
        genuine = same(digest, entry_hash(key, canonical))
    except _UNREADABLE:
        genuine = False
    if not genuine:
        problem = f"entry {seq} was altered: its hash does not match its contents"
        if seq == 1 and head is not None and not _head_is_sealed(key, head):
            problem += (
                ", and the chain head does not verify either: if nothing was altered, "
                "keys/audit.key in the data directory is not the key that wrote this chain"
            )
        return seq, problem
    if not same(prev, prev_hash):
        if seq == 1:
            return seq, "entry 1 does not start the chain: its prev_hash is not 64 zeros"
        return seq, (
            f"entry {seq} does not follow entry {last_seq}: "
            f"its prev_hash is not the hash of entry {last_seq}"
        )
    return None


def _head_is_sealed(key: bytes, head: AuditHead) -> bool:
    try:
        return same(head.mac, head_mac(key, head.seq, head.hash))
    except _UNREADABLE:
        return False


def _check_head(
    key: bytes, head: AuditHead | None, entries: int, last_seq: int, hash_at_head: str | None
) -> tuple[int, str] | None:
    """Whether the head seals the end of an otherwise sound chain; None when it does."""
    unknown_end = (
        f"entries 1 to {last_seq} verify, but whether any after them were removed cannot be told"
    )
    if head is None:
        if entries == 0:
            return None  # Nothing was ever recorded.
        return last_seq + 1, f"the chain head is missing: {unknown_end}"
    if not _head_is_sealed(key, head):
        if entries == 0:
            return 1, "the chain head was altered, and the chain is empty"
        return last_seq + 1, f"the chain head was altered: {unknown_end}"
    if head.seq > last_seq:
        removed = head.seq - last_seq
        what = "the last entry was" if removed == 1 else f"the last {removed} entries were"
        end = "the chain is empty" if last_seq == 0 else f"the chain ends at {last_seq}"
        return last_seq + 1, f"{what} removed: the head records entry {head.seq} but {end}"
    if head.seq > 0 and (hash_at_head is None or not same(hash_at_head, head.hash)):
        return head.seq, (
            f"the chain head was altered: it seals an entry {head.seq} other than the one "
            "in the chain"
        )
    return None
