"""API tokens: made with their secret shown once, found by the secret's hash, audited in use.

Here rather than in `api/` because both the API (finding and noting use) and the staff
app and CLI (issuing and revoking) need them, and those layers know nothing of each other.

Use is audited at most once per token per minute: the first request in a minute sets
`last_used_at` by a conditional UPDATE (last use a minute ago or more), and only the
request that wins that UPDATE records "api_token.used". Concurrent requests therefore
never write two rows for the same minute, and a busy integration costs one audit row a
minute instead of one per request. What each write did is audited on its own anyway
(case.created, case.updated, case.archived with actor `token:<pk>`).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from casewatch.accounts.models import ApiToken, Firm, Scope
from casewatch.audit.chain import record as audit

PREFIX = "cw_"
# How often one token's use is written to the audit log (and its last_used_at moved).
USE_RECORDED_EVERY = timedelta(minutes=1)


def token_actor(token: ApiToken) -> str:
    """How the audit chain names a token, as `user:<pk>` names a member."""
    return f"token:{token.pk}"


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class IssuedToken:
    token: ApiToken
    secret: str  # shown once; only its hash is kept


def create_token(
    firm: Firm, scope: str, *, name: str = "", created_by: User | None = None, actor: str
) -> IssuedToken:
    """A new token of `scope` (read or write) for the firm, audited as api_token.created."""
    if scope not in Scope.values:
        raise ValueError(f"scope must be one of {', '.join(Scope.values)}")
    secret = PREFIX + secrets.token_urlsafe(32)
    with transaction.atomic():
        token = ApiToken.objects.create(
            firm=firm,
            name=name,
            scope=scope,
            secret_hash=secret_hash(secret),
            created_by=created_by,
        )
        audit(
            "api_token.created",
            object_type="api_token",
            object_id=token.pk,
            firm_id=firm.pk,
            actor=actor,
            details={"scope": scope, "name": name},
        )
    return IssuedToken(token, secret)


def revoke_token(token: ApiToken, *, actor: str) -> None:
    """Refuse the token from now on (401), keeping its row for the audit trail."""
    with transaction.atomic():
        changed = ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(
            revoked_at=timezone.now()
        )
        if changed:
            audit(
                "api_token.revoked",
                object_type="api_token",
                object_id=token.pk,
                firm_id=token.firm_id,
                actor=actor,
            )


def find_token(secret: str) -> ApiToken | None:
    """The live token whose secret this is; None for an unknown or revoked one.

    The lookup is by the SHA-256 of the secret, so the database compares hashes an
    attacker cannot choose; the final comparison is constant-time all the same.
    """
    if not secret.startswith(PREFIX) or len(secret) > 200:
        return None
    digest = secret_hash(secret)
    token = ApiToken.objects.select_related("firm").filter(secret_hash=digest).first()
    if token is None or not hmac.compare_digest(token.secret_hash, digest):
        return None
    return None if token.revoked_at is not None else token


def note_use(token: ApiToken, *, method: str, path: str, now: datetime | None = None) -> bool:
    """Move last_used_at and audit the use, at most once a minute per token; True if recorded."""
    now = now or timezone.now()
    with transaction.atomic():
        won = ApiToken.objects.filter(
            Q(last_used_at__isnull=True) | Q(last_used_at__lte=now - USE_RECORDED_EVERY),
            pk=token.pk,
        ).update(last_used_at=now)
        if won:
            audit(
                "api_token.used",
                object_type="api_token",
                object_id=token.pk,
                firm_id=token.firm_id,
                actor=token_actor(token),
                details={"method": method, "path": path[:200]},
                at=now,
            )
    if won:
        token.last_used_at = now
    return bool(won)
