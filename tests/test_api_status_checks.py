"""`POST /api/v1/status-checks`: the bulk status check as an integration asks for it.

Every check here really asks casewatch's built-in USCIS sandbox over HTTP (no USCIS
credentials are set, so casewatch starts it for the check), through the limiter, the
daily budget and the circuit breaker the workers share. The receipts are the sandbox's.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from django.db import connection
from django.test import Client as Browser

from casewatch.accounts.api_tokens import create_token
from casewatch.accounts.models import Firm
from casewatch.api.models import IdempotentResponse
from casewatch.api.status_checks import MAX_RECEIPTS
from casewatch.audit.models import AuditEntry
from casewatch.cases.models import Case
from casewatch.monitor.health import FAILURES_TO_OPEN, note_outcome
from casewatch.monitor.tasks import quota
from tests.test_cli import CHECK_KEYS

pytestmark = pytest.mark.django_db

URL = "/api/v1/status-checks"
PROBLEM = "application/problem+json"
APPROVED = "EAC9999103403"  # "Case Was Approved" in the sandbox
ALSO_KNOWN = "LIN9999106498"
UNKNOWN_TO_USCIS = "LIN2410010404"  # the sandbox answers: no such receipt
# `casewatch check --json` (spec/cli.md), then what the API adds.
FIELDS = CHECK_KEYS | {"input", "case_id", "not_asked"}


@pytest.fixture
def firm() -> Firm:
    return Firm.objects.create(name="Example Immigration Law", slug="example")


@pytest.fixture
def other_firm() -> Firm:
    return Firm.objects.create(name="Other Firm", slug="other")


def token(firm: Firm, scope: str = "write") -> str:
    return create_token(firm, scope, actor="test").secret


def check(secret: str, receipts: Any, **headers: str) -> Any:
    return Browser().post(
        URL,
        json.dumps({"receipts": receipts}),
        content_type="application/json",
        headers={"Authorization": f"Bearer {secret}", **headers},
    )


def answered(response: Any) -> dict[str, Any]:
    assert response.status_code == 200, response.content
    body: dict[str, Any] = response.json()
    return body


def problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == PROBLEM
    body: dict[str, Any] = json.loads(response.content)
    assert body["status"] == status
    return body


def test_each_input_is_answered_in_order_and_what_is_no_receipt_is_explained(
    firm: Firm,
) -> None:
    tracked = Case.objects.create(firm=firm, receipt_number=APPROVED)
    used = quota().used_today()
    sent = ["eac-9999103403", UNKNOWN_TO_USCIS, "EAC123", "not a receipt"]
    body = answered(check(token(firm), sent))

    items = body["items"]
    assert [item["input"] for item in items] == sent
    assert all(set(item) == FIELDS for item in items)
    approved, unknown, short, words = items
    assert approved["receipt_number"] == APPROVED and approved["ok"] is True
    assert approved["title_en"] == "Case Was Approved" and approved["source"] == "sandbox"
    assert approved["case_id"] == tracked.pk and approved["not_asked"] is None
    assert (unknown["ok"], unknown["error"], unknown["not_asked"]) == (False, "not_found", None)
    assert unknown["case_id"] is None  # not a case of the firm, and none is added
    for invalid in (short, words):
        assert invalid["error"] == "invalid_receipt" and invalid["not_asked"] == "invalid_input"
        assert invalid["message"] and invalid["case_id"] is None
    assert "13 characters" in short["message"]  # what is wrong with it, as the parser says

    assert (body["asked"], body["not_asked"], body["source"]) == (2, 0, "sandbox")
    # Each request took a slot of the budget the workers share (a slot the machine woke
    # too late for is given up and counted, so there may be more than two).
    assert quota().used_today() >= used + 2
    assert body["budget"]["used_today"] == quota().used_today()
    assert Case.objects.count() == 1  # a check adds no case by itself
    entry = AuditEntry.objects.get(action="status_check.run")
    assert entry.firm_id == firm.pk and entry.actor.startswith("token:")
    assert entry.details == {
        "inputs": 4,
        "asked": 2,
        "not_asked": 0,
        "invalid": 2,
        "cases": 1,
        "via": "api",
    }  # counts only: no receipt is written to the log
    assert UNKNOWN_TO_USCIS not in json.dumps(entry.details)


def test_a_receipt_sent_several_times_is_asked_once_and_answered_each_time(
    firm: Firm, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One call left today: the three inputs are one receipt, so the check may run.
    monkeypatch.setenv("CASEWATCH_USCIS_DAILY_BUDGET", str(quota().used_today() + 1))
    body = answered(check(token(firm), [APPROVED, "eac 9999103403", "EAC-9999-103-403"]))
    assert [item["receipt_number"] for item in body["items"]] == [APPROVED] * 3
    assert all(item["title_en"] == "Case Was Approved" for item in body["items"])
    assert body["asked"] == 1


def test_more_receipts_than_todays_budget_has_left_are_refused_asking_nothing(
    firm: Firm, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CASEWATCH_USCIS_DAILY_BUDGET", "2")
    used = quota().used_today()
    response = check(token(firm), [APPROVED, ALSO_KNOWN, UNKNOWN_TO_USCIS, "EAC123"])
    refused = problem(response, 429)
    assert "3 receipts to ask about, but only 2" in refused["detail"]
    assert "nothing was asked" in refused["detail"]
    assert refused["errors"][0]["field"] == "receipts"
    # Until the budget resets (at the next midnight in its zone): within a day.
    assert 1 <= int(response["Retry-After"]) <= 24 * 3600
    assert quota().used_today() == used
    assert not AuditEntry.objects.filter(action="status_check.run").exists()


def test_while_the_circuit_is_open_nothing_is_asked_and_each_row_says_so(firm: Firm) -> None:
    now = datetime.now(UTC)
    for _ in range(FAILURES_TO_OPEN):
        note_outcome("unavailable", now, message="down")
    used = quota().used_today()
    body = answered(check(token(firm), [APPROVED, ALSO_KNOWN, "EAC123"]))
    first, second, invalid = body["items"]
    for item in (first, second):
        assert (item["ok"], item["error"], item["not_asked"]) == (False, "not_asked", "circuit")
        assert "USCIS cannot be read right now" in item["message"]
        assert item["title_en"] is None  # nothing passed off as USCIS's answer
    assert invalid["not_asked"] == "invalid_input"
    assert (body["asked"], body["not_asked"]) == (0, 2)
    assert quota().used_today() == used


def test_a_check_that_runs_out_of_time_answers_the_rest_as_not_asked(
    firm: Firm, settings: Any
) -> None:
    settings.CASEWATCH_API_CHECK_SECONDS = 0
    used = quota().used_today()
    body = answered(check(token(firm), [APPROVED, ALSO_KNOWN]))
    assert [item["not_asked"] for item in body["items"]] == ["stopped", "stopped"]
    assert quota().used_today() == used


def test_a_read_token_may_not_spend_the_budget(firm: Firm) -> None:
    used = quota().used_today()
    refused = problem(check(token(firm, "read"), [APPROVED]), 403)
    assert "write token" in refused["detail"]
    assert quota().used_today() == used
    problem(Browser().post(URL, "{}", content_type="application/json"), 401)


def test_another_firms_cases_are_never_shown(firm: Firm, other_firm: Firm) -> None:
    theirs = Case.objects.create(firm=other_firm, receipt_number=ALSO_KNOWN)
    ours = Case.objects.create(firm=firm, receipt_number=APPROVED)
    body = answered(check(token(firm), [ALSO_KNOWN, APPROVED]))
    assert [item["case_id"] for item in body["items"]] == [None, ours.pk]
    assert str(theirs.pk) not in {str(item["case_id"]) for item in body["items"]}
    assert AuditEntry.objects.get(action="status_check.run").details["cases"] == 1


def test_a_repeat_with_its_idempotency_key_gets_the_first_answer_without_asking_again(
    firm: Firm,
) -> None:
    secret = token(firm)
    first = check(secret, [APPROVED], **{"Idempotency-Key": "morning-check"})
    used = quota().used_today()
    again = check(secret, [APPROVED], **{"Idempotency-Key": "morning-check"})
    assert again.status_code == 200 and again["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert quota().used_today() == used
    assert AuditEntry.objects.filter(action="status_check.run").count() == 1
    with connection.cursor() as cursor:  # the kept answer is encrypted at rest
        cursor.execute(f"SELECT body FROM {IdempotentResponse._meta.db_table}")
        (stored,) = cursor.fetchone()
    assert APPROVED not in stored
    other = problem(check(secret, [ALSO_KNOWN], **{"Idempotency-Key": "morning-check"}), 409)
    assert "Idempotency-Key" in other["detail"]


def test_too_many_receipts_or_none_are_refused_saying_the_limit(firm: Firm) -> None:
    secret = token(firm)
    too_many = [f"EAC99991{n:05d}" for n in range(MAX_RECEIPTS + 1)]
    refused = problem(check(secret, too_many), 422)
    assert refused["errors"][0]["field"].endswith("receipts")
    assert str(MAX_RECEIPTS) in refused["errors"][0]["message"]
    assert problem(check(secret, []), 422)["errors"][0]["field"].endswith("receipts")
    assert problem(check(secret, ["E" * 61]), 422)
    assert not AuditEntry.objects.filter(action="status_check.run").exists()
