"""Clients and the messages sent to them, as a case-management system reads them: who the
firm's clients are (their personal details to write tokens only), and whether each was
told of a change, on which channel, and whether it arrived."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from casewatch.accounts.api_tokens import create_token
from casewatch.accounts.models import Firm
from casewatch.cases.models import Case, Client
from casewatch.cases.name_index import index_client
from casewatch.notify.consent import record_consent
from casewatch.notify.models import Notification
from tests.test_api import CLIENT, Integration, problem

pytestmark = pytest.mark.django_db


@pytest.fixture
def firm() -> Firm:
    return Firm.objects.create(name="Alpha", slug="alpha")


@pytest.fixture
def client(firm: Firm) -> Client:
    client = Client.objects.create(firm=firm, reference="M-0117", personal=CLIENT, language="es")
    index_client(client)
    return client


@pytest.fixture
def case(firm: Firm, client: Client) -> Case:
    return Case.objects.create(firm=firm, receipt_number="EAC2690000001", client=client)


@pytest.fixture
def reader(firm: Firm) -> Integration:
    return Integration(create_token(firm, "read", actor="test").secret)


@pytest.fixture
def writer(firm: Firm) -> Integration:
    return Integration(create_token(firm, "write", actor="test").secret)


def message(case: Case, channel: str, status: str, minutes_ago: int, **fields: Any) -> Notification:
    assert case.client is not None
    return Notification.objects.create(
        firm=case.firm,
        case=case,
        kind="status_change",
        recipient_kind="client",
        client=case.client,
        channel=channel,
        address=CLIENT["phone"] if channel != "email" else CLIENT["email"],
        language="es",
        status=status,
        idempotency_key=f"{case.pk}-{channel}-{minutes_ago}",
        created_at=timezone.now() - timedelta(minutes=minutes_ago),
        **fields,
    )


# --- Clients ------------------------------------------------------------------------------


def test_a_write_token_sees_the_client_with_contact_details_cases_and_consent(
    writer: Integration, client: Client, case: Case
) -> None:
    record_consent(client, "whatsapp", granted=True, at=timezone.now(), actor="test", method="form")
    found = writer.get(f"/clients/{client.pk}").json()
    assert (found["reference"], found["language"], found["case_ids"]) == ("M-0117", "es", [case.pk])
    assert (found["name"], found["email"], found["phone"]) == (
        CLIENT["name"],
        CLIENT["email"],
        CLIENT["phone"],
    )
    assert found["consent"] == {"whatsapp": True, "sms": False, "email": False}


def test_a_read_token_sees_the_client_without_personal_details(
    reader: Integration, client: Client
) -> None:
    found = reader.get(f"/clients/{client.pk}").json()
    assert found["reference"] == "M-0117"
    assert (found["name"], found["email"], found["phone"]) == (None, None, None)
    assert CLIENT["name"] not in reader.get("/clients").content.decode()


def test_clients_are_found_by_the_firm_s_reference(writer: Integration, client: Client) -> None:
    Client.objects.create(firm=client.firm, reference="M-0999")
    found = writer.get("/clients", reference="M-0117").json()["items"]
    assert [c["id"] for c in found] == [client.pk]


def test_only_a_write_token_looks_clients_up_by_name(
    writer: Integration, reader: Integration, client: Client
) -> None:
    assert [c["id"] for c in writer.get("/clients", name="fakey").json()["items"]] == [client.pk]
    assert writer.get("/clients", name="Nobody Else").json()["items"] == []
    problem(reader.get("/clients", name="fakey"), 403)


def test_another_firm_s_client_is_not_found(writer: Integration, client: Client) -> None:
    beta = Firm.objects.create(name="Beta", slug="beta")
    theirs = Client.objects.create(firm=beta, reference="M-0117", personal=CLIENT)
    problem(writer.get(f"/clients/{theirs.pk}"), 404)
    assert [c["id"] for c in writer.get("/clients").json()["items"]] == [client.pk]


# --- Notifications ------------------------------------------------------------------------


def test_the_firm_s_messages_come_oldest_first_with_their_delivery(
    writer: Integration, case: Case
) -> None:
    now = timezone.now()
    failed = message(case, "whatsapp", "failed", 30, failed_at=now, last_error="131026")
    fallback = message(case, "sms", "delivered", 20, delivered_at=now, fallback_of=failed)
    items = writer.get("/notifications").json()["items"]
    assert [(n["id"], n["channel"], n["status"]) for n in items] == [
        (failed.pk, "whatsapp", "failed"),
        (fallback.pk, "sms", "delivered"),
    ]
    assert items[1]["fallback_of"] == failed.pk
    assert (items[0]["receipt_number"], items[0]["address"]) == ("EAC2690000001", CLIENT["phone"])
    assert items[0]["last_error"] == "131026"


def test_a_read_token_sees_no_address_nor_provider_error(reader: Integration, case: Case) -> None:
    sent = message(case, "email", "failed", 5, last_error="550 no such user")
    found = reader.get(f"/notifications/{sent.pk}").json()
    assert (found["status"], found["address"], found["last_error"]) == ("failed", None, None)


def test_messages_are_filtered_by_case_channel_status_and_time(
    writer: Integration, case: Case, firm: Firm
) -> None:
    other = Case.objects.create(firm=firm, receipt_number="EAC2690000002", client=case.client)
    old = message(case, "sms", "delivered", 600)
    new = message(case, "whatsapp", "failed", 5)
    elsewhere = message(other, "sms", "failed", 5)

    def ids(**filters: str) -> list[int]:
        return [n["id"] for n in writer.get("/notifications", **filters).json()["items"]]

    assert ids(case_id=str(case.pk)) == [old.pk, new.pk]
    assert ids(status="failed") == [new.pk, elsewhere.pk]
    assert ids(channel="sms", status="failed") == [elsewhere.pk]
    since = (timezone.now() - timedelta(minutes=60)).isoformat()
    assert ids(since=since, case_id=str(case.pk)) == [new.pk]


def test_an_unknown_filter_value_is_refused_not_an_empty_list(writer: Integration) -> None:
    body = problem(writer.get("/notifications", status="lost", channel="pigeon"), 422)
    assert {e["field"] for e in body["errors"]} == {"status", "channel"}


def test_another_firm_s_messages_are_never_shown(writer: Integration, case: Case) -> None:
    beta = Firm.objects.create(name="Beta", slug="beta")
    theirs = Case.objects.create(
        firm=beta, receipt_number="WAC2690000009", client=Client.objects.create(firm=beta)
    )
    hidden = message(theirs, "sms", "delivered", 5)
    problem(writer.get(f"/notifications/{hidden.pk}"), 404)
    assert writer.get("/notifications").json()["items"] == []
