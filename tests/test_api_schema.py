"""schemathesis against the schema the API serves: every operation, with a read token and
a write token of a firm with cases, events and deadlines, through Django's WSGI app.

No answer may be a server error, and every answer must be one the schema declares, with
its declared content type and body shape. Examples are few per operation, to stay well
under two minutes.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis import checks as built_in

from casewatch.accounts.api_tokens import create_token
from casewatch.accounts.models import Firm
from casewatch.cases.models import Case, Client, Deadline
from casewatch.wsgi import application
from tests.routing_world import change

CHECKS = [
    built_in.not_a_server_error,
    built_in.status_code_conformance,
    built_in.content_type_conformance,
    built_in.response_schema_conformance,
]
EXAMPLES = 25


# Read from the app at collection: the schema needs no database.
schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", application)


@pytest.fixture
def kept_connection() -> Iterator[None]:
    """Requests reach the WSGI app directly, not through Django's test client: keep the
    test's database connection open between them, as the test client does."""
    for signal in (request_started, request_finished):
        signal.disconnect(close_old_connections)
    yield
    for signal in (request_started, request_finished):
        signal.connect(close_old_connections)


@pytest.fixture
def tokens(db: None, settings: Any, kept_connection: None) -> dict[str, str]:
    """A firm with something in every list, and a token of each scope."""
    settings.CASEWATCH_API_RATE_PER_MINUTE = 1_000_000
    firm = Firm.objects.create(name="Fuzz Law", slug="fuzz")
    client = Client.objects.create(firm=firm, reference="F-1", personal={"name": "Fuzzy Fake"})
    case = Case.objects.create(firm=firm, receipt_number="EAC2690000001", client=client)
    Case.objects.create(firm=firm, receipt_number=None, client=client)
    event = change(case, "rfe_sent")
    due = event.observed_at.date() + timedelta(days=30)
    Deadline.objects.create(
        firm=firm, case=case, event=event, kind="rfe_response", due_on=due, basis=due
    )
    return {scope: create_token(firm, scope, actor="test").secret for scope in ("read", "write")}


def call(case: Any, secret: str) -> None:
    case.call_and_validate(headers={"Authorization": f"Bearer {secret}"}, checks=CHECKS)


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_a_read_token_gets_no_server_error_and_only_declared_answers(
    case: Any, tokens: dict[str, str]
) -> None:
    call(case, tokens["read"])


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_a_write_token_gets_no_server_error_and_only_declared_answers(
    case: Any, tokens: dict[str, str]
) -> None:
    call(case, tokens["write"])
