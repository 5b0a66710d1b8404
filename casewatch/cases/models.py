"""The caseload and its history.

Observations keep every USCIS answer; a StatusEvent is a real change and is never
edited (its audit entry would no longer match); a Deadline comes with the event
that creates it, in the same transaction.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from casewatch.accounts.models import Firm
from casewatch.cases.fields import EncryptedJSONField, EncryptedTextField


class Client(models.Model):
    """A firm's client; name, e-mail and phone are encrypted at rest as one record."""

    firm = models.ForeignKey(Firm, on_delete=models.CASCADE, related_name="clients")
    reference = models.CharField(max_length=100, blank=True, help_text="the firm's own client id")
    personal = EncryptedJSONField(blank=True, default=dict)
    language = models.CharField(max_length=3, blank=True, help_text="ISO 639-1; empty: English")
    time_zone = models.CharField(max_length=64, blank=True, help_text="empty: the firm's")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["firm", "reference"])]

    def __str__(self) -> str:
        return f"client {self.pk}"

    @property
    def name(self) -> str:
        return str(self.personal.get("name", ""))

    @property
    def email(self) -> str:
        return str(self.personal.get("email", ""))

    @property
    def phone(self) -> str:
        """E.164, e.g. +15555550123."""
        return str(self.personal.get("phone", ""))


class Case(models.Model):
    """One application the firm watches; its receipt may still be pending at USCIS."""

    firm = models.ForeignKey(Firm, on_delete=models.CASCADE, related_name="cases")
    # NULL, not "", while the receipt is pending: the per-firm uniqueness skips NULLs.
    receipt_number = models.CharField(max_length=13, null=True, blank=True)  # noqa: DJ001
    form_type = models.CharField(max_length=16, blank=True)
    client = models.ForeignKey(
        Client, null=True, blank=True, on_delete=models.PROTECT, related_name="cases"
    )
    attorney = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="cases_as_attorney",
    )
    paralegal = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="cases_as_paralegal",
    )
    tags = models.JSONField(default=list, blank=True)
    notes = EncryptedTextField(blank=True, default="")
    filed_on = models.DateField(null=True, blank=True)
    archived_at = models.DateTimeField(null=True, blank=True)

    # The latest status, kept beside the case so that lists need no join.
    status = models.CharField(max_length=64, blank=True)
    category = models.CharField(max_length=32, blank=True)
    urgency = models.CharField(max_length=16, blank=True)
    title_en = models.TextField(blank=True)
    title_es = models.TextField(blank=True)
    status_since = models.DateTimeField(null=True, blank=True)
    uscis_status_since = models.DateTimeField(
        null=True, blank=True, help_text="when USCIS says the current status began"
    )
    source = models.CharField(max_length=10, blank=True)

    last_checked_at = models.DateTimeField(null=True, blank=True)
    last_read_at = models.DateTimeField(null=True, blank=True)
    last_problem = models.TextField(blank=True)
    next_check_at = models.DateTimeField(null=True, blank=True)
    # Scheduling: a worker's claim, and the weighted change rate the scheduler saw last.
    claimed_until = models.DateTimeField(null=True, blank=True)
    claimed_by = models.CharField(max_length=64, blank=True)
    check_rate = models.FloatField(default=0.0, help_text="expected weighted changes per day")

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["firm", "receipt_number"],
                condition=models.Q(receipt_number__isnull=False),
                name="one_case_per_receipt_per_firm",
            )
        ]
        indexes = [
            models.Index(fields=["next_check_at"]),
            models.Index(fields=["firm", "category"]),
            models.Index(fields=["firm", "archived_at", "status_since"]),
            models.Index(fields=["firm", "receipt_number"]),
            # The case list: each filter, then the status date it is sorted by, so that a
            # page and its count come from an index however many cases the firm has.
            *(
                models.Index(
                    fields=["firm", "archived_at", column, "status_since"],
                    name=f"case_list_{column}",
                )
                for column in ("category", "urgency", "attorney", "form_type")
            ),
            models.Index(fields=["firm", "status_since"], name="case_list_all"),
            # Receipts pending (newest first) and receipts looked up (in receipt order).
            models.Index(
                fields=["firm", "archived_at", "receipt_number"], name="case_list_receipt"
            ),
        ]

    def __str__(self) -> str:
        return self.receipt_number or f"case {self.pk} (receipt pending)"

    @property
    def is_archived(self) -> bool:
        return self.archived_at is not None

    @property
    def receipt_pending(self) -> bool:
        return not self.receipt_number


