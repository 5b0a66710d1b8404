"""The audit chain: what the application writes verifies, and no edit behind its back does.

"Behind its back" means raw SQL on the database (or the sqlite3 module on the file):
whoever does that has the database but not the audit key in the data directory.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from django.db import connection, transaction

from casewatch.audit import chain
from casewatch.audit.chain import (
    AuditChainError,
    ChainReport,
    PendingEntry,
    record,
    record_many,
    verify,
)
from casewatch.audit.hashing import GENESIS_HASH, canonical_bytes, entry_hash, head_mac
from casewatch.audit.models import AppendOnlyError, AuditEntry, AuditHead
from casewatch.config import audit_key

WRONG_KEY = b"0123456789abcdef" * 4
ENTRY_TABLE = AuditEntry._meta.db_table
HEAD_TABLE = AuditHead._meta.db_table


def write_chain(count: int = 5) -> list[AuditEntry]:
    """`count` entries as callers write them: varied fields, some Unicode, one firm-less."""
    entries = []
    for n in range(1, count + 1):
        entries.append(
            record(
                "case.created" if n % 2 else "status_event.recorded",
                object_type="case",
                object_id=1000 + n,
                firm_id=None if n == 2 else 7,
                actor="import" if n == 1 else f"user:{n}",
                details={"status": "received", "n": n, "note": "café ✓ 受理"},
            )
        )
    return entries


def sql(statement: str, params: list[Any] | None = None) -> None:
    with connection.cursor() as cursor:
        cursor.execute(statement, params or [])


def q(name: str) -> str:
    return connection.ops.quote_name(name)


def update_entry(seq: int, column: str, value: Any) -> None:
    sql(f"UPDATE {q(ENTRY_TABLE)} SET {q(column)} = %s WHERE {q('seq')} = %s", [value, seq])


def delete_entry(seq: int) -> None:
    sql(f"DELETE FROM {q(ENTRY_TABLE)} WHERE {q('seq')} = %s", [seq])


def stored_at(at: datetime) -> Any:
    """A time as the backend stores it, for raw SQL."""
    return connection.ops.adapt_datetimefield_value(at)


def insert_forged(seq: int, prev_hash: str, key: bytes) -> None:
    """A plausible row, hashed as the application would, but with the given key."""
    values: dict[str, Any] = {
        "seq": seq,
        "at": datetime(2026, 3, 2, 15, 0, tzinfo=UTC),
        "firm_id": 7,
        "actor": "user:3",
        "action": "case.updated",
        "object_type": "case",
        "object_id": "1003",
        "details_json": '{"status":"approved"}',
        "prev_hash": prev_hash,
    }
    digest = entry_hash(key, canonical_bytes(**values))
    columns = [*values, "hash"]
    params = [*values.values(), digest]
    params[1] = stored_at(params[1])
    names = ", ".join(q("details" if c == "details_json" else c) for c in columns)
    marks = ", ".join(["%s"] * len(columns))
    sql(f"INSERT INTO {q(ENTRY_TABLE)} ({names}) VALUES ({marks})", params)


def shift_entries_from(seq: int, by: int = 1) -> None:
    """Renumber entries seq and later, last first (seq is unique at every step)."""
    last = AuditEntry.objects.order_by("-seq").values_list("seq", flat=True).first() or 0
    for n in range(last, seq - 1, -1):
        update_entry(n, "seq", n + by)


def broken(report: ChainReport) -> tuple[bool, int | None]:
    return report.ok, report.first_broken_seq


# --- what the application writes -----------------------------------------------------


@pytest.mark.django_db
def test_an_empty_chain_verifies() -> None:
    assert verify() == ChainReport(ok=True, entries=0, first_broken_seq=None, problem=None)


@pytest.mark.django_db
def test_an_honest_chain_verifies() -> None:
    write_chain(5)

    assert verify() == ChainReport(ok=True, entries=5, first_broken_seq=None, problem=None)


@pytest.mark.django_db
def test_entries_are_numbered_from_one_and_each_names_the_hash_of_the_one_before() -> None:
    entries = write_chain(4)

    assert [e.seq for e in AuditEntry.objects.all()] == [1, 2, 3, 4]
    assert entries[0].prev_hash == GENESIS_HASH == "0" * 64
    for before, after in itertools.pairwise(entries):
        assert after.prev_hash == before.hash


@pytest.mark.django_db
def test_an_entry_hash_is_the_keyed_hmac_of_the_canonical_json_of_every_other_column() -> None:
    write_chain(2)
    entry = AuditEntry.objects.get(seq=2)

    document = {
        "seq": 2,
        "at": entry.at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "firm_id": None,
        "actor": "user:2",
        "action": "status_event.recorded",
        "object_type": "case",
        "object_id": "1002",
        "details": {"status": "received", "n": 2, "note": "café ✓ 受理"},
        "prev_hash": AuditEntry.objects.get(seq=1).hash,
    }
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    expected = hmac.new(audit_key(), canonical.encode("utf-8"), hashlib.sha256).hexdigest()
    assert entry.hash == expected


@pytest.mark.django_db
def test_the_head_seals_the_last_entry_with_the_key() -> None:
    last = write_chain(3)[-1]
    head = AuditHead.objects.get()

    assert (head.pk, head.seq, head.hash) == (1, 3, last.hash)
    expected = hmac.new(audit_key(), f"3:{last.hash}".encode(), hashlib.sha256).hexdigest()
    assert head.mac == expected


@pytest.mark.django_db
def test_details_are_stored_as_canonical_json_text_and_read_back_as_given() -> None:
    record("case.updated", object_type="case", object_id=1, details={"z": 1, "a": ["ü", None]})
    entry = AuditEntry.objects.get()

    assert entry.details == {"z": 1, "a": ["ü", None]}
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {q('details')} FROM {q(ENTRY_TABLE)}")
        assert cursor.fetchone()[0] == '{"a":["ü",null],"z":1}'


@pytest.mark.django_db
@pytest.mark.parametrize("microsecond", [123456, 0])
def test_a_given_time_is_kept_to_the_microsecond_and_still_verifies(microsecond: int) -> None:
    at = datetime(2026, 3, 2, 10, 30, 15, microsecond, tzinfo=timezone(timedelta(hours=-5)))
    record("deadline.created", object_type="deadline", object_id=9, at=at)

    assert AuditEntry.objects.get().at == at
    assert verify().ok


@pytest.mark.django_db
def test_an_object_id_given_as_a_number_is_stored_as_text() -> None:
    assert record("case.created", object_type="case", object_id=42).object_id == "42"


def test_a_time_without_a_timezone_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        record("case.created", object_type="case", object_id=1, at=datetime(2026, 3, 2))


@pytest.mark.parametrize(
    ("field", "value"),
    [("action", ""), ("actor", "x" * 65), ("object_type", "case\x00"), ("object_id", "9" * 129)],
)
def test_text_that_not_every_database_would_store_alike_is_refused(field: str, value: str) -> None:
    arguments: dict[str, Any] = {"action": "case.created", "object_type": "case", "object_id": 1}
    arguments[field] = value
    action = arguments.pop("action")

    with pytest.raises(ValueError, match=field):
        record(action, **arguments)


def test_details_that_are_not_json_are_refused() -> None:
    with pytest.raises(ValueError):
        record("case.created", object_type="case", object_id=1, details={"x": float("nan")})


@pytest.mark.django_db
def test_record_many_then_record_continue_one_chain() -> None:
    written = record_many(
        [
            PendingEntry("case.created", object_type="case", object_id=n, actor="import")
            for n in range(1, 4)
        ]
    )
    entry = record("import.completed", object_type="import", object_id="run-1", actor="import")

    assert written == 3
    assert entry.seq == 4
    assert entry.prev_hash == AuditEntry.objects.get(seq=3).hash
    assert verify() == ChainReport(ok=True, entries=4)


@pytest.mark.django_db
def test_record_many_of_nothing_writes_nothing() -> None:
    assert record_many([]) == 0
    assert not AuditEntry.objects.exists()
    assert not AuditHead.objects.exists()


@pytest.mark.django_db
def test_an_entry_recorded_in_a_rolled_back_transaction_leaves_no_trace() -> None:
    write_chain(2)

    with pytest.raises(RuntimeError), transaction.atomic():
        record("case.updated", object_type="case", object_id=1)
        raise RuntimeError("the caller's change failed")

    assert AuditEntry.objects.count() == 2
    assert verify() == ChainReport(ok=True, entries=2)
    assert record("case.updated", object_type="case", object_id=1).seq == 3


@pytest.mark.django_db
def test_a_chain_longer_than_one_read_chunk_verifies() -> None:
    count = 2 * chain.VERIFY_CHUNK + 1
    record_many(
        [PendingEntry("case.created", object_type="case", object_id=n) for n in range(count)]
    )

    assert verify() == ChainReport(ok=True, entries=count)


# --- the application cannot change the record -------------------------------------


@pytest.mark.django_db
def test_the_application_cannot_change_an_entry() -> None:
    entry = write_chain(1)[0]
    entry.action = "case.deleted"

    with pytest.raises(AppendOnlyError):
        entry.save()
    assert AuditEntry.objects.get().action == "case.created"


@pytest.mark.django_db
def test_the_application_cannot_delete_an_entry() -> None:
    entry = write_chain(1)[0]

    with pytest.raises(AppendOnlyError):
        entry.delete()
    assert AuditEntry.objects.count() == 1


@pytest.mark.django_db
def test_the_application_cannot_change_entries_in_bulk() -> None:
    write_chain(2)

    with pytest.raises(AppendOnlyError):
        AuditEntry.objects.filter(seq=1).update(action="case.deleted")
    # bulk_update opens an atomic block without a savepoint: give it one of its own.
    with pytest.raises(AppendOnlyError), transaction.atomic():
        AuditEntry.objects.bulk_update(list(AuditEntry.objects.all()), ["action"])
    assert verify().ok


@pytest.mark.django_db
def test_the_application_cannot_delete_entries_in_bulk() -> None:
    write_chain(2)

    with pytest.raises(AppendOnlyError):
        AuditEntry.objects.all().delete()
    assert AuditEntry.objects.count() == 2


@pytest.mark.django_db
def test_entries_can_only_be_added_through_the_chain() -> None:
    with pytest.raises(AppendOnlyError, match="record"):
        AuditEntry.objects.create(
            seq=1, at=datetime.now(UTC), actor="system", action="x", object_type="x", object_id="1"
        )


# --- edits behind the application's back ------------------------------------------

ALTERATIONS: dict[str, Callable[[AuditEntry], Any]] = {
    "seq": lambda e: e.seq + 1000,
    "at": lambda e: stored_at(e.at + timedelta(microseconds=1)),
    "firm_id": lambda e: 8,
    "actor": lambda e: "user:666",
    "action": lambda e: "case.deleted",
    "object_type": lambda e: "client",
    "object_id": lambda e: "1999",
    "details": lambda e: '{"n":1,"note":"café ✓ 受理","status":"approved"}',
    "prev_hash": lambda e: "f" * 64,
    "hash": lambda e: "f" * 64,
}


@pytest.mark.django_db
@pytest.mark.parametrize("seq", [1, 3, 5], ids=["first", "middle", "last"])
@pytest.mark.parametrize("column", list(ALTERATIONS))
def test_altering_any_column_of_any_entry_is_detected_at_that_entry(column: str, seq: int) -> None:
    entries = write_chain(5)

    update_entry(seq, column, ALTERATIONS[column](entries[seq - 1]))

    report = verify()
    assert broken(report) == (False, seq)
    assert report.entries == 5
    assert report.problem


@pytest.mark.django_db
def test_an_altered_entry_is_reported_in_words() -> None:
    write_chain(5)
    update_entry(3, "action", "case.deleted")

    assert verify().problem == "entry 3 was altered: its hash does not match its contents"


@pytest.mark.django_db
def test_swapping_the_details_of_two_entries_is_detected() -> None:
    entries = write_chain(5)
    update_entry(2, "details", entries[3].details_json)
    update_entry(4, "details", entries[1].details_json)

    assert broken(verify()) == (False, 2)


@pytest.mark.django_db
def test_deleting_an_entry_in_the_middle_is_detected() -> None:
    write_chain(5)
    delete_entry(3)

    report = verify()
    assert broken(report) == (False, 3)
    assert report.problem == "entry 3 is missing: the chain jumps from 2 to 4"


@pytest.mark.django_db
def test_deleting_the_first_entry_is_detected() -> None:
    write_chain(5)
    delete_entry(1)

    assert broken(verify()) == (False, 1)


@pytest.mark.django_db
def test_deleting_the_last_entries_is_detected_by_the_head() -> None:
    write_chain(5)
    delete_entry(5)
    delete_entry(4)

    report = verify()
    assert broken(report) == (False, 4)
    assert report.problem == (
        "the last 2 entries were removed: the head records entry 5 but the chain ends at 3"
    )


@pytest.mark.django_db
def test_deleting_every_entry_but_not_the_head_is_detected() -> None:
    write_chain(3)
    sql(f"DELETE FROM {q(ENTRY_TABLE)}")

    assert broken(verify()) == (False, 1)


@pytest.mark.django_db
def test_cutting_the_tail_and_rewinding_the_head_without_the_key_is_detected() -> None:
    entries = write_chain(5)
    delete_entry(5)
    new_mac = head_mac(WRONG_KEY, 4, entries[3].hash)
    sql(f"UPDATE {q(HEAD_TABLE)} SET seq = 4, hash = %s, mac = %s", [entries[3].hash, new_mac])

    report = verify()
    assert broken(report) == (False, 5)
    assert report.problem is not None and report.problem.startswith("the chain head was altered")


@pytest.mark.django_db
def test_deleting_the_head_is_detected() -> None:
    write_chain(3)
    sql(f"DELETE FROM {q(HEAD_TABLE)}")

    report = verify()
    assert broken(report) == (False, 4)
    assert report.problem is not None and report.problem.startswith("the chain head is missing")


@pytest.mark.django_db
def test_a_row_appended_with_a_wrong_key_is_detected() -> None:
    entries = write_chain(5)
    insert_forged(6, prev_hash=entries[-1].hash, key=WRONG_KEY)

    assert broken(verify()) == (False, 6)


@pytest.mark.django_db
def test_a_row_inserted_in_the_middle_with_a_wrong_key_is_detected() -> None:
    entries = write_chain(5)
    shift_entries_from(3)
    insert_forged(3, prev_hash=entries[1].hash, key=WRONG_KEY)

    assert broken(verify()) == (False, 3)


@pytest.mark.django_db
def test_a_row_inserted_in_the_middle_even_with_the_key_breaks_the_entry_after_it() -> None:
    entries = write_chain(5)
    shift_entries_from(3)
    insert_forged(3, prev_hash=entries[1].hash, key=audit_key())

    assert broken(verify()) == (False, 4)


@pytest.mark.django_db
def test_a_row_appended_with_the_key_but_not_linked_is_detected() -> None:
    write_chain(5)
    insert_forged(6, prev_hash=GENESIS_HASH, key=audit_key())

    report = verify()
    assert broken(report) == (False, 6)
    assert report.problem == (
        "entry 6 does not follow entry 5: its prev_hash is not the hash of entry 5"
    )


@pytest.mark.django_db
def test_a_row_numbered_zero_is_detected() -> None:
    write_chain(3)
    insert_forged(0, prev_hash=GENESIS_HASH, key=WRONG_KEY)

    assert broken(verify()) == (False, 0)


@pytest.mark.django_db
def test_verifying_with_another_key_fails_at_the_first_entry_and_names_the_key() -> None:
    write_chain(3)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(chain, "audit_key", lambda: WRONG_KEY)
        report = verify()

    assert broken(report) == (False, 1)
    assert report.problem is not None and "audit.key" in report.problem


@pytest.mark.django_db
def test_appending_refuses_to_seal_a_tampered_head() -> None:
    entries = write_chain(5)
    delete_entry(5)
    sql(f"UPDATE {q(HEAD_TABLE)} SET seq = 4, hash = %s", [entries[3].hash])

    with pytest.raises(AuditChainError):
        record("case.updated", object_type="case", object_id=1)
    assert broken(verify()) == (False, 5)


@pytest.mark.django_db
def test_appending_after_the_tail_was_cut_leaves_the_gap_visible() -> None:
    write_chain(5)
    delete_entry(5)

    record("case.updated", object_type="case", object_id=1)

    assert broken(verify()) == (False, 5)


# --- `casewatch audit verify`, run as a program on a data directory of its own -----

WRITE_ENTRIES = """
from casewatch.cli.bootstrap import prepare_django
prepare_django()
from django.db import transaction
from casewatch.audit.chain import record
with transaction.atomic():
    for n in (1, 2, 3):
        record("case.created", object_type="case", object_id=n, firm_id=1, details={"n": n})
