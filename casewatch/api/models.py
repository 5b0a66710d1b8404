"""What the API keeps per token: responses for `Idempotency-Key` repeats, rate windows.

The tokens themselves (casewatch.accounts.models.ApiToken) live with the firm, since the
staff app issues and revokes them too.
"""

from __future__ import annotations

from django.db import models

from casewatch.accounts.models import ApiToken
from casewatch.cases.fields import EncryptedTextField


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
