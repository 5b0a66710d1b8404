"""Archiving a case, the same from the web app and the API: recorded and audited, and
said plainly whether casewatch keeps asking USCIS (until the status is final) or not."""

from __future__ import annotations

from typing import Literal

from django.db import transaction
from django.utils import timezone

from casewatch.audit.chain import record as audit
from casewatch.cases.models import Case
from casewatch.monitor.checks import watched_cases

Monitoring = Literal["no_receipt", "watched", "archived_watched", "archived_final"]


def monitoring(case: Case) -> Monitoring:
    """Whether the monitor asks USCIS about this case, by the rule the monitor itself uses."""
    if case.receipt_pending:
        return "no_receipt"
    watched = Case.objects.filter(watched_cases(), pk=case.pk).exists()
    if case.is_archived:
        return "archived_watched" if watched else "archived_final"
    return "watched"


def set_archived(case: Case, archived: bool, *, actor: str) -> bool:
    """Archive (or bring back) the case; False when it already was so (nothing recorded).

    An archived case is still checked until its status is final, so that a late RFE on
    a case the firm thought finished is not missed.
    """
    if archived == case.is_archived:
        return False
    with transaction.atomic():
        case.archived_at = timezone.now() if archived else None
        case.save(update_fields=["archived_at", "updated_at"])
        audit(
            "case.archived" if archived else "case.unarchived",
            object_type="case",
            object_id=case.pk,
            firm_id=case.firm_id,
            actor=actor,
            details={"receipt_number": case.receipt_number, "checking": monitoring(case)},
        )
    return True
