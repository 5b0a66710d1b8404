"""Backups that stay encrypted, and restoring them into an empty installation.

A backup is one tar file (gzip-compressed) with two members:

- `manifest.json`: format and casewatch version, creation time, database vendor,
  the applied migrations, rows per table, and the SHA-256 and size of the payload;
- the payload: on SQLite `database.sqlite3`, a consistent copy made with sqlite3's
  online backup API while the application runs; on PostgreSQL `tables.jsonl`, every
  casewatch table (and Django's users and groups) read in one REPEATABLE READ
  snapshot, one JSON object per row.

Encrypted columns are copied as the stored Fernet tokens: nothing is decrypted for
a backup. The keys are NOT in it: a backup can be read only with the `keys/`
directory of the installation that wrote it, kept separately.

Restoring validates the whole file before writing anything, refuses a database
that already holds firms, users or audit entries, and checks that the keys in the
data directory read the backup (a sample of tokens and the audit chain's head).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import secrets
import sqlite3
import tarfile
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, time
from pathlib import Path
from typing import IO, Any

from cryptography.fernet import InvalidToken
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, models, transaction

from casewatch import __version__, config

FORMAT = "casewatch-backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SQLITE_PAYLOAD = "database.sqlite3"
JSONL_PAYLOAD = "tables.jsonl"
# Apps whose tables a JSON-lines backup holds: casewatch's, and Django's users and groups.
BACKUP_APPS = ("auth", "audit", "accounts", "cases", "monitor", "notify")
# Tokens per encrypted column tried against the configured keys before a restore.
KEY_SAMPLE = 20
KEYS_WARNING = (
    "This backup does NOT contain the keys: keep the data directory's keys/ folder "
    "separately and safely. A backup without its keys cannot be read."
)


class BackupError(Exception):
    """The backup cannot be made or restored; the message says why and what was kept."""


@dataclass
class BackupReport:
    """What a backup or restore held: counts per table, never a value."""

    path: str
    vendor: str
    tables: dict[str, int] = field(default_factory=dict)
    created_at: str = ""
    casewatch_version: str = __version__
    keys_included: bool = False

    @property
    def rows(self) -> int:
        return sum(self.tables.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "vendor": self.vendor,
            "created_at": self.created_at,
            "casewatch_version": self.casewatch_version,
            "tables": self.tables,
            "rows": self.rows,
            "keys_included": self.keys_included,
            "warning": KEYS_WARNING,
        }


class _ExactEncoder(DjangoJSONEncoder):
    """DjangoJSONEncoder keeps only milliseconds of a time; the audit chain hashes microseconds."""

    def default(self, o: Any) -> Any:
        if isinstance(o, datetime | time):
            return o.isoformat()
        return super().default(o)


# --- which tables ---------------------------------------------------------------


def backup_models() -> list[type[models.Model]]:
    """The models a JSON-lines backup holds, in dependency order (apps left to right)."""
    from django.apps import apps

    chosen: list[type[models.Model]] = []
    for label in BACKUP_APPS:
        for model in apps.get_app_config(label).get_models(include_auto_created=True):
            if model._meta.label in ("auth.Permission",) or not model._meta.managed:
                continue
            if model._meta.proxy:
                continue
            chosen.append(model)
    return chosen


def _is_encrypted(model_field: models.Field[Any, Any]) -> bool:
    return bool(getattr(model_field, "encrypts", False))


def _applied_migrations(cursor: Any) -> dict[str, list[str]]:
    cursor.execute("SELECT app, name FROM django_migrations ORDER BY app, name")
    applied: dict[str, list[str]] = {}
    for app, name in cursor.fetchall():
        applied.setdefault(app, []).append(name)
    return applied


# --- making a backup ------------------------------------------------------------


def create_backup(path: Path) -> BackupReport:
    """Write a backup of the current database to `path` (which must not exist yet)."""
    if path.exists():
        raise BackupError(f"{path} already exists; choose a new file name (nothing was written)")
    if not path.parent.is_dir():
        raise BackupError(f"{path.parent} is not a directory (nothing was written)")
    created_at = datetime.now(UTC).isoformat()
    with tempfile.TemporaryDirectory(prefix="casewatch-backup-") as work:
        if connection.vendor == "sqlite":
            payload_name = SQLITE_PAYLOAD
            payload = Path(work) / payload_name
            tables, migrations = _copy_sqlite(payload)
        else:
            payload_name = JSONL_PAYLOAD
            payload = Path(work) / payload_name
            tables, migrations = _dump_jsonl(payload)
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "casewatch_version": __version__,
            "created_at": created_at,
            "vendor": connection.vendor,
            "payload": payload_name,
            "sha256": _sha256(payload),
            "size": payload.stat().st_size,
            "migrations": migrations,
            "tables": tables,
            "keys_included": False,
            "note": KEYS_WARNING,
        }
        _write_archive(path, manifest, payload)
    return BackupReport(
        path=str(path), vendor=connection.vendor, tables=tables, created_at=created_at
    )


def _copy_sqlite(target: Path) -> tuple[dict[str, int], dict[str, list[str]]]:
    """A consistent copy of the live SQLite database, taken while others keep writing."""
    connection.ensure_connection()
    source = connection.connection
    copy = sqlite3.connect(target)
    try:
        source.backup(copy)
        copy.execute("PRAGMA journal_mode=DELETE")  # One self-contained file, no -wal beside it.
        cursor = copy.cursor()
        migrations = _applied_migrations(cursor)
        tables = {}
        for model in backup_models():
            table = model._meta.db_table
            cursor.execute(f'SELECT COUNT(*) FROM "{table}"')  # noqa: S608
            tables[table] = int(cursor.fetchone()[0])
    finally:
        copy.close()
    return tables, migrations


def _dump_jsonl(target: Path) -> tuple[dict[str, int], dict[str, list[str]]]:
    """Every backed-up table as JSON lines, read in one snapshot; tokens stay tokens."""
    tables: dict[str, int] = {}
    # One snapshot for every table; inside a caller's transaction, that one's.
    snapshot = connection.vendor == "postgresql" and not connection.in_atomic_block
    with transaction.atomic(), target.open("w", encoding="utf-8") as out:
        with connection.cursor() as cursor:
            if snapshot:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            migrations = _applied_migrations(cursor)
        for model in backup_models():
            columns = [f.attname for f in model._meta.concrete_fields]
            out.write(json.dumps({"model": model._meta.label_lower, "columns": columns}) + "\n")
            count = 0
            for values in _raw_values(model).iterator(chunk_size=2000):
                out.write(json.dumps({"row": list(values)}, cls=_ExactEncoder) + "\n")
                count += 1
            tables[model._meta.db_table] = count
    return tables, migrations


def _raw_values(model: type[models.Model]) -> Any:
    """Rows as values, with encrypted columns read as their stored tokens (never decrypted)."""
    from django.db.models.functions import Cast

    expressions: dict[str, Any] = {}
    names: list[str] = []
    for model_field in model._meta.concrete_fields:
        if _is_encrypted(model_field):
            alias = f"_token_{model_field.attname}"
            expressions[alias] = Cast(model_field.attname, output_field=models.TextField())
            names.append(alias)
        else:
            names.append(model_field.attname)
    manager = model._base_manager
    return manager.order_by("pk").annotate(**expressions).values_list(*names)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_archive(path: Path, manifest: dict[str, Any], payload: Path) -> None:
    """Write the tar beside its final name, mode 0600, and rename it into place whole."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.partial")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as archive:
            data = json.dumps(manifest, indent=2, sort_keys=True).encode("utf-8")
            info = tarfile.TarInfo(MANIFEST)
            info.size, info.mode = len(data), 0o600
            info.mtime = int(datetime.now(UTC).timestamp())
            archive.addfile(info, io.BytesIO(data))
            archive.add(payload, arcname=manifest["payload"], recursive=False)
        with open(temporary, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


# --- reading and checking a backup ----------------------------------------------


@dataclass
class OpenedBackup:
    """A backup whose manifest and payload checked out, unpacked into a scratch folder."""

    manifest: dict[str, Any]
    payload: Path


@contextlib.contextmanager
def open_backup(path: Path) -> Iterator[OpenedBackup]:
    """Unpack and check a backup (manifest, checksum, payload); BackupError if it is bad."""
    if not path.is_file():
        raise BackupError(f"{path} is not a file")
    with tempfile.TemporaryDirectory(prefix="casewatch-restore-") as work:
        try:
            with tarfile.open(path, mode="r:*") as archive:
                manifest = _read_manifest(archive, path)
                payload = Path(work) / manifest["payload"]
                member = archive.getmember(manifest["payload"])
                if not member.isfile():
                    raise BackupError(f"{path}: {manifest['payload']} is not a file")
                source = archive.extractfile(member)
                assert source is not None
                _copy_limited(source, payload)
        except KeyError as exc:
            raise BackupError(f"{path} is not a casewatch backup: {exc} is missing") from exc
        except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
            raise BackupError(f"{path} is damaged or truncated ({exc})") from exc
        if payload.stat().st_size != manifest["size"] or _sha256(payload) != manifest["sha256"]:
            raise BackupError(
                f"{path} is damaged: its {manifest['payload']} does not match the manifest's "
                "checksum"
            )
        _check_migrations(manifest, path)
        yield OpenedBackup(manifest=manifest, payload=payload)


def _copy_limited(source: IO[bytes], target: Path) -> None:
    with target.open("wb") as out:
        for block in iter(lambda: source.read(1 << 20), b""):
            out.write(block)


def _read_manifest(archive: tarfile.TarFile, path: Path) -> dict[str, Any]:
    member = archive.getmember(MANIFEST)
    handle = archive.extractfile(member)
    if handle is None:
        raise BackupError(f"{path}: {MANIFEST} is not a file")
    try:
        manifest = json.loads(handle.read(1 << 20))
    except ValueError as exc:
        raise BackupError(f"{path}: {MANIFEST} is not valid JSON ({exc})") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BackupError(f"{path} is not a casewatch backup (its manifest names no {FORMAT})")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise BackupError(
            f"{path} has backup format {manifest.get('format_version')!r}; this casewatch "
            f"reads format {FORMAT_VERSION}"
        )
    expected = {
        "payload": str,
        "sha256": str,
        "size": int,
        "vendor": str,
        "migrations": dict,
        "tables": dict,
    }
    for key, kind in expected.items():
        if not isinstance(manifest.get(key), kind):
            raise BackupError(f"{path}: the manifest's {key!r} is missing or malformed")
    if manifest["payload"] not in (SQLITE_PAYLOAD, JSONL_PAYLOAD):
        raise BackupError(f"{path}: unknown payload {manifest['payload']!r}")
    return manifest


def _check_migrations(manifest: dict[str, Any], path: Path) -> None:
    """The backup's schema must be one this code knows (older is fine: it is migrated)."""
    from django.db.migrations.loader import MigrationLoader

    known = set(MigrationLoader(None, ignore_no_migrations=True).disk_migrations)
    unknown = [
        f"{app}.{name}"
        for app, names in manifest["migrations"].items()
        for name in names
        if (app, name) not in known
    ]
    if unknown:
        raise BackupError(
            f"{path} was written by a newer casewatch ({manifest.get('casewatch_version')}): "
            f"migrations {', '.join(unknown[:3])} are unknown here; upgrade first"
        )


# --- restoring ------------------------------------------------------------------


def database_holdings() -> dict[str, int]:
    """What the current database already holds that a restore would overwrite."""
    from django.contrib.auth import get_user_model

    from casewatch.accounts.models import Firm
    from casewatch.audit.models import AuditEntry

    found = {
        "firms": Firm.objects.count(),
        "users": get_user_model().objects.count(),
        "audit entries": AuditEntry.objects.count(),
    }
    return {what: n for what, n in found.items() if n}


def restore_backup(path: Path) -> BackupReport:
    """Restore a backup into this (empty) database; BackupError, with nothing written, if not."""
    with open_backup(path) as opened:
        manifest = opened.manifest
        vendor = manifest["vendor"]
        if manifest["payload"] == SQLITE_PAYLOAD and connection.vendor != "sqlite":
            raise BackupError(
                f"{path} is a SQLite backup; this installation uses {connection.vendor}. "
                "Restore it into an installation on SQLite (nothing was written)"
            )
        held = database_holdings()
        if held:
            what = ", ".join(f"{n} {name}" for name, n in held.items())
            raise BackupError(
                f"the database already holds data ({what}); restore only into an empty "
                "data directory or database (nothing was written)"
            )
        if manifest["payload"] == SQLITE_PAYLOAD:
            _check_sqlite_copy(opened.payload, path)
            _check_keys(_sqlite_samples(opened.payload), path)
            _restore_sqlite(opened.payload)
        else:
            rows = list(_read_jsonl(opened.payload, manifest, path))
            _check_keys(_jsonl_samples(rows), path)
            _restore_jsonl(rows)
    return BackupReport(
        path=str(path),
        vendor=vendor,
        tables=dict(manifest["tables"]),
        created_at=str(manifest.get("created_at", "")),
        casewatch_version=str(manifest.get("casewatch_version", "")),
    )


def _check_sqlite_copy(payload: Path, path: Path) -> None:
    try:
        copy = sqlite3.connect(f"file:{payload}?mode=ro", uri=True)
        try:
            (result,) = copy.execute("PRAGMA integrity_check").fetchone()
        finally:
            copy.close()
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"{path}: its database cannot be read ({exc})") from exc
    if result != "ok":
        raise BackupError(f"{path}: its database fails SQLite's integrity check")


