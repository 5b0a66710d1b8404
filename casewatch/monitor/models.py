"""What every worker must agree on about USCIS: the shared budget, its health, outages.

These rows live in the database so that any number of workers on any number of
machines see one budget and one circuit (the Redis limiter replaces the budget
row when CASEWATCH_REDIS_URL is set).
"""

from __future__ import annotations

from typing import Any

from django.db import models

from casewatch.accounts.models import Firm
from casewatch.cases.models import Case


class QuotaBucket(models.Model):
    """The USCIS allowance shared by all workers: spike-arrest slots and the daily count."""

    name = models.CharField(max_length=32, unique=True)
    day = models.CharField(max_length=10, blank=True, help_text="quota day, in the reset zone")
    used = models.PositiveIntegerField(default=0)
    next_slot = models.FloatField(default=0.0, help_text="epoch seconds of the next free slot")
    blocked_until = models.FloatField(default=0.0, help_text="epoch seconds: 429/503 back-off")

    def __str__(self) -> str:
        return f"{self.name}: {self.used} on {self.day}"


class CircuitState(models.TextChoices):
    CLOSED = "closed", "closed"
    OPEN = "open", "open"
    HALF_OPEN = "half_open", "half open"


class UscisHealth(models.Model):
    """Whether USCIS can be read right now, and since when it could not (one row)."""

    name = models.CharField(max_length=32, unique=True)
    circuit = models.CharField(
        max_length=10, choices=CircuitState.choices, default=CircuitState.CLOSED
    )
    open_until = models.DateTimeField(null=True, blank=True)
    cool_down_seconds = models.FloatField(
        default=0.0, help_text="how long the circuit stayed open last time; doubles on each re-open"
    )
    probe_started_at = models.DateTimeField(
        null=True, blank=True, help_text="when the one half-open probe was let through"
    )
    consecutive_failures = models.PositiveIntegerField(default=0)
    last_success_at = models.DateTimeField(null=True, blank=True)
    last_failure_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=24, blank=True)
    last_message = models.TextField(blank=True)
    unreadable_since = models.DateTimeField(null=True, blank=True)
    outage_reported_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.name}: {self.circuit}"


class OperationalKind(models.TextChoices):
    USCIS_UNREADABLE = "uscis_unreadable", "USCIS unreadable"
    USCIS_RECOVERED = "uscis_recovered", "USCIS readable again"


class OperationalEvent(models.Model):
    """Something the operations lead must hear about; an outbox entry like a StatusEvent.

    `firm` is empty for events that concern every firm (a USCIS outage).
    """

    firm = models.ForeignKey(
        Firm, null=True, blank=True, on_delete=models.CASCADE, related_name="operational_events"
    )
    kind = models.CharField(max_length=32, choices=OperationalKind.choices)
    occurred_at = models.DateTimeField()
    message = models.TextField()
    details = models.JSONField(default=dict, blank=True)
    routed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["routed_at", "occurred_at"])]

    def __str__(self) -> str:
        return f"{self.kind} at {self.occurred_at:%Y-%m-%d %H:%M}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None and not kwargs.get("update_fields"):
            raise ValueError("operational events are immutable once recorded")
        super().save(*args, **kwargs)


class DwellSample(models.Model):
    """How long one case stayed in one status, as USCIS dated it: what the scheduler learns from.

    Written when a change reveals the end of a stay (from modifiedDate or
    `hist_case_status` dates); open stays are read from the cases themselves.
    """

    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="dwell_samples")
    form_type = models.CharField(max_length=16, blank=True)
    status = models.CharField(max_length=64)
    next_status = models.CharField(max_length=64, blank=True)
    next_urgency = models.CharField(max_length=16, blank=True)
    started_at = models.DateTimeField()
    days = models.FloatField()
    # Days into the stay before the case was first read (learning.Stay.unseen_days).
    unseen_days = models.FloatField(default=0.0)

    class Meta:
        indexes = [models.Index(fields=["status"])]
        constraints = [
            models.UniqueConstraint(fields=["case", "started_at"], name="one_sample_per_stay")
        ]

    def __str__(self) -> str:
        return f"{self.status} for {self.days:.1f} days"
