"""The blind index of client names: find "García" among encrypted names without decrypting.

Each word of a client's name is folded (accents stripped, case folded) and hashed
with HMAC-SHA256 under a key derived for the firm from `keys/name_index.key`; the
first 32 hex digits are stored as a `NameToken`. A search folds and hashes its words
the same way and looks the tokens up, so the database never holds a name in clear,
and the same word gives unrelated tokens in two firms.

Every indexed client has at least one row: a client without a name gets the empty
token, which no search produces. That is how `ensure_name_index` tells a client
indexed before from one written by code that did not index it, without decrypting.

Whoever creates a client or changes its name writes its tokens in the same
transaction: `index_names` for any number of clients (bulk, as imports need), or
`index_client` for one. Names never reach a log from here.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
import unicodedata
from collections.abc import Mapping
from typing import Any

from django.core.cache import cache
from django.db import transaction
from django.db.models import Count, Exists, Max, OuterRef, QuerySet

from casewatch.accounts.models import Firm
from casewatch.bulk import insert_rows, reserve_ids
from casewatch.cases.models import Client, NameToken
from casewatch.config import name_index_key

TOKEN_HEX = 32
# The token of a client with no name: "indexed, nothing to find".
NO_NAME = ""
# Query parameters stay under SQLite's limit.
CHUNK = 900
# Clients indexed in one go by the lazy backfill, so that no one request decrypts too many.
BACKFILL_BATCH = 5000
# How long a firm counts as fully indexed before its clients are looked over again.
CHECKED_SECONDS = 3600

_WORD = re.compile(r"\w+")


def fold(text: str) -> str:
    """Text as the index compares it: compatibility forms, no accents, case folded."""
    decomposed = unicodedata.normalize("NFKD", text)
    bare = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return unicodedata.normalize("NFKC", bare).casefold()


def name_words(name: str) -> set[str]:
    """The words a client may be found by.

    "María García-López" → maria, garcia, lopez, garcialopez: each part of a
    hyphenated or apostrophed word, and the word with its punctuation dropped.
    """
    words: set[str] = set()
    for chunk in fold(name).split():
        parts = _WORD.findall(chunk)
        words.update(parts)
        if len(parts) > 1:
            words.add("".join(parts))
    return words


def query_words(text: str) -> list[str]:
    """The words of a search, each as one folded word ("O'Brien" → obrien), in order."""
    found: list[str] = []
    for chunk in fold(text).split():
        word = "".join(_WORD.findall(chunk))
        if word and word not in found:
            found.append(word)
    return found


@functools.lru_cache(maxsize=256)
def _firm_key(master: bytes, firm_id: int) -> bytes:
    return hmac.new(master, f"casewatch name index, firm {firm_id}".encode(), "sha256").digest()


def _hash(key: bytes, word: str) -> str:
    return hmac.new(key, word.encode("utf-8"), hashlib.sha256).hexdigest()[:TOKEN_HEX]


def token(firm_id: int, word: str) -> str:
    """The stored token of one folded word at one firm."""
    return _hash(_firm_key(name_index_key(), firm_id), word)


def name_tokens(firm_id: int, name: str, *, key: bytes | None = None) -> set[str]:
    """Every token a client with this name is stored under (the empty token when none)."""
    key = key or _firm_key(name_index_key(), firm_id)
    words = name_words(name)
    return {_hash(key, word) for word in words} if words else {NO_NAME}


def index_names(firm_id: int, names: Mapping[int, str], *, replace: bool = True) -> None:
    """Write the tokens of these clients ({client id: name}), in the caller's transaction.

    `replace=False` when the clients are new and have no tokens yet (saves a DELETE).
    Rows go in as plain tuples (casewatch.bulk): an import of 50,000 clients writes
    about 150,000 of them.
    """
    if not names:
        return
    key = _firm_key(name_index_key(), firm_id)
    with transaction.atomic():
        if replace:
            ids = list(names)
            for start in range(0, len(ids), CHUNK):
                NameToken.objects.filter(client_id__in=ids[start : start + CHUNK]).delete()
        rows = [
            (client_id, found)
            for client_id, name in names.items()
            for found in name_tokens(firm_id, name, key=key)
        ]
        new_ids = reserve_ids(NameToken, len(rows))
        insert_rows(
            NameToken._meta.db_table,
            ["id", "firm_id", "client_id", "token"],
            [
                (pk, firm_id, client_id, found)
                for pk, (client_id, found) in zip(new_ids, rows, strict=True)
            ],
        )


def index_client(client: Client) -> None:
    """Index one saved client after its name was set or changed."""
    index_names(client.firm_id, {client.pk: client.name})


def ensure_name_index(firm: Firm) -> int:
    """Index the firm's clients that have no tokens yet; returns how many it indexed.

    Cheap when nothing is missing: one look at the firm's newest client id. Clients
    written before the index existed, or by code that forgot to index them, are
    found here on the next search, a batch at a time.
    """
    marker = _marker(firm)
    newest = Client.objects.filter(firm=firm).aggregate(newest=Max("pk"))["newest"]
    if newest is None:
        return 0
    checked = cache.get(marker)
    if isinstance(checked, int) and checked >= newest:
        return 0
    since = checked if isinstance(checked, int) else 0
    unindexed = (
        Client.objects.filter(firm=firm, pk__gt=since)
        .filter(~Exists(NameToken.objects.filter(client_id=OuterRef("pk"))))
        .order_by("pk")
    )
    batch = list(unindexed[:BACKFILL_BATCH])
    if batch:
        index_names(firm.pk, {client.pk: client.name for client in batch}, replace=False)
    if len(batch) < BACKFILL_BATCH:
        cache.set(marker, newest, CHECKED_SECONDS)
    return len(batch)


def clients_named(firm: Firm, text: str) -> QuerySet[Any, Any] | None:
    """Ids of the firm's clients whose name has every word of `text` (a subquery).

    None when `text` has no word to look for.
    """
    words = query_words(text)
    if not words:
        return None
    tokens = {token(firm.pk, word) for word in words}
    found = NameToken.objects.filter(firm=firm, token__in=tokens).values("client_id")
    if len(tokens) == 1:
        return found
    return (
        found.annotate(matched=Count("token", distinct=True))
        .filter(matched=len(tokens))
        .values("client_id")
    )


def _marker(firm: Firm) -> str:
    """The cache key saying up to which client id the firm was looked over.

    It names the firm's creation time too: a restored or recreated database that
    reuses the id is not taken for the firm that was checked.
    """
    return f"casewatch:name-index-checked:{firm.pk}:{firm.created_at.timestamp()}"
