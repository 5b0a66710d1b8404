"""Cases filed without a USCIS receipt yet: remind the firm when one is overdue."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.db.models import Q

from casewatch.audit.chain import record as audit
from casewatch.cases.models import Case, Reminder


def remind_pending_receipts(now: datetime, *, after: timedelta) -> int:
    """Create one reminder per case still without a receipt `after` it was filed."""
    cutoff = now - after
    overdue = (
        Case.objects.filter(receipt_number__isnull=True, archived_at__isnull=True)
        .filter(Q(filed_on__lte=cutoff.date()) | Q(filed_on__isnull=True, created_at__lte=cutoff))
        .exclude(reminders__kind=Reminder.KIND_RECEIPT_PENDING)
    )
    created = 0
    for case in overdue:
        since = case.filed_on or case.created_at.date()
        days = (now.date() - since).days
        try:
            with transaction.atomic():
                reminder = Reminder.objects.create(
                    firm_id=case.firm_id,
                    case=case,
                    kind=Reminder.KIND_RECEIPT_PENDING,
                    message=(
                        f"No USCIS receipt number has been added {days} days after filing "
                        f"({case.form_type or 'form not set'}); add it so the case is tracked."
                    ),
                )
                audit(
                    "reminder.created",
                    object_type="reminder",
                    object_id=reminder.pk,
                    firm_id=case.firm_id,
                    details={"case_id": case.pk, "kind": reminder.kind, "days": days},
                    at=now,
                )
        except IntegrityError:
            continue
        created += 1
    return created
