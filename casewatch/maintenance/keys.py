"""Rotating the Fernet key that encrypts client data, while the application runs.

`rotate()` puts a new key first in `keys/fernet.keys` (older keys stay, so every
running process still decrypts everything) and then re-encrypts every encrypted
column of every row to it, a batch per transaction. A row is written back only
if it still holds the tokens that were read (compare and swap), so a change the
application made in the meantime is never overwritten with stale data; such a
row is taken again in the next pass.

Until rotation finishes, `keys/rotation.pending` names the new key. A rotation
that was interrupted (a crash, Ctrl-C) is finished by running it again: the
same key is kept and only tokens it cannot read yet are rewritten.

`retire_old_keys()` drops every key but the newest, only when no stored token
needs an older one. Processes started before the rotation keep encrypting with
the old key until restarted, which is why retiring is a separate step.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.db import connection, models, transaction

from casewatch import config
from casewatch.notify import mail_capture

BATCH_SIZE = 500
# Passes over the data before giving up on rows the application keeps changing.
MAX_PASSES = 5
PENDING_FILE = "rotation.pending"
ACTOR = "cli"
# Mail kept in the data directory without an SMTP server (casewatch.notify.mail_capture).
KEPT_MAIL_BACKEND = "casewatch.notify.mail_capture.EncryptedFileBackend"
MAIL = "kept mail (files)"


@dataclass
class TableCount:
    """What one pass found in one table: rows rewritten, and tokens no key could read."""

    rotated: int = 0
    unreadable: int = 0


@dataclass
class RotationReport:
    """The outcome of `rotate()`: counts per table, never a value."""

    tables: dict[str, int] = field(default_factory=dict)
    unreadable: dict[str, int] = field(default_factory=dict)
    rows: int = 0
    seconds: float = 0.0
    keys: int = 0
    resumed: bool = False
    finished: bool = True

    def as_dict(self) -> dict[str, Any]:
        return {
            "tables": self.tables,
            "rows": self.rows,
            "seconds": round(self.seconds, 3),
            "keys": self.keys,
            "resumed": self.resumed,
            "finished": self.finished,
            "unreadable": self.unreadable,
        }


@dataclass
class RetireReport:
    """The outcome of `retire_old_keys()`; `remaining` names tables holding old-key tokens."""

    ok: bool
    retired: int = 0
    keys: int = 0
    remaining: dict[str, int] = field(default_factory=dict)
    problem: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "retired": self.retired,
            "keys": self.keys,
            "remaining": self.remaining,
            "problem": self.problem,
        }


def encrypted_columns() -> list[tuple[type[models.Model], list[models.Field[Any, Any]]]]:
    """Every model with encrypted fields and those fields, found from the fields themselves.

    A field counts when it says `encrypts = True` (casewatch.cases.fields), so a new
    encrypted column anywhere is rotated and checked without being listed here.
    """
    from django.apps import apps

    found = []
    for model in apps.get_models():
        fields = [f for f in model._meta.concrete_fields if getattr(f, "encrypts", False)]
        if fields:
            found.append((model, fields))
    return sorted(found, key=lambda item: item[0]._meta.db_table)


def key_fingerprint(key: str) -> str:
    """A short name for a key that says nothing about it (for the pending marker)."""
    return hashlib.sha256(key.encode("ascii")).hexdigest()[:16]


def _pending_path() -> Any:
    return config.fernet_keys_path().with_name(PENDING_FILE)


def pending_rotation() -> str | None:
    """The fingerprint of the key an unfinished rotation is moving to, or None."""
    path = _pending_path()
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise config.ConfigError(f"cannot read {path}: {exc}") from exc
    fingerprint = loaded.get("key") if isinstance(loaded, dict) else None
    return fingerprint if isinstance(fingerprint, str) else None


def _forget_cipher() -> None:
    """This process encrypts with the keys file as it is now (cipher() is cached)."""
    from casewatch.cases.fields import cipher

    cipher.cache_clear()


def rotate(
    *, batch_size: int = BATCH_SIZE, stop_after_batches: int | None = None
) -> RotationReport:
    """Add a new key (or resume an unfinished rotation) and re-encrypt everything to it.

    `stop_after_batches` ends the run early, leaving the rotation pending, as a crash
    would; the next call finishes it. Tokens no configured key can read are counted
    in `unreadable` and left as they are.
    """
    started = time.monotonic()
    keys = config.fernet_keys()
    pending = pending_rotation()
    resumed = pending is not None and bool(keys) and pending == key_fingerprint(keys[0])
    if not resumed:
        new_key = Fernet.generate_key().decode("ascii")
        config.write_fernet_keys([new_key, *keys])
        _write_pending(new_key)
        keys = config.fernet_keys()
    _forget_cipher()
    newest = Fernet(keys[0].encode("ascii"))
    every_key = MultiFernet([Fernet(key.encode("ascii")) for key in keys])

    report = RotationReport(keys=len(keys), resumed=resumed)
    budget = [stop_after_batches] if stop_after_batches is not None else None
    for _ in range(MAX_PASSES):
        changed_meanwhile = 0
        for model, fields in encrypted_columns():
            table = model._meta.db_table
            count, skipped = _rotate_table(model, fields, newest, every_key, batch_size, budget)
            report.tables[table] = report.tables.get(table, 0) + count.rotated
            report.unreadable[table] = count.unreadable
            changed_meanwhile += skipped
            if budget is not None and budget[0] <= 0:
                report.finished = False
                break
        if not report.finished or not changed_meanwhile:
            break
    if report.finished:
        rotated, lost = _rotate_kept_mail(newest, every_key)
        if rotated or lost:
            report.tables[MAIL] = rotated
            report.unreadable[MAIL] = lost
    report.unreadable = {table: n for table, n in report.unreadable.items() if n}
    report.rows = sum(report.tables.values())
    if report.finished:
        _audit(
            "keys.rotated",
            {"tables": report.tables, "rows": report.rows, "keys": report.keys, "resumed": resumed},
        )
        _pending_path().unlink(missing_ok=True)
    report.seconds = time.monotonic() - started
    return report


def _kept_mail() -> list[Path]:
    """The files of mail kept without an SMTP server, encrypted under the same keys."""
    if settings.EMAIL_BACKEND != KEPT_MAIL_BACKEND:
        return []
    return mail_capture.kept_files(mail_capture.capture_dir())


def _rotate_kept_mail(newest: Fernet, every_key: MultiFernet) -> tuple[int, int]:
    """Kept mail re-encrypted to the newest key, as the columns are; (rotated, unreadable)."""
    rotated = lost = 0
    for path in _kept_mail():
        token = path.read_bytes().decode("ascii", "replace")
        fresh, unreadable = _rotated(token, newest, every_key)
        lost += unreadable
        if fresh != token:
            mail_capture.replace_file(path, fresh.encode("ascii"))
            rotated += 1
    return rotated, lost


def _write_pending(new_key: str) -> None:
    path = _pending_path()
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.unlink(missing_ok=True)
    temporary.write_text(json.dumps({"key": key_fingerprint(new_key)}), encoding="utf-8")
    temporary.chmod(0o600)
    temporary.replace(path)


def _rotate_table(
    model: type[models.Model],
    fields: list[models.Field[Any, Any]],
    newest: Fernet,
    every_key: MultiFernet,
    batch_size: int,
    budget: list[int] | None,
) -> tuple[TableCount, int]:
    """Re-encrypt one table in batches; returns the counts and rows changed meanwhile."""
    count = TableCount()
    changed_meanwhile = 0
    last_pk: Any = None
    while budget is None or budget[0] > 0:
        with transaction.atomic():
            rows = _read_batch(model, fields, last_pk, batch_size)
            if not rows:
                break
            for pk, *tokens in rows:
                rewritten = []
                for token in tokens:
                    new_token, unreadable = _rotated(token, newest, every_key)
                    count.unreadable += unreadable
                    rewritten.append(new_token)
                if rewritten == tokens:
                    continue
                if _swap(model, fields, pk, tokens, rewritten):
                    count.rotated += 1
                else:
                    changed_meanwhile += 1
        last_pk = rows[-1][0]
        if budget is not None:
            budget[0] -= 1
    return count, changed_meanwhile


def _rotated(token: Any, newest: Fernet, every_key: MultiFernet) -> tuple[Any, int]:
    """The token re-encrypted to the newest key (itself when it already is), and 1 if unreadable."""
    if not token:
        return token, 0
    if _reads(newest, token):
        return token, 0
    raw = str(token).encode("ascii", "replace")
    try:
        return every_key.rotate(raw).decode("ascii"), 0
    except InvalidToken:
        return token, 1


def _quoted(
    model: type[models.Model], fields: list[models.Field[Any, Any]]
) -> tuple[str, str, list[str]]:
    quote = connection.ops.quote_name
    return (
        quote(model._meta.db_table),
        quote(str(model._meta.pk.column)),
        [quote(str(f.column)) for f in fields],
    )


def _read_batch(
    model: type[models.Model], fields: list[models.Field[Any, Any]], after: Any, size: int
) -> list[list[Any]]:
    """Stored tokens as they are (no decryption), by primary key, after `after`."""
    table, pk, columns = _quoted(model, fields)
    where = f"WHERE {pk} > %s " if after is not None else ""
    params = [after] if after is not None else []
    # Names come from models; values are parameters.
    sql = f"SELECT {pk}, {', '.join(columns)} FROM {table} {where}ORDER BY {pk} LIMIT %s"  # noqa: S608
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, size])
        return [list(row) for row in cursor.fetchall()]


def _swap(
    model: type[models.Model],
    fields: list[models.Field[Any, Any]],
    pk_value: Any,
    old: list[Any],
    new: list[Any],
) -> bool:
    """Write the new tokens only if the row still holds the old ones; True when written."""
    table, pk, columns = _quoted(model, fields)
    sets = ", ".join(f"{column} = %s" for column in columns)
    conditions = [f"{pk} = %s"]
    params: list[Any] = [*new, pk_value]
    for column, value in zip(columns, old, strict=True):
        if value is None:
            conditions.append(f"{column} IS NULL")
        else:
            conditions.append(f"{column} = %s")
            params.append(value)
    sql = f"UPDATE {table} SET {sets} WHERE {' AND '.join(conditions)}"  # noqa: S608
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return bool(cursor.rowcount == 1)


def tokens_needing_old_keys() -> dict[str, int]:
    """Per table, the stored tokens the newest key cannot read (old-key or unreadable)."""
    keys = config.fernet_keys()
    newest = Fernet(keys[0].encode("ascii"))
    remaining: dict[str, int] = {}
    for model, fields in encrypted_columns():
        table = model._meta.db_table
        for token in _all_tokens(model, fields):
            if not _reads(newest, token):
                remaining[table] = remaining.get(table, 0) + 1
    if kept := sum(1 for path in _kept_mail() if not _reads(newest, path.read_bytes())):
        remaining[MAIL] = kept
    return remaining


def _reads(key: Fernet, token: Any) -> bool:
    """Whether `key` decrypts the token (a stored text, or a kept file's bytes)."""
    raw = token if isinstance(token, bytes) else str(token).encode("ascii", "replace")
    try:
        key.decrypt(raw)
    except InvalidToken:
        return False
    return True


def _all_tokens(model: type[models.Model], fields: list[models.Field[Any, Any]]) -> Iterator[Any]:
    last_pk: Any = None
    while True:
        rows = _read_batch(model, fields, last_pk, BATCH_SIZE)
        if not rows:
            return
        for _pk, *tokens in rows:
            yield from (token for token in tokens if token)
        last_pk = rows[-1][0]


def retire_old_keys() -> RetireReport:
    """Keep only the newest key, once nothing stored needs the others.

    Refuses while a rotation is unfinished or any token still needs an older key.
    Run it only after every process started before the rotation was restarted: such
    a process encrypts with the old key, and its next write would be unreadable.
    """
    keys = config.fernet_keys()
    if pending_rotation() is not None:
        return RetireReport(
            ok=False,
            keys=len(keys),
            problem="a key rotation is unfinished: run `casewatch keys rotate` again first",
        )
    remaining = tokens_needing_old_keys()
    if remaining:
        total = sum(remaining.values())
        return RetireReport(
            ok=False,
            keys=len(keys),
            remaining=remaining,
            problem=(
                f"{total} stored value(s) still need an older key; restart every casewatch "
                "process, run `casewatch keys rotate` again, then retire"
            ),
        )
    retired = len(keys) - 1
    if retired:
        config.write_fernet_keys(keys[:1])
        _forget_cipher()
        _audit("keys.retired", {"retired": retired, "keys": 1})
    return RetireReport(ok=True, retired=retired, keys=1)


def _audit(action: str, details: dict[str, Any]) -> None:
    from casewatch.audit.chain import record

    record(action, object_type="keys", object_id="fernet", actor=ACTOR, details=details)
