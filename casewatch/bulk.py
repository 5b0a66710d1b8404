"""Writing many rows at once: imports of tens of thousands of cases, a worker's batches.

The two sizes want different tools, kept here side by side. Imports
(`insert_records`) go as follows.

Django's `bulk_create` compiles SQL for every ~37 rows on SQLite (it keeps to
999 parameters) and prepares every value of every row through the field; for
50,000 cases that is most of an import's time. Here each value is prepared
once per distinct value where that is safe, and rows go in with one prepared
statement (SQLite, in-process) or COPY (PostgreSQL, across a socket). Primary
keys are reserved first, so callers know every new row's id without RETURNING.

A worker's batch of a few dozen answers (`insert_instances`, `update_columns`)
goes in as model instances with one INSERT … RETURNING per table and one
prepared UPDATE, values passed to the driver as they are where it takes them.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Hashable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from django.db import connection, models
from django.db.models.constants import OnConflict
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


# Values the drivers take as they are, by field type: preparing them through the
# field (Django's way) costs more than the rest of a batch's inserts together.
_AS_IS: dict[type[Any], tuple[type[Any], ...]] = {
    models.CharField: (str,),
    models.TextField: (str,),
    models.FloatField: (float,),
    models.BooleanField: (bool,),
    models.IntegerField: (int,),
    models.BigIntegerField: (int,),
    models.PositiveIntegerField: (int,),
    models.BigAutoField: (int,),
    models.ForeignKey: (int,),
    models.DateTimeField: (),
}


def _preparer(column: Any) -> Callable[[Any], Any]:
    """How a value of `column` is stored: as it is for text, numbers and ids, else as Django does.

    An aware datetime goes straight to the backend's adapter, which is all that
    `get_db_prep_save` does with one after several layers of checks.
    """
    prepare = functools.partial(column.get_db_prep_save, connection=connection)
    kinds = _AS_IS.get(type(column))
    if kinds is None:
        return prepare
    if type(column) is models.DateTimeField:
        adapt = connection.ops.adapt_datetimefield_value
        # A batch stores each moment several times (observed, checked, read, since): on
        # SQLite, where adapting is formatting text, each distinct moment is formatted once.
        adapted: dict[datetime, Any] | None = {} if connection.vendor == "sqlite" else None

        def stored_moment(value: Any) -> Any:
            if type(value) is datetime and value.tzinfo is not None:
                if adapted is None:
                    return adapt(value)
                found = adapted.get(value)
                if found is None:
                    found = adapted[value] = adapt(value)
                return found
            return None if value is None else prepare(value)

        return stored_moment

    def stored(value: Any) -> Any:
        return value if value is None or type(value) in kinds else prepare(value)

    return stored


_M = TypeVar("_M", bound=models.Model)


def _row_values(rows: Sequence[_M], columns: list[Any]) -> tuple[list[Any], list[Any]]:
    """The columns and the flat list of their stored values, row after row, for an INSERT."""
    stamped = [
        c for c in columns if getattr(c, "auto_now", False) or getattr(c, "auto_now_add", False)
    ]
    related = [c for c in columns if isinstance(c, models.ForeignKey)]
    stores = [(_preparer(column), column.attname) for column in columns]
    values: list[Any] = []
    for row in rows:
        for key in related:  # A related row saved since it was assigned: take its id now.
            if getattr(row, key.attname) is None and key.is_cached(row):
                setattr(row, key.name, getattr(row, key.name))  # Keeps the object, sets its id.
        for column in stamped:
            column.pre_save(row, add=True)
        values += [store(getattr(row, name)) for store, name in stores]
    return columns, values


def insert_instances(rows: Sequence[_M], *, ignore_conflicts: bool = False) -> None:
    """Insert new model instances of one model and give each its id, as `bulk_create` does.

    For a worker's batches of tens of rows: one INSERT … RETURNING, values
    stored as they are where the driver takes them so. Imports of tens of
    thousands of rows use `insert_records` instead. With `ignore_conflicts`, rows
    that would break a unique constraint are left out and no ids are given
    (as `bulk_create(ignore_conflicts=True)` does).
    """
    if not rows:
        return
    model = type(rows[0])
    if ignore_conflicts or not connection.features.can_return_rows_from_bulk_insert:
        if ignore_conflicts and connection.vendor in ("sqlite", "postgresql"):
            _insert_ignoring_conflicts(rows)
        else:
            model._default_manager.bulk_create(rows, ignore_conflicts=ignore_conflicts)
        return
    meta = model._meta
    pk = meta.pk
    assert pk is not None
    columns, values = _row_values(
        rows, [column for column in meta.concrete_fields if column is not pk]
    )
    quote = connection.ops.quote_name
    names = ", ".join(quote(str(column.column)) for column in columns)
    per_row = "(" + ", ".join(["%s"] * len(columns)) + ")"
    chunk = max((connection.features.max_query_params or 30_000) // len(columns), 1)
    ids: list[int] = []
    with connection.cursor() as cursor:
        for start in range(0, len(rows), chunk):
            count = min(chunk, len(rows) - start)
            cursor.execute(
                f"INSERT INTO {quote(meta.db_table)} ({names}) "  # noqa: S608 - names from the model
                f"VALUES {', '.join([per_row] * count)} RETURNING {quote(str(pk.column))}",
                values[start * len(columns) : (start + count) * len(columns)],
            )
            # Ids grow in the order the rows were inserted, whatever order they come back in.
            ids += sorted(int(found) for (found,) in cursor.fetchall())
    for row, new_id in zip(rows, ids, strict=True):
        setattr(row, pk.attname, new_id)
        row._state.adding, row._state.db = False, connection.alias


def _insert_ignoring_conflicts(rows: Sequence[_M]) -> None:
    """`insert_instances(rows, ignore_conflicts=True)` on backends that say how to skip a row."""
    meta = type(rows[0])._meta
    pk = meta.pk
    assert pk is not None
    columns, values = _row_values(
        rows, [column for column in meta.concrete_fields if column is not pk]
    )
    quote = connection.ops.quote_name
    names = ", ".join(quote(str(column.column)) for column in columns)
    per_row = "(" + ", ".join(["%s"] * len(columns)) + ")"
    chunk = max((connection.features.max_query_params or 30_000) // len(columns), 1)
    insert = connection.ops.insert_statement(on_conflict=OnConflict.IGNORE)
    suffix = connection.ops.on_conflict_suffix_sql(columns, OnConflict.IGNORE, None, None)
    with connection.cursor() as cursor:
        for start in range(0, len(rows), chunk):
            count = min(chunk, len(rows) - start)
            cursor.execute(
                f"{insert} {quote(meta.db_table)} ({names}) "  # names come from the model
                f"VALUES {', '.join([per_row] * count)} {suffix}",
                values[start * len(columns) : (start + count) * len(columns)],
            )


def update_columns(rows: Sequence[_M], fields: Sequence[str]) -> None:
    """Write `fields` of saved instances of one model: one prepared UPDATE run for every row.

    Cheaper than `bulk_update`'s CASE per column.
    """
    if not rows:
        return
    meta = type(rows[0])._meta
    assert meta.pk is not None
    by_name = {column.name: column for column in meta.concrete_fields}
    columns = [by_name[name] for name in fields]
    quote = connection.ops.quote_name
    assignments = ", ".join(f"{quote(str(column.column))} = %s" for column in columns)
    table, pk = quote(meta.db_table), quote(str(meta.pk.column))
    stores = [(_preparer(column), column.attname) for column in columns]
    values = [[store(getattr(row, name)) for store, name in stores] + [row.pk] for row in rows]
    with connection.cursor() as cursor:
        # Names come from the model, values are parameters.
        cursor.executemany(
            f"UPDATE {table} SET {assignments} WHERE {pk} = %s",  # noqa: S608
            values,
        )
