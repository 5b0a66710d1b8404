"""The audit chain's tables: append-only entries, and the head that seals their end."""

from __future__ import annotations

import json
from typing import Any, NoReturn

from django.db import models


class AppendOnlyError(Exception):
    """Code tried to change or remove an audit entry, which nothing may do."""


class AuditEntryQuerySet(models.QuerySet["AuditEntry"]):
    """Refuses the bulk paths to changing entries; reading and appending stay open."""

    def update(self, **kwargs: Any) -> NoReturn:
        raise AppendOnlyError("audit entries are never changed")

    def delete(self) -> NoReturn:
        raise AppendOnlyError("audit entries are never deleted")


class AuditEntry(models.Model):
    """One link of the chain. Written only by `casewatch.audit.chain`, never changed.

    `seq` is the position in the chain (1, 2, 3, …) and the primary key, so two
    entries can never claim one position. `firm_id` is a plain integer, not a
    foreign key: this app knows nothing of firms. `details` is stored as canonical
    JSON text rather than in a JSON column, so that the bytes hashed are the bytes
    stored on every backend (see `casewatch.audit.hashing`); read it through the
    `details` property.
    """

    seq = models.PositiveBigIntegerField(primary_key=True)
    at = models.DateTimeField()
    firm_id = models.BigIntegerField(null=True, blank=True)
    actor = models.CharField(max_length=64)  # "system", "import", "worker", "user:<id>"
    action = models.CharField(max_length=64)  # "case.created", "status_event.recorded", …
    object_type = models.CharField(max_length=64)
    object_id = models.CharField(max_length=128)
    details_json = models.TextField(db_column="details", default="{}")
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64)

    objects = AuditEntryQuerySet.as_manager()

    class Meta:
        ordering = ("seq",)
        verbose_name_plural = "audit entries"
        # The one query worth an index from the start: the history of one object.
        # Each index costs imports about 0.1 s per 50,000 entries on SQLite.
        indexes = (
            models.Index(fields=("object_type", "object_id"), name="audit_entry_object_idx"),
        )

    def __str__(self) -> str:
        return f"#{self.seq} {self.action} {self.object_type}:{self.object_id}"

    def save(self, *args: Any, **kwargs: Any) -> NoReturn:
        if self._state.adding:
            raise AppendOnlyError(
                "append audit entries with casewatch.audit.chain.record(), which chains them"
            )
        raise AppendOnlyError("audit entries are never changed")

    def delete(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise AppendOnlyError("audit entries are never deleted")

    @property
    def details(self) -> Any:
        """What changed, as the caller passed it (after a JSON round trip)."""
        return json.loads(self.details_json)


class AuditHead(models.Model):
    """The single row (pk=1) naming the chain's last entry, sealed with the audit key.

    `mac` = HMAC(key, f"{seq}:{hash}"): without the key, no one can remove the last
    entries and rewind the head to match. Every append locks this row first
    (`select_for_update`), which is what serializes appends on PostgreSQL.
    """

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    seq = models.PositiveBigIntegerField()
    hash = models.CharField(max_length=64)
    mac = models.CharField(max_length=64)

    class Meta:
        constraints = (models.CheckConstraint(condition=models.Q(id=1), name="audit_head_one_row"),)

    def __str__(self) -> str:
        return f"audit head at #{self.seq}"


class AccessRecordQuerySet(models.QuerySet["AccessRecord"]):
    """Reading and appending only; old records leave by `casewatch.audit.access.prune`."""

    def update(self, **kwargs: Any) -> NoReturn:
        raise AppendOnlyError("access records are never changed")

    def delete(self) -> NoReturn:
        raise AppendOnlyError("access records leave only by casewatch.audit.access.prune()")


class AccessRecord(models.Model):
    """One look at a case page or at a client's personal data: who, what, when, from where.

    Kept apart from the hash chain: it grows with every page view, and its worth is in
    being complete and readable by the firm's admins, not in sealing. `firm_id` and the
    object are plain values, as in AuditEntry, because this app knows nothing of firms.
    """

    at = models.DateTimeField()
    firm_id = models.BigIntegerField()
    actor = models.CharField(max_length=64)  # "user:<pk>", "portal-link:<pk>"
    page = models.CharField(max_length=64)  # the route's name: "case-detail", "case-list", …
    object_type = models.CharField(max_length=32)  # "case", "client", or "" for a list
    object_id = models.CharField(max_length=64, blank=True, default="")
    address = models.CharField(max_length=64, blank=True, default="")

    objects = AccessRecordQuerySet.as_manager()

    class Meta:
        ordering = ("-at", "-pk")
        indexes = (
            models.Index(fields=("firm_id", "at"), name="access_record_firm_at_idx"),
            models.Index(
                fields=("firm_id", "object_type", "object_id"), name="access_record_object_idx"
            ),
        )

    def __str__(self) -> str:
        return f"{self.actor} {self.page} {self.object_type}:{self.object_id}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise AppendOnlyError("access records are never changed")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise AppendOnlyError("access records leave only by casewatch.audit.access.prune()")
