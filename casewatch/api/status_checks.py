"""The bulk status check: ask USCIS about receipts now, within the firm's daily budget.

`POST /status-checks` with `{"receipts": [...]}` (at most MAX_RECEIPTS) answers, once
every receipt is read, with one item per input in input order: the fields of `casewatch
check --json`, the input, the firm's case for that receipt (or null), and `not_asked`
when casewatch did not ask USCIS about it. The check is the web app's bulk status check
(casewatch.monitor.budgeted_check): each request takes a slot from the limiter the
workers share and counts against the daily budget, and the circuit breaker is asked
first. More receipts than today's budget has left are refused up front (429 with
Retry-After until the budget resets), asking nothing.

A write token only: a check spends the USCIS budget the whole installation shares, as in
the web app, where front desk may not run it; a read token is for looking. Nothing is
stored about a receipt that is not a case; the audit log gets counts, not receipts. (An
answer sent with an `Idempotency-Key` is kept encrypted for 24 h to answer repeats, like
every keyed POST.)
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any, Literal

from django.conf import settings
from django.http import HttpRequest
from django.utils import timezone
from ninja import Field, Router, Schema
from ninja.decorators import decorate_view
from pydantic import StringConstraints

from casewatch.accounts.api_tokens import token_actor
from casewatch.accounts.models import ApiToken
from casewatch.api.auth import token_of
from casewatch.api.cases import ERRORS, IDEMPOTENCY_KEY, ProblemOut
from casewatch.api.idempotency import idempotent
from casewatch.api.problems import Problem
from casewatch.cases.models import Case
from casewatch.monitor.budgeted_check import (
    BeyondBudget,
    BudgetedResults,
    audit_check,
    check_within_budget,
    todays_budget,
)
from casewatch.monitor.bulk_check import CheckResult, InvalidInput, result_json

router = Router(tags=["status checks"])

# Receipts one request may ask about: an answer within about ten seconds at USCIS's rate.
MAX_RECEIPTS = 100
# An input longer than this is no receipt number (13 characters) however it is written.
MAX_INPUT_LENGTH = 60
# After this long, nothing more is asked: what is left is answered as not asked ("stopped").
DEFAULT_TIME_LIMIT_SECONDS = 60.0

# Why casewatch did not ask USCIS about an input, in the words of the answer.
NOT_ASKED = {
    "invalid_input": "Not a receipt number, so USCIS was not asked.",
    "quota": "Not asked: today's USCIS budget is used up.",
    "circuit": "Not asked: USCIS cannot be read right now; try again later.",
    "stopped": "Not asked: the check took too long and was stopped; try again later.",
}
NotAsked = Literal["invalid_input", "quota", "circuit", "stopped"]

# --- Schemas ----------------------------------------------------------------------------


class StatusCheckIn(Schema):
    receipts: list[Annotated[str, StringConstraints(max_length=MAX_INPUT_LENGTH)]] = Field(
        min_length=1,
        max_length=MAX_RECEIPTS,
        description=f"receipt numbers as written anywhere (1 to {MAX_RECEIPTS}); a repeat "
        "is asked once, an input that is no receipt number is explained, not asked",
    )


class CheckedReceipt(Schema):
    """One input's answer: the fields of `casewatch check --json`, and where it stands."""

    input: str = Field(description="the input as sent")
    receipt_number: str = Field(description="the input normalized")
    ok: bool = Field(description="true when USCIS gave the receipt's status")
    error: str | None = Field(
        description="null, one of `casewatch check`'s errors (invalid_receipt, not_found, "
        "rate_limited, unavailable, auth_failed, malformed_response), or not_asked"
    )
    message: str | None
    form_type: str | None
    title_en: str | None
    title_es: str | None
    description_en: str | None
    status: str | None
    category: str | None
    urgency: str | None
    confidence: float | None
    source: str = Field(description="uscis or sandbox")
    case_id: int | None = Field(description="the firm's case for this receipt, if it has one")
    not_asked: NotAsked | None = Field(
        description="why casewatch did not ask USCIS (then nothing here is USCIS's answer): "
        "invalid_input, quota (today's budget ran out), circuit (USCIS cannot be read now), "
        "stopped (the check ran out of time)"
    )


