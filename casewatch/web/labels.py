"""Words for the codes the pages show: categories, urgencies, USCIS read problems.

The codes are a contract (spec/status-categories.md) and stay as they are in data and
in CSS classes; what a person reads is one of these, in their language.
"""

from __future__ import annotations

from collections.abc import Mapping

from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

CATEGORY_LABELS: Mapping[str, Promise] = {
    "received": _("Received"),
    "biometrics": _("Biometrics"),
    "in_review": _("In review"),
    "evidence_requested": _("Evidence requested"),
    "evidence_received": _("Evidence received"),
    "intent_to_deny": _("Intent to deny"),
    "interview_scheduled": _("Interview scheduled"),
    "interview_completed": _("Interview completed"),
    "transferred": _("Transferred"),
    "approved": _("Approved"),
    "document_production": _("Document in production"),
    "document_mailed": _("Document mailed"),
    "document_delivered": _("Document delivered"),
    "returned_mail": _("Returned mail"),
    "denied": _("Denied"),
    "rejected": _("Rejected"),
    "revoked": _("Revoked"),
    "withdrawn": _("Withdrawn"),
    "closed": _("Closed"),
    "appeal": _("Appeal"),
    "on_hold": _("On hold"),
    "admin": _("Administrative"),
    "unknown": _("Not understood"),
}

URGENCY_LABELS: Mapping[str, Promise] = {
    "action": _("Action needed"),
    "progress": _("Progress"),
    "info": _("For the record"),
    "review": _("Needs a look"),
}

PROBLEM_LABELS: Mapping[str, Promise] = {
    "not_found": _("USCIS does not know this receipt number."),
    "invalid_receipt": _("USCIS says this receipt number is not valid."),
    "rate_limited": _("USCIS asked us to slow down; the check will be repeated."),
    "unavailable": _("USCIS could not be reached; the check will be repeated."),
    "auth_failed": _("USCIS refused casewatch's credentials."),
    "malformed_response": _("USCIS answered with something casewatch could not read."),
}
