"""Writing many rows at once, for imports of tens of thousands of cases.

Django's `bulk_create` compiles SQL for every ~37 rows on SQLite (it keeps to
999 parameters) and prepares every value of every row through the field; for
50,000 cases that is most of an import's time. Here each value is prepared
once per distinct value where that is safe, and rows go in with one prepared
statement (SQLite, in-process) or COPY (PostgreSQL, across a socket). Primary
keys are reserved first, so callers know every new row's id without RETURNING.
"""

from __future__ import annotations

import json
from collections.abc import Hashable, Sequence
from typing import Any

from django.db import connection, models
from django.utils import timezone


def insert_rows(table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Insert ready-to-store rows on the current connection (inside the caller's transaction)."""
    if not rows:
        return
    quote = connection.ops.quote_name
    names = ", ".join(quote(c) for c in columns)
    with connection.cursor() as cursor:
        raw = cursor.cursor
        if connection.vendor == "postgresql" and hasattr(raw, "copy"):  # psycopg 3
            with (
                connection.wrap_database_errors,
                raw.copy(f"COPY {quote(table)} ({names}) FROM STDIN") as copy,
            ):
                for row in rows:
                    copy.write_row(row)
            return
        placeholders = ", ".join(["%s"] * len(columns))
        # Names come from models, values are parameters: nothing here comes from outside.
        cursor.executemany(
            f"INSERT INTO {quote(table)} ({names}) VALUES ({placeholders})",  # noqa: S608
            rows,
        )


def reserve_ids(model: type[models.Model], count: int) -> list[int]:
    """The next `count` primary keys of `model`'s table, for this transaction's inserts.

    On SQLite the transaction already holds the write lock (transactions are
    IMMEDIATE), so nobody else can take ids between this and the insert. On
    PostgreSQL the ids come from the table's own sequence.
    """
    if count <= 0:
        return []
    table = model._meta.db_table
    pk = model._meta.pk
    assert pk is not None
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s)",
                [table, pk.column, count],
            )
            return [row[0] for row in cursor.fetchall()]
        quote = connection.ops.quote_name
        cursor.execute(f"SELECT COALESCE(MAX({quote(str(pk.column))}), 0) FROM {quote(table)}")  # noqa: S608
        start = int(cursor.fetchone()[0]) + 1
    return list(range(start, start + count))


def insert_records(model: type[models.Model], records: Sequence[dict[str, Any]]) -> None:
    """Insert new rows of `model` given as {attname: value}; each record gets its "id".

    Columns a record leaves out hold the field's default, prepared once for the
    whole batch; so does the moment stored in auto_now and auto_now_add columns.
    No model instances are made: at 50,000 rows their construction alone costs
    more than the insert.
    """
    if not records:
        return
    meta = model._meta
    fields = list(meta.concrete_fields)
    pk = meta.pk
    assert pk is not None
    for record, new_id in zip(records, reserve_ids(model, len(records)), strict=True):
        record[pk.attname] = new_id
    now = timezone.now()
    present: set[str] = set()
    for record in records:
        present.update(record)
    count = len(records)
    columns: list[list[Any]] = []
    # Column by column: a column no record sets is one prepared default repeated.
    for field in fields:
        attname = field.attname
        if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
            columns.append([_prepare(field, now)] * count)
            continue
        default = _prepare(field, field.get_default()) if attname != pk.attname else None
        if attname not in present:
            columns.append([default] * count)
            continue
        values = [record.get(attname, _MISSING) for record in records]
        if getattr(field, "encrypts", False) or isinstance(field, models.JSONField):
            # Encrypted fields get a fresh token per row, never a shared one.
            columns.append([default if v is _MISSING else _prepare(field, v) for v in values])
            continue
        prepared: dict[tuple[type, Hashable], Any] = {}
        column = []
        for value in values:
            if value is _MISSING:
                column.append(default)
                continue
            key = (type(value), value)
            found = prepared.get(key, _MISSING)
            if found is _MISSING:
                found = prepared[key] = _prepare(field, value)
            column.append(found)
        columns.append(column)
    rows = list(zip(*columns, strict=True))
    insert_rows(meta.db_table, [str(f.column) for f in fields], rows)


_MISSING = object()


def _prepare(field: models.Field[Any, Any], value: Any) -> Any:
    if isinstance(field, models.JSONField):
        return json.dumps(value, ensure_ascii=False)
    return field.get_db_prep_save(value, connection)