@dataclass
class _Samples:
    """Stored tokens and the audit head of a backup, to test the keys against."""

    tokens: list[str] = field(default_factory=list)
    head: tuple[int, str, str] | None = None


def _sqlite_samples(payload: Path) -> _Samples:
    from casewatch.audit.models import AuditHead
    from casewatch.maintenance.keys import encrypted_columns

    samples = _Samples()
    copy = sqlite3.connect(f"file:{payload}?mode=ro", uri=True)
    try:
        for model, fields in encrypted_columns():
            for model_field in fields:
                column, table = model_field.column, model._meta.db_table
                cursor = copy.execute(
                    f'SELECT "{column}" FROM "{table}" WHERE "{column}" != \'\' LIMIT ?',  # noqa: S608
                    (KEY_SAMPLE,),
                )
                samples.tokens.extend(str(row[0]) for row in cursor.fetchall() if row[0])
        head_table = AuditHead._meta.db_table
        row = copy.execute(
            f'SELECT "seq", "hash", "mac" FROM "{head_table}" WHERE "id" = 1'  # noqa: S608
        ).fetchone()
        samples.head = (int(row[0]), str(row[1]), str(row[2])) if row else None
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"its database does not hold casewatch's tables ({exc})") from exc
    finally:
        copy.close()
    return samples


