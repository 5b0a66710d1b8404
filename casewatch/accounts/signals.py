"""Logins, failed logins, lockouts and logouts, written to the audit chain.

Django announces each through a signal (`user_logged_in`, `user_login_failed`,
`user_logged_out`); `AccountsConfig.ready()` connects the receivers here. People are
named by id, never by e-mail address: a failed login names no account at all, only
a keyed hash of the username typed (so repeated attempts at one name can be seen
together without the log ever holding the name), and the remote address.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

from axes.signals import user_locked_out
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.db import transaction
from django.http import HttpRequest

from casewatch.accounts.models import Membership
from casewatch.audit.chain import PendingEntry, record, record_many, staff_actor
from casewatch.config import audit_key

# Keeps a username hash from ever matching another keyed hash made with the audit key.
USERNAME_HASH_CONTEXT = b"casewatch.login.username:"


def username_hash(username: str) -> str:
    """The keyed hash a failed login is recorded under: same name, same hash; no key, no name.

    Case and surrounding spaces are ignored, as the login form ignores them.
    """
    text = username.strip().casefold().encode("utf-8", "surrogatepass")
    return hmac.new(audit_key(), USERNAME_HASH_CONTEXT + text, hashlib.sha256).hexdigest()


def remote_address(request: HttpRequest | None) -> str | None:
    """Where the request came from, as the WSGI server saw it (None outside a request)."""
    if request is None:
        return None
    address = request.META.get("REMOTE_ADDR")
    return str(address)[:64] if address else None


def record_for_user(action: str, user_pk: int, details: Mapping[str, Any] | None = None) -> None:
    """One entry per firm the person belongs to, so each firm's trail shows its own staff.

    Someone in no firm (an operator's superuser) gets one entry without a firm. Joins
    the caller's transaction, like `record`.
    """
    firm_ids: list[int | None] = list(
        Membership.objects.filter(user_id=user_pk)
        .order_by("firm_id")
        .values_list("firm_id", flat=True)
    )
    entries = [
        PendingEntry(
            action=action,
            object_type="user",
            object_id=user_pk,
            firm_id=firm_id,
            actor=staff_actor(user_pk),
            details=details,
        )
        for firm_id in (firm_ids or [None])
    ]
    record_many(entries)


def on_logged_in(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    with transaction.atomic():
        record_for_user("account.logged_in", user.pk, {"remote_addr": remote_address(request)})


def on_logged_out(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    if user is None or user.pk is None:
        return  # Logging out while not logged in changes nothing.
    with transaction.atomic():
        record_for_user("account.logged_out", user.pk, {"remote_addr": remote_address(request)})


def on_login_failed(
    sender: Any, credentials: Mapping[str, Any], request: HttpRequest | None = None, **kwargs: Any
) -> None:
    _record_attempt("account.login_failed", credentials.get("username"), request)


def on_locked_out(
    sender: Any, request: HttpRequest | None = None, username: str | None = None, **kwargs: Any
) -> None:
    """django-axes locked a login out (too many wrong passwords from one address)."""
    _record_attempt("account.locked_out", username, request)


def _record_attempt(action: str, username: object, request: HttpRequest | None) -> None:
    """Someone not signed in tried a login: named by its keyed hash, never in plain."""
    hashed = username_hash(username) if isinstance(username, str) else None
    record(
        action,
        object_type="login_attempt",
        object_id=hashed or "unknown",
        actor="anonymous",
        details={"username_hash": hashed, "remote_addr": remote_address(request)},
    )


def connect() -> None:
    """Called once from `AccountsConfig.ready()`; the dispatch uids keep it idempotent."""
    user_logged_in.connect(on_logged_in, dispatch_uid="casewatch.audit.logged_in")
    user_logged_out.connect(on_logged_out, dispatch_uid="casewatch.audit.logged_out")
    user_login_failed.connect(on_login_failed, dispatch_uid="casewatch.audit.login_failed")
    user_locked_out.connect(on_locked_out, dispatch_uid="casewatch.audit.locked_out")