class Outcome(models.TextChoices):
    FOUND = "found"
    NOT_FOUND = "not_found"
    INVALID = "invalid_receipt"
    RATE_LIMITED = "rate_limited"
    UNAVAILABLE = "unavailable"
    AUTH_FAILED = "auth_failed"
    MALFORMED = "malformed_response"


class Observation(models.Model):
    """One answer (or fault) from USCIS about one case, kept whether or not it changed anything."""

    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="observations")
    observed_at = models.DateTimeField()
    source = models.CharField(max_length=10)
    outcome = models.CharField(max_length=24, choices=Outcome.choices)
    message = models.TextField(blank=True)
    title_en = models.TextField(blank=True)
    title_es = models.TextField(blank=True)
    description_en = models.TextField(blank=True)
    description_es = models.TextField(blank=True)
    form_type = models.CharField(max_length=16, blank=True)
    uscis_modified_at = models.DateTimeField(null=True, blank=True)
    history = models.JSONField(default=list, blank=True)
    status = models.CharField(max_length=64, blank=True)
    confidence = models.FloatField(null=True, blank=True)
    changed = models.BooleanField(default=False)

    class Meta:
        indexes = [models.Index(fields=["case", "-observed_at"])]

    def __str__(self) -> str:
        return f"{self.outcome} for case {self.case_id} at {self.observed_at:%Y-%m-%d %H:%M}"


class StatusEvent(models.Model):
    """A real change of a case's status at USCIS; immutable once written.

    An event not yet routed (`routed_at` empty) is the outbox entry the notify
    step picks up; that column is the only one ever set afterwards.
    """

    firm = models.ForeignKey(Firm, on_delete=models.CASCADE, related_name="status_events")
    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="events")
    observation = models.ForeignKey(
        Observation, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    status = models.CharField(max_length=64)
    category = models.CharField(max_length=32)
    urgency = models.CharField(max_length=16)
    confidence = models.FloatField()
    previous_status = models.CharField(max_length=64, blank=True)
    title_en = models.TextField()
    title_es = models.TextField(blank=True)
    description_en = models.TextField(blank=True)
    description_es = models.TextField(blank=True)
    uscis_date = models.DateTimeField(null=True, blank=True)
    observed_at = models.DateTimeField()
    source = models.CharField(max_length=10)
    initial = models.BooleanField(
        default=False, help_text="the first status casewatch saw for the case"
    )
    recovered = models.BooleanField(
        default=False, help_text="read from USCIS history: it happened between two checks"
    )
    routed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["case", "observed_at"]),
            models.Index(fields=["routed_at", "observed_at"]),
            models.Index(fields=["firm", "observed_at"]),
            # The dashboard's changes, their order and their count, read from the index
            # alone: what a change is, not the row, decides where it goes.
            models.Index(
                fields=["firm", "observed_at", "initial", "urgency", "category", "id"],
                name="dashboard_changes",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.title_en} (case {self.case_id})"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None and not self._state.adding:
            raise ValueError("a status event is never edited once recorded")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        raise ValueError("a status event is never deleted")


class DeadlineKind(models.TextChoices):
    RFE_RESPONSE = "rfe_response", _("RFE response due")
    NOID_RESPONSE = "noid_response", _("NOID response due")
    INTERVIEW = "interview", _("Interview")
    BIOMETRICS = "biometrics", _("Biometrics appointment")