class BudgetOut(Schema):
    calls_per_day: int
    used_today: int
    left: int
    resets_at: datetime


class StatusCheckOut(Schema):
    items: list[CheckedReceipt] = Field(description="one per input, in input order")
    asked: int = Field(description="receipts USCIS was asked about, each repeat once")
    not_asked: int = Field(description="receipts casewatch could not ask about")
    source: str = Field(description="uscis or sandbox")
    budget: BudgetOut = Field(description="today's USCIS budget after the check")


# --- The operation ------------------------------------------------------------------------


@router.post(
    "/status-checks",
    response={200: StatusCheckOut, **ERRORS, 400: ProblemOut, 409: ProblemOut},
    url_name="api-status-checks",
)
@decorate_view(idempotent)
def check_statuses(
    request: HttpRequest, check: StatusCheckIn, idempotency_key: str | None = IDEMPOTENCY_KEY
) -> dict[str, Any]:
    """Ask USCIS now about up to 100 receipts, within today's budget; answered in input order.

    More receipts (each repeat counted once) than today's USCIS budget has left is a 429
    with Retry-After until the budget resets, and nothing is asked. Needs a write token.
    """
    token = token_of(request)
    stop = threading.Event()
    timer = threading.Timer(time_limit(), stop.set)
    timer.daemon = True
    timer.start()
    try:
        done = check_within_budget(check.receipts, stop=stop)
    except BeyondBudget as refusal:
        raise _over_budget(refusal) from None
    finally:
        timer.cancel()
    cases = _cases_of(token, [r.receipt_number for r in done.results])
    items = [_item(result, done, cases) for result in done.results]
    audit_check(done, firm_id=token.firm_id, actor=token_actor(token), cases=len(cases), via="api")
    budget = todays_budget()
    return {
        "items": items,
        "asked": done.asked,
        "not_asked": len(done.not_asked),
        "source": done.source,
        "budget": {
            "calls_per_day": budget.calls_per_day,
            "used_today": budget.used_today,
            "left": max(budget.left, 0),
            "resets_at": budget.resets_at,
        },
    }


def time_limit() -> float:
    """How long one check may ask before the rest is answered as not asked ("stopped")."""
    return float(getattr(settings, "CASEWATCH_API_CHECK_SECONDS", DEFAULT_TIME_LIMIT_SECONDS))


def _over_budget(refusal: BeyondBudget) -> Problem:
    wait = max(1, math.ceil((refusal.budget.resets_at - timezone.now()).total_seconds()))
    return Problem(
        429,
        f"These are {refusal.asked} receipts to ask about, but only {refusal.left} of today's "
        f"USCIS calls are left: nothing was asked. Send at most {refusal.left}, or retry "
        f"after the budget resets at {refusal.budget.resets_at.isoformat()}.",
        errors=[
            {
                "field": "receipts",
                "in": "body",
                "message": f"{refusal.asked} receipts to ask; {refusal.left} calls left today",
            }
        ],
        headers={"Retry-After": str(wait)},
    )


def _cases_of(token: ApiToken, receipts: Sequence[str]) -> dict[str, int]:
    """The token's firm's case for each of these receipts that it tracks (no other firm's)."""
    rows = Case.objects.filter(firm_id=token.firm_id, receipt_number__in=set(receipts))
    return {receipt: pk for receipt, pk in rows.values_list("receipt_number", "pk") if receipt}


def _item(result: CheckResult, done: BudgetedResults, cases: dict[str, int]) -> dict[str, Any]:
    item = result_json(result, done.source)
    valid = not isinstance(result.outcome, InvalidInput)
    why = done.why_not_asked(result) if valid else "invalid_input"
    if why and valid:
        item["error"], item["message"] = "not_asked", NOT_ASKED[why]
    item["input"] = result.input
    item["case_id"] = cases.get(result.receipt_number) if valid else None
    item["not_asked"] = why or None
    return item
