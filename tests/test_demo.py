"""`casewatch up --demo`: a demo firm whose clients speak several languages and have consented,
with sandbox cases chosen so that real changes are detected within minutes."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pytest

from casewatch.accounts.firms import default_firm
from casewatch.accounts.models import Membership, Role
from casewatch.cases.models import Case, Client
from casewatch.cli.demo import CHANGE_WINDOW, demo_receipts, load_demo
from casewatch.notify.consent import has_consent
from casewatch.notify.models import CLIENT_CHANNELS, ContactPlan, MessagingPolicy
from casewatch.uscis.sandbox.world import SyntheticWorld
from tests.test_cli import _free_port, _start, casewatch

START = datetime(2026, 12, 2, 15, 0, tzinfo=UTC)


def test_each_demo_case_changes_status_soon_after_start_up() -> None:
    world = SyntheticWorld()
    chosen = demo_receipts(START)
    assert len(chosen) >= 8
    assert len({category for _, category in chosen}) >= 4  # several kinds of news
    for receipt, _ in chosen:
        found = world.case(receipt, START)
        assert isinstance(found, tuple)
        steps = found[0].steps
        assert any(START + CHANGE_WINDOW[0] < s.at < START + CHANGE_WINDOW[1] for s in steps)
        # Something is already on file at start-up: the change is news, not the first status.
        assert found[0].steps_at(START)


@pytest.mark.django_db
def test_the_demo_firm_has_staff_and_consenting_clients_speaking_several_languages() -> None:
    firm = default_firm()
    created = load_demo(firm, START)
    assert created == Case.objects.filter(firm=firm).count() >= 8
    clients = list(Client.objects.filter(firm=firm))
    assert len({c.language for c in clients}) >= 6
    assert all(c.name.startswith("Demo Client") for c in clients)
    for client in clients:
        assert ContactPlan.objects.get(client=client).channels == list(CLIENT_CHANNELS)
        assert all(has_consent(client, channel) for channel in CLIENT_CHANNELS)
    roles = set(Membership.objects.filter(firm=firm).values_list("role", flat=True))
    assert {Role.ATTORNEY, Role.PARALEGAL, Role.OPERATIONS} <= roles
    assert all(case.attorney and case.paralegal for case in Case.objects.filter(firm=firm))
    assert MessagingPolicy.objects.get(firm=firm).quiet_hours is False


@pytest.mark.django_db
def test_loading_the_demo_twice_adds_nothing_the_second_time() -> None:
    firm = default_firm()
    load_demo(firm, START)
    cases = Case.objects.count()
    assert load_demo(firm, START) == 0
    assert Case.objects.count() == cases


@pytest.mark.slow
def test_within_three_minutes_of_up_demo_clients_are_told_in_their_language(tmp_path) -> None:
    """The issue's figure: staff and client notifications in the outbox, among them WhatsApp
    messages in another language than English that the fake's signed callback marked
    delivered or read, all within three minutes of `casewatch up --demo`."""
    data_dir = tmp_path / "demo"
    process, _ = _start(["up", "--demo", "--port", str(_free_port())], data_dir, "casewatch is")
    try:
        deadline = time.monotonic() + 180
        entries: list[dict[str, object]] = []
        while time.monotonic() < deadline:
            result = casewatch("outbox", "--json", data_dir=data_dir)
            assert result.returncode == 0, result.stderr
            entries = json.loads(result.stdout)
            told = [
                e
                for e in entries
                if e["recipient_kind"] == "client"
                and e["channel"] == "whatsapp"
                and e["language"] != "en"
                and e["status"] in ("delivered", "read")
            ]
            if told and any(e["recipient_kind"] == "staff" for e in entries):
                break
            time.sleep(5)
        else:
            raise AssertionError(f"no delivered WhatsApp message in another language: {entries}")
        assert all(e["provider_message_id"] for e in told)
        assert all(str(e["provider_message_id"]).startswith("wamid.") for e in told)
    finally:
        process.terminate()
        process.wait(timeout=30)
