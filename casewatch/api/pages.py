"""Pages of the API's lists, read by an opaque, signed cursor: where the last page ended.

Keyset ("seek") pagination. A list's order is its query's own `order_by`, ending in the
primary key so that no two rows tie; the cursor keeps the last row's values of those
columns, and the next page is the rows after them:

    WHERE key > k OR (key = k AND pk > p)      -- PostgreSQL and SQLite alike

With an offset, a row added or removed before the reader's position shifted every row
after it: a client following `next` saw one row twice or missed one. With a position
given by values, rows added or removed elsewhere change nothing: every row that matches
the query throughout the walk, and whose order columns do not change, is read exactly
once. A row added behind the reader is not in this walk (the next walk has it); a row
whose order column changes moves, and may be read twice or not at all.

Details that make it exact:

- NULLs: a nullable column is placed where the database itself sorts NULLs (PostgreSQL:
  as the largest value, SQLite: as the smallest), so a list keeps the very order the
  web app shows on each database, and the condition after a NULL or before one says so.
- Values round-trip through the cursor as the column's own field reads them back
  (`Field.to_python`): datetimes as ISO 8601 with their microseconds and offset, dates
  as ISO dates, numbers and text as they are. Comparisons happen in the database with
  the database's own ordering (collation of text, NULLs), never in Python.
- The first column is also given as a plain range (`key >= k`) besides the OR, so that
  an index on it starts the page where the last one ended instead of walking to it.

The cursor is signed and bound to the list's path and its filters: one made for other
filters or another list, or not made by casewatch, is a 400 problem, never some other
list's page. A cursor of the offset kind casewatch gave before is honoured once (its
page is read by offset), and the page it answers gives a cursor of the new kind.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any
from urllib.parse import urlencode

from django.core import signing
from django.core.exceptions import ValidationError
from django.db import connections
from django.db.models import Field as ModelField
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from ninja import Field, Schema

from casewatch.api.problems import Problem

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
CURSOR_SALT = "casewatch.api.cursor"
# The kind of cursor this module makes: the last row's order values ("k").
CURSOR_VERSION = 2
NOT_OURS = "This cursor was not made by casewatch."
OTHER_QUERY = "This cursor belongs to another query: keep the same filters."
OTHER_LIST = "This cursor belongs to another list: follow that list's `next`."


class PageQuery(Schema):
    cursor: str | None = Field(None, max_length=2000)
    limit: int = Field(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)


@dataclass(frozen=True)
class Key:
    """One column of a list's order."""

    name: str
    field: ModelField[Any, Any]
    descending: bool

    def value_of(self, row: Any) -> Any:
        return getattr(row, self.field.attname)


def order_keys(rows: QuerySet[Any]) -> list[Key]:
    """The columns `rows` is ordered by; the primary key must come last, to break ties."""
    model = rows.model
    keys: list[Key] = []
    for term in rows.query.order_by:
        if not isinstance(term, str) or term.startswith("?") or "__" in term:
            raise ValueError(f"a page cannot seek past {term!r}: order by the model's own columns")
        name = term.removeprefix("-")
        field = model._meta.pk if name == "pk" else model._meta.get_field(name)
        assert isinstance(field, ModelField)
        keys.append(Key(name, field, term.startswith("-")))
    if not keys or not keys[-1].field.primary_key:
        raise ValueError(f"{model.__name__} rows ordered by {rows.query.order_by}: end with pk")
    return keys


def _encoded(value: Any) -> Any:
    return value.isoformat() if isinstance(value, date) else value


def _decoded(key: Key, value: Any) -> Any:
    return None if value is None else key.field.to_python(value)