class Deadline(models.Model):
    """A date the firm must act by, created with the event that set it."""

    firm = models.ForeignKey(Firm, on_delete=models.CASCADE, related_name="deadlines")
    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="deadlines")
    event = models.ForeignKey(
        StatusEvent, null=True, blank=True, on_delete=models.PROTECT, related_name="deadlines"
    )
    kind = models.CharField(max_length=20, choices=DeadlineKind.choices)
    due_on = models.DateField()
    due_at = models.TimeField(null=True, blank=True)
    basis = models.DateField()
    basis_text = models.TextField(blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # The firm's own date when it knows better (a USCIS extension, a rescheduled interview);
    # `due_on` keeps what casewatch computed.
    firm_due_on = models.DateField(null=True, blank=True)
    firm_due_reason = models.TextField(blank=True)
    firm_due_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    firm_due_set_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["firm", "due_on"]),
            # The dashboard's upcoming deadlines: open ones by casewatch's date and by the
            # firm's, so that years of completed deadlines are never walked through.
            models.Index(
                fields=["firm", "due_on"],
                condition=models.Q(completed_at__isnull=True),
                name="deadline_open_due",
            ),
            models.Index(
                fields=["firm", "firm_due_on"],
                condition=models.Q(completed_at__isnull=True, firm_due_on__isnull=False),
                name="deadline_open_firm_due",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} on {self.due_on:%Y-%m-%d} (case {self.case_id})"

    @property
    def effective_due_on(self) -> Any:
        """The date the firm works to: its own when it set one, else the computed one."""
        return self.firm_due_on or self.due_on


class EventFollowUp(models.Model):
    """The firm's handling of one change: who must act and who has seen it.

    Kept beside the StatusEvent, which is never edited once recorded.
    """

    firm = models.ForeignKey(Firm, on_delete=models.CASCADE, related_name="follow_ups")
    event = models.OneToOneField(StatusEvent, on_delete=models.CASCADE, related_name="follow_up")
    assigned_to = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="assigned_changes",
    )
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["firm", "acknowledged_at"])]

    def __str__(self) -> str:
        return f"follow-up of event {self.event_id}"


class Comment(models.Model):
    """A staff note on a case, or on one change of it; may name the client, so encrypted."""

    firm = models.ForeignKey(Firm, on_delete=models.CASCADE, related_name="comments")
    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="comments")
    event = models.ForeignKey(
        StatusEvent, null=True, blank=True, on_delete=models.CASCADE, related_name="comments"
    )
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    body = EncryptedTextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["case", "created_at"])]

    def __str__(self) -> str:
        return f"comment {self.pk} on case {self.case_id}"


class NameToken(models.Model):
    """The blind index of client names: a keyed hash per word, so names stay encrypted.

    A search for "garcía" hashes the normalized word (case and accents folded) with
    the firm's index key and looks the hash up here.
    """

    firm = models.ForeignKey(Firm, on_delete=models.CASCADE, related_name="+")
    client = models.ForeignKey(Client, on_delete=models.CASCADE, related_name="name_tokens")
    token = models.CharField(max_length=32)

    class Meta:
        indexes = [models.Index(fields=["firm", "token"])]

    def __str__(self) -> str:
        return f"name token of client {self.client_id}"


class SavedView(models.Model):
    """A member's named case-list filter, kept as the list's query string."""

    firm = models.ForeignKey(Firm, on_delete=models.CASCADE, related_name="saved_views")
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="saved_views"
    )
    name = models.CharField(max_length=100)
    query = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["owner", "firm", "name"], name="one_view_per_name")
        ]

    def __str__(self) -> str:
        return self.name


class Reminder(models.Model):
    """Something the firm should be told that is not a USCIS change (receipt still pending)."""

    KIND_RECEIPT_PENDING = "receipt_pending"

    firm = models.ForeignKey(Firm, on_delete=models.CASCADE, related_name="reminders")
    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="reminders")
    kind = models.CharField(max_length=32)
    message = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)
    routed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["case", "kind"], name="one_reminder_per_kind")
        ]

    def __str__(self) -> str:
        return f"{self.kind} for case {self.case_id}"


class ImportRun(models.Model):
    """One `casewatch import` (or web upload): what it did, for the audit trail."""

    firm = models.ForeignKey(Firm, on_delete=models.CASCADE, related_name="imports")
    file_name = models.CharField(max_length=255)
    actor = models.CharField(max_length=64, default="import")
    rows = models.PositiveIntegerField(default=0)
    created = models.PositiveIntegerField(default=0)
    updated = models.PositiveIntegerField(default=0)
    unchanged = models.PositiveIntegerField(default=0)
    errors = models.PositiveIntegerField(default=0)
    at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"import of {self.file_name} ({self.created} created)"