"""


def environment(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CASEWATCH_")}
    env.pop("DATABASE_URL", None)
    env["CASEWATCH_DATA_DIR"] = str(data_dir)
    return env


def audit_verify(data_dir: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "casewatch", "audit", "verify", *flags],
        capture_output=True,
        text=True,
        env=environment(data_dir),
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def written_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data_dir = tmp_path_factory.mktemp("audit") / "data"
    result = subprocess.run(
        [sys.executable, "-c", WRITE_ENTRIES],
        capture_output=True,
        text=True,
        env=environment(data_dir),
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return data_dir


@pytest.fixture
def data_dir(written_data_dir: Path, tmp_path: Path) -> Path:
    """A copy of a data directory (keys, database) in which the application wrote 3 entries."""
    return Path(shutil.copytree(written_data_dir, tmp_path / "data"))


def edit_database(data_dir: Path, statement: str, params: tuple[Any, ...] = ()) -> None:
    with sqlite3.connect(data_dir / "casewatch.sqlite3") as db:
        db.execute(statement, params)
    db.close()


def test_verify_works_cold_on_an_empty_data_directory(tmp_path: Path) -> None:
    result = audit_verify(tmp_path / "empty", "--json")

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "ok": True,
        "entries": 0,
        "first_broken_seq": None,
        "problem": None,
    }


def test_verify_passes_a_chain_the_application_wrote(data_dir: Path) -> None:
    result = audit_verify(data_dir, "--json")

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["entries"] == 3


def test_verify_says_in_words_that_the_chain_is_intact(data_dir: Path) -> None:
    assert audit_verify(data_dir).stdout == "Audit chain intact: 3 entries.\n"


def test_verify_fails_on_a_row_altered_in_the_database_file(data_dir: Path) -> None:
    edit_database(data_dir, "UPDATE audit_auditentry SET details = '{\"n\":20}' WHERE seq = 2")

    result = audit_verify(data_dir, "--json")

    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert (report["ok"], report["entries"], report["first_broken_seq"]) == (False, 3, 2)


def test_verify_names_the_broken_entry_in_words(data_dir: Path) -> None:
    edit_database(data_dir, "UPDATE audit_auditentry SET actor = 'user:9' WHERE seq = 2")

    result = audit_verify(data_dir)

    assert result.returncode == 1
    assert result.stdout == (
        "Audit chain BROKEN at entry 2: entry 2 was altered: its hash does not match its contents\n"
    )


def test_verify_fails_on_a_row_deleted_from_the_database_file(data_dir: Path) -> None:
    edit_database(data_dir, "DELETE FROM audit_auditentry WHERE seq = 2")

    result = audit_verify(data_dir, "--json")

    assert result.returncode == 1
    assert json.loads(result.stdout)["first_broken_seq"] == 2


def test_verify_fails_on_a_row_inserted_into_the_database_file(data_dir: Path) -> None:
    edit_database(
        data_dir,
        "INSERT INTO audit_auditentry (seq, at, firm_id, actor, action, object_type, object_id,"
        " details, prev_hash, hash) SELECT 4, at, firm_id, actor, 'case.updated', object_type,"
        " object_id, details, hash, ? FROM audit_auditentry WHERE seq = 3",
        (hashlib.sha256(b"plausible").hexdigest(),),
    )

    result = audit_verify(data_dir, "--json")

    assert result.returncode == 1
    assert json.loads(result.stdout)["first_broken_seq"] == 4


def test_verify_reports_a_value_its_column_cannot_hold_instead_of_crashing(data_dir: Path) -> None:
    edit_database(data_dir, "UPDATE audit_auditentry SET at = 'yesterday' WHERE seq = 2")

    result = audit_verify(data_dir, "--json")

    assert result.returncode == 1, result.stderr
    assert json.loads(result.stdout)["first_broken_seq"] == 2


def test_audit_without_an_action_is_bad_usage(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "casewatch", "audit"],
        capture_output=True,
        text=True,
        env=environment(tmp_path / "data"),
        timeout=120,
        check=False,
    )

    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
