"""API tokens and the responses kept for `Idempotency-Key` repeats.

A token's secret is shown once and only its SHA-256 is stored: a secret of 32 random
bytes needs no slow hash, and a hash lookup by unique index finds it in constant time.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from casewatch.accounts.models import Firm
from casewatch.cases.fields import EncryptedTextField


class Scope(models.TextChoices):
    READ = "read"
    WRITE = "write"


class ApiToken(models.Model):
    """One firm's key to the API; `write` may also change cases and see clients' details."""

    firm = models.ForeignKey(Firm, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, blank=True)
    scope = models.CharField(max_length=5, choices=Scope.choices)
    secret_hash = models.CharField(max_length=64, unique=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"API token {self.pk} ({self.scope}) of firm {self.firm_id}"


class IdempotentResponse(models.Model):
    """The answer to a POST sent with an `Idempotency-Key`, kept 24 hours for repeats.

    The body may hold a client's name, e-mail or phone (answers to write tokens), so it
    is encrypted at rest like every other copy of client data.
    """

    token = models.ForeignKey(ApiToken, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    request_hash = models.CharField(max_length=64)
    status = models.PositiveSmallIntegerField()
    body = EncryptedTextField(blank=True, default="")
    created_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["token", "key"], name="one_response_per_key")
        ]
        indexes = [models.Index(fields=["created_at"])]

    def __str__(self) -> str:
        return f"response to key {self.key!r} of token {self.token_id}"


class RateWindow(models.Model):
    """Requests one token made in one minute: the per-token rate limit, kept where every
    web process sees it (no extra service; a cache per process would multiply the limit)."""

    token = models.ForeignKey(ApiToken, on_delete=models.CASCADE, related_name="+")
    minute = models.DateTimeField()
    requests = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["token", "minute"], name="one_window_per_minute")
        ]

    def __str__(self) -> str:
        return f"{self.requests} requests of token {self.token_id} at {self.minute:%H:%M}"
