"""What the import wizard and the status check keep between two pages, encrypted on disk.

An uploaded caseload holds client names, e-mails and phones, so it never goes into
the session or a cookie and is never written in clear: each item is a Fernet token
made with the client-data keys (casewatch.cases.fields) in `uploads/` under the data
directory. Only the member who made it, at their firm, can read it back. A token more
than a day old no longer decrypts; its files are removed when its work is done, or
by the next visit to these pages after the day is over.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from cryptography.fernet import InvalidToken
from django.http import Http404

from casewatch.accounts.models import Membership
from casewatch.cases.fields import cipher
from casewatch.config import data_dir

KEEP = timedelta(days=1)
FOLDER = "uploads"
# Tokens are secrets.token_urlsafe(24): 32 characters, nothing that could name another path.
TOKEN = re.compile(r"[A-Za-z0-9_-]{32}")
_PARTS = ("meta", "data")


def folder() -> Path:
    path = data_dir() / FOLDER
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def hold(membership: Membership, kind: str, data: bytes | None, meta: dict[str, Any]) -> str:
    """Keep `data` (if any) and its `meta` (JSON) for this member; returns their token."""
    sweep()
    token = secrets.token_urlsafe(24)
    if data is not None:
        _write(token, "data", data)
    _write_meta(token, {**meta, "kind": kind, "firm": membership.firm_id, "member": membership.pk})
    return token


def meta_of(token: str, membership: Membership, kind: str) -> dict[str, Any]:
    """The item's meta, or 404: unknown, expired, of another kind, member or firm."""
    sweep()
    meta = json.loads(_read(token, "meta"))
    if not isinstance(meta, dict) or (meta.get("kind"), meta.get("firm"), meta.get("member")) != (
        kind,
        membership.firm_id,
        membership.pk,
    ):
        raise Http404("no such upload")
    return meta


def data_of(token: str, membership: Membership, kind: str) -> bytes:
    meta_of(token, membership, kind)
    return _read(token, "data")


def update_meta(token: str, meta: dict[str, Any]) -> None:
    """Replace the meta of an item already checked with `meta_of` (its owner fields kept)."""
    _write_meta(token, meta)


def drop_data(token: str) -> None:
    """Remove the held file itself, keeping the meta (what was done with it)."""
    with contextlib.suppress(FileNotFoundError):
        _path(token, "data").unlink()


def drop(token: str) -> None:
    for part in _PARTS:
        with contextlib.suppress(FileNotFoundError):
            _path(token, part).unlink()


def sweep(now: float | None = None) -> int:
    """Remove every held file older than KEEP; returns how many."""
    limit = (time.time() if now is None else now) - KEEP.total_seconds()
    removed = 0
    for path in folder().iterdir():
        with contextlib.suppress(FileNotFoundError):
            if path.stat().st_mtime < limit:
                path.unlink()
                removed += 1
    return removed


def _path(token: str, part: str) -> Path:
    if not TOKEN.fullmatch(token) or part not in _PARTS:
        raise Http404("no such upload")
    return folder() / f"{token}.{part}"


def _write_meta(token: str, meta: dict[str, Any]) -> None:
    _write(token, "meta", json.dumps(meta, ensure_ascii=False).encode("utf-8"))


def _write(token: str, part: str, content: bytes) -> None:
    """Encrypt and write, readable by the owner only, replacing any earlier version whole."""
    path = _path(token, part)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(cipher().encrypt(content))
    os.replace(temporary, path)


def _read(token: str, part: str) -> bytes:
    try:
        sealed = _path(token, part).read_bytes()
        return cipher().decrypt(sealed, ttl=int(KEEP.total_seconds()))
    except (FileNotFoundError, InvalidToken) as exc:
        raise Http404("no such upload") from exc