def _check_keys(samples: _Samples, path: Path) -> None:
    """Refuse a backup the keys in this data directory cannot read (nothing is written)."""
    from casewatch.audit.hashing import head_mac, same
    from casewatch.cases.fields import cipher

    cipher.cache_clear()  # The keys file as it is now, e.g. just copied in.
    for token in samples.tokens:
        try:
            cipher().decrypt(token.encode("ascii", "replace"))
        except InvalidToken:
            raise BackupError(
                f"the keys in {config.data_dir() / 'keys'} do not read {path}: put the "
                "keys/ folder of the installation that wrote it in place first "
                "(nothing was written)"
            ) from None
    if samples.head is not None:
        seq, digest, mac = samples.head
        if not same(mac, head_mac(config.audit_key(), seq, digest)):
            raise BackupError(
                f"keys/audit.key in {config.data_dir()} is not the key that sealed the audit "
                f"chain in {path}: put the backup's keys/ folder in place first "
                "(nothing was written)"
            )


def _restore_sqlite(payload: Path) -> None:
    """Replace the (empty) database's content with the copy, through SQLite's backup API."""
    from django.core.management import call_command

    connection.close()
    connection.ensure_connection()
    source = sqlite3.connect(f"file:{payload}?mode=ro", uri=True)
    try:
        source.backup(connection.connection)
    finally:
        source.close()
    connection.close()
    # A backup from an older casewatch is migrated forward.
    call_command("migrate", interactive=False, verbosity=0)


