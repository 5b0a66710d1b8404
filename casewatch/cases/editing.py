"""Changing what the firm says about a case: one rule for the web form and the API.

The caller has already judged the values (a form, a schema); here they are set, only
the columns they touch are written (a status the monitor records meanwhile stays),
and the change is audited, in one transaction.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.db import transaction
from django.utils import timezone

from casewatch.audit.chain import record as audit
from casewatch.cases.intake import case_details
from casewatch.cases.models import Case

# The columns each change writes.
COLUMNS: Mapping[str, tuple[str, ...]] = {
    "receipt_number": ("receipt_number", "next_check_at"),
    "form_type": ("form_type",),
    "tags": ("tags",),
    "attorney": ("attorney",),
    "paralegal": ("paralegal",),
    "client_language": (),
}


def apply_changes(case: Case, data: Mapping[str, Any]) -> list[str]:
    """Set the given values that differ (a receipt only while pending); the changed names.

    `data` holds any of COLUMNS' names; `attorney` and `paralegal` are member ids or
    None. A name left out is left as it is.
    """
    changed: list[str] = []
    if data.get("receipt_number") and case.receipt_pending:
        case.receipt_number = data["receipt_number"]
        case.next_check_at = timezone.now()  # The monitor asks USCIS about it next.
        changed.append("receipt_number")
    for name in ("form_type", "tags"):
        if name in data and data[name] != getattr(case, name):
            setattr(case, name, data[name])
            changed.append(name)
    for name in ("attorney", "paralegal"):
        if name in data and data[name] != getattr(case, f"{name}_id"):
            setattr(case, f"{name}_id", data[name])
            changed.append(name)
    language = data.get("client_language")
    if case.client is not None and language and language != (case.client.language or "en"):
        case.client.language = language
        changed.append("client_language")
    return changed


def change_case(case: Case, data: Mapping[str, Any], *, actor: str) -> list[str]:
    """Apply `data` to the case, save what changed and audit it; the changed names."""
    changed = apply_changes(case, data)
    if not changed:
        return changed
    with transaction.atomic():
        if "client_language" in changed and case.client is not None:
            case.client.save(update_fields=["language", "updated_at"])
        columns = [column for name in changed for column in COLUMNS[name]]
        case.save(update_fields=[*columns, "updated_at"])
        audit(
            "case.updated",
            object_type="case",
            object_id=case.pk,
            firm_id=case.firm_id,
            actor=actor,
            details={**case_details(case), "changed": changed},
        )
    return changed
