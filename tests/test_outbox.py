"""`casewatch outbox`: every notification in the shape cli.md promises, for scripts and people."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from casewatch.accounts.models import Firm
from casewatch.cases.models import Case, Client
from casewatch.notify.models import Notification
from casewatch.notify.outbox import outbox_entries
from tests.test_cli import casewatch

CONTRACT_KEYS = {
    "id",
    "case",
    "recipient_kind",
    "channel",
    "language",
    "status",
    "provider_message_id",
    "attempts",
    "created_at",
    "sent_at",
    "delivered_at",
}
AT = datetime(2026, 3, 2, 14, 30, tzinfo=UTC)


def test_a_new_data_directory_has_an_empty_outbox(tmp_path) -> None:
    result = casewatch("outbox", "--json", data_dir=tmp_path / "empty")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []


def test_a_case_that_is_not_a_receipt_number_is_bad_usage(tmp_path) -> None:
    result = casewatch("outbox", "--json", "--case", "EAC12", data_dir=tmp_path / "empty")
    assert result.returncode == 2
    assert result.stdout == ""
    assert "EAC12" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_a_firm_that_does_not_exist_is_bad_usage(tmp_path) -> None:
    result = casewatch("outbox", "--firm", "nobody", data_dir=tmp_path / "empty")
    assert result.returncode == 2 and "nobody" in result.stderr


def test_without_json_and_without_a_terminal_it_prints_plain_lines(tmp_path) -> None:
    result = casewatch("outbox", data_dir=tmp_path / "empty")
    assert result.returncode == 0 and result.stdout == "No notifications yet.\n"


@pytest.mark.django_db
def test_each_notification_has_the_contract_fields_with_iso_utc_times() -> None:
    firm = Firm.objects.create(name="Example Immigration Law", slug="example")
    client = Client.objects.create(firm=firm, personal={"name": "Test Client"}, language="es")
    case = Case.objects.create(firm=firm, receipt_number="EAC9999103403", client=client)
    Notification.objects.create(
        firm=firm,
        case=case,
        client=client,
        kind="status_change",
        recipient_kind="client",
        channel="whatsapp",
        language="es",
        status="delivered",
        idempotency_key="a" * 64,
        provider_message_id="wamid.TEST1",
        attempts=1,
        created_at=AT,
        sent_at=AT,
        delivered_at=AT,
        address="+15555550123",
    )
    Notification.objects.create(
        firm=firm,
        kind="uscis_outage",
        recipient_kind="staff",
        channel="in_app",
        language="en",
        status="delivered",
        idempotency_key="b" * 64,
        created_at=AT,
        delivered_at=AT,
    )
    first, second = outbox_entries()
    assert set(first) >= CONTRACT_KEYS
    assert first["case"] == "EAC9999103403" and first["recipient_kind"] == "client"
    assert first["provider_message_id"] == "wamid.TEST1" and first["attempts"] == 1
    assert first["created_at"] == "2026-03-02T14:30:00Z" and first["sent_at"] is not None
    assert second["case"] is None and second["provider_message_id"] is None
    assert second["sent_at"] is None and second["delivered_at"] == "2026-03-02T14:30:00Z"
    assert [e["id"] for e in outbox_entries(receipt="EAC9999103403")] == [first["id"]]
    # What the outbox prints never carries the client's address.
    assert "5555550123" not in json.dumps([first, second])