_Row = tuple[type[models.Model], list[str], list[Any]]


def _read_jsonl(payload: Path, manifest: dict[str, Any], path: Path) -> Iterator[_Row]:
    """Every row of a JSON-lines payload, checked against the models and the manifest."""
    from django.apps import apps

    model: type[models.Model] | None = None
    columns: list[str] = []
    counts: dict[str, int] = {}
    with payload.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            try:
                item = json.loads(line)
            except ValueError as exc:
                raise BackupError(f"{path}: line {number} of its payload is damaged") from exc
            if "model" in item:
                try:
                    model = apps.get_model(item["model"])
                except (LookupError, ValueError) as exc:
                    raise BackupError(
                        f"{path}: line {number} names an unknown table {item['model']!r}"
                    ) from exc
                columns = list(item.get("columns") or [])
                known = {f.attname for f in model._meta.concrete_fields}
                unknown = [c for c in columns if c not in known]
                if unknown:
                    raise BackupError(
                        f"{path}: line {number}: {item['model']} has no column {unknown[0]!r}"
                    )
                counts.setdefault(model._meta.db_table, 0)
                continue
            row = item.get("row")
            if model is None or not isinstance(row, list) or len(row) != len(columns):
                raise BackupError(f"{path}: line {number} of its payload is malformed")
            counts[model._meta.db_table] += 1
            yield model, columns, row
    for table, expected in manifest["tables"].items():
        if counts.get(table, 0) != expected:
            raise BackupError(
                f"{path} is incomplete: {table} has {counts.get(table, 0)} rows, the manifest "
                f"says {expected}"
            )