def _beyond(key: Key, value: Any, nulls_first: bool, *, or_same: bool = False) -> Q | None:
    """Rows after `value` (or at it, `or_same`) in this column's order; None: no row can be.

    NULLs are only spoken of for a column that may hold them.
    """
    if value is None:
        return Q(**{f"{key.name}__isnull": False}) if nulls_first else None
    operator = ("lt" if key.descending else "gt") + ("e" if or_same else "")
    beyond = Q(**{f"{key.name}__{operator}": value})
    if key.field.null and not nulls_first:
        beyond |= Q(**{f"{key.name}__isnull": True})
    return beyond


def _same(key: Key, value: Any) -> Q:
    return Q(**{f"{key.name}__isnull": True}) if value is None else Q(**{key.name: value})


def rows_after(rows: QuerySet[Any], keys: list[Key], values: list[Any]) -> QuerySet[Any]:
    """The rows of `rows` after the row whose order values are `values`, in SQL."""
    nulls_largest = connections[rows.db].features.nulls_order_largest
    after = Q()
    same = Q()
    for key, value in zip(keys, values, strict=True):
        # Ascending, NULLs come first where they are the smallest; descending, the largest.
        beyond = _beyond(key, value, nulls_first=nulls_largest == key.descending)
        if beyond is not None:
            after |= same & beyond
        same &= _same(key, value)
    # The primary key is never NULL, so there is always a last disjunct: `after` is not empty.
    first, value = keys[0], values[0]
    if len(keys) > 1 and value is not None:
        # The same condition as a plain range on the first column, for its index.
        at_or_after = _beyond(first, value, nulls_largest == first.descending, or_same=True)
        rows = rows.filter(at_or_after)
    return rows.filter(after)


def _read_cursor(
    cursor: str, path: str, query: dict[str, str], keys: list[Key] | None
) -> tuple[list[Any] | None, int]:
    """The last row's values (None for a cursor of the old offset kind) and the offset.

    `keys` None: the list is empty whatever the position, so only whose cursor it is counts.
    """
    try:
        found = signing.loads(cursor, salt=CURSOR_SALT)
    except signing.BadSignature:
        raise Problem(400, NOT_OURS) from None
    if not isinstance(found, dict) or found.get("q") != query:
        raise Problem(400, OTHER_QUERY)
    if found.get("v") != CURSOR_VERSION:
        offset = found.get("o", 0)
        if not isinstance(offset, int) or offset < 0:
            raise Problem(400, NOT_OURS)
        return None, offset
    values = found.get("k")
    if found.get("p") != path or not isinstance(values, list):
        raise Problem(400, OTHER_LIST)
    if keys is None:
        return None, 0
    if len(values) != len(keys):
        raise Problem(400, OTHER_LIST)
    try:
        return [_decoded(key, value) for key, value in zip(keys, values, strict=True)], 0
    except (ValidationError, TypeError, ValueError):
        raise Problem(400, OTHER_LIST) from None


def page_of(
    request: HttpRequest,
    rows: QuerySet[Any] | None,
    query: dict[str, str],
    cursor: str | None,
    limit: int,
) -> tuple[list[Any], str | None]:
    """One page of `rows` (ordered, primary key last) and the next page's URL, or None.

    `query` is the list's filters as they go back into the URL: the cursor is bound to
    them and to the request's path. One row more than the page is read, so that the last
    page says it is the last (`next` null) without an empty page after it.
    """
    keys = None if rows is None else order_keys(rows)
    values, offset = (None, 0) if not cursor else _read_cursor(cursor, request.path, query, keys)
    if rows is None or keys is None:
        return [], None
    if values is not None:
        rows = rows_after(rows, keys, values)
    items = list(rows[offset : offset + limit + 1])
    following = None
    if len(items) > limit:
        last = items[limit - 1]
        token = signing.dumps(
            {
                "v": CURSOR_VERSION,
                "p": request.path,
                "q": query,
                "k": [_encoded(key.value_of(last)) for key in keys],
            },
            salt=CURSOR_SALT,
            compress=True,
        )
        following = request.build_absolute_uri(
            request.path + "?" + urlencode({**query, "limit": limit, "cursor": token})
        )
    return items[:limit], following