def _jsonl_samples(rows: list[_Row]) -> _Samples:
    from casewatch.audit.models import AuditHead

    samples = _Samples()
    taken: dict[tuple[str, str], int] = {}
    for model, columns, row in rows:
        for column, value in zip(columns, row, strict=True):
            model_field = _field_of(model, column)
            if _is_encrypted(model_field) and value:
                key = (model._meta.db_table, column)
                if taken.get(key, 0) < KEY_SAMPLE:
                    taken[key] = taken.get(key, 0) + 1
                    samples.tokens.append(str(value))
        if model is AuditHead:
            values = dict(zip(columns, row, strict=True))
            if values.get("id") == 1:
                samples.head = (int(values["seq"]), str(values["hash"]), str(values["mac"]))
    return samples


def _restore_jsonl(rows: list[_Row]) -> None:
    """Insert every row as stored (tokens as tokens) in one transaction; reset sequences."""
    from django.core.management.color import no_style

    from casewatch.bulk import insert_rows

    by_model: dict[type[models.Model], tuple[list[str], list[list[Any]]]] = {}
    for model, columns, row in rows:
        by_model.setdefault(model, (columns, []))[1].append(row)
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET CONSTRAINTS ALL DEFERRED")
        # Rows made by migrations (none that name firms or users) give way to the backup's.
        for model in reversed(backup_models()):
            model._base_manager.all()._raw_delete(connection.alias)
        for model, (columns, values) in by_model.items():
            fields = [_field_of(model, c) for c in columns]
            prepared = [
                [_stored(f, value) for f, value in zip(fields, row, strict=True)] for row in values
            ]
            insert_rows(model._meta.db_table, [str(f.column) for f in fields], prepared)
        with connection.cursor() as cursor:
            for statement in connection.ops.sequence_reset_sql(no_style(), list(by_model)):
                cursor.execute(statement)


def _field_of(model: type[models.Model], attname: str) -> models.Field[Any, Any]:
    for model_field in model._meta.concrete_fields:
        if model_field.attname == attname:
            return model_field
    raise BackupError(f"{model._meta.label} has no column {attname!r}")


def _stored(model_field: Any, value: Any) -> Any:
    """A JSON value as the database stores it; a token goes in exactly as it was."""
    if _is_encrypted(model_field):
        return value or ""
    if value is None:
        return None
    return model_field.get_db_prep_save(model_field.to_python(value), connection)
