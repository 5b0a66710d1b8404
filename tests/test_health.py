"""USCIS health: the circuit breaker all workers obey, and outage and recovery reports."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connections, transaction

from casewatch.audit.chain import verify
from casewatch.audit.models import AuditEntry
from casewatch.config import ConfigError
from casewatch.monitor.health import (
    AUTH_COOL_DOWN,
    COOL_DOWN,
    FAILURES_TO_OPEN,
    MAX_COOL_DOWN,
    PROBE_TIMEOUT,
    circuit_allows,
    health_snapshot,
    note_outcome,
    outage_alert_after,
)
from casewatch.monitor.models import OperationalEvent, OperationalKind

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


def minutes(n: float) -> datetime:
    return T0 + timedelta(minutes=n)


def fail(times: int, at: datetime, error: str = "unavailable") -> None:
    for _ in range(times):
        note_outcome(error, at, message="USCIS is down")


def events(kind: str | None = None) -> list[OperationalEvent]:
    found = OperationalEvent.objects.order_by("pk")
    return list(found.filter(kind=kind) if kind else found)


def audited(event: OperationalEvent) -> list[AuditEntry]:
    return list(
        AuditEntry.objects.filter(
            action="operational_event.recorded",
            object_type="operational_event",
            object_id=str(event.pk),
        )
    )


def in_threads(work: Callable[[], None], count: int) -> None:
    errors: list[BaseException] = []
    start = threading.Barrier(count)

    def run() -> None:
        try:
            start.wait()
            work()
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    if errors:
        raise errors[0]


# --- the circuit ---------------------------------------------------------------------------


def test_a_fresh_installation_may_call_uscis() -> None:
    assert circuit_allows(T0)
    assert health_snapshot()["circuit"] == "closed"


def test_the_circuit_opens_after_consecutive_failures() -> None:
    assert FAILURES_TO_OPEN == 5
    fail(4, T0)
    assert circuit_allows(T0)
    fail(1, T0)
    assert not circuit_allows(T0)
    assert not circuit_allows(T0 + COOL_DOWN - timedelta(seconds=1))
    snapshot = health_snapshot()
    assert snapshot["circuit"] == "open"
    assert snapshot["open_until"] == (T0 + COOL_DOWN).isoformat()


def test_a_success_between_failures_starts_the_count_again() -> None:
    fail(4, T0)
    note_outcome(None, T0)
    fail(4, T0)
    assert circuit_allows(T0)


def test_after_the_cool_down_one_probe_goes_through_and_its_success_closes_the_circuit() -> None:
    fail(5, T0)
    later = T0 + COOL_DOWN
    assert circuit_allows(later)  # The probe...
    assert not circuit_allows(later)  # ...and only the probe.
    assert health_snapshot()["circuit"] == "half_open"
    note_outcome(None, later)
    assert health_snapshot()["circuit"] == "closed"
    assert all(circuit_allows(later) for _ in range(3))
    assert health_snapshot()["consecutive_failures"] == 0


def test_a_failed_probe_reopens_the_circuit_for_twice_as_long_up_to_a_cap() -> None:
    fail(5, T0)
    now, cool_down = T0, COOL_DOWN
    seen = []
    for _ in range(8):
        now += cool_down
        assert circuit_allows(now)
        fail(1, now)
        until = datetime.fromisoformat(str(health_snapshot()["open_until"]))
        cool_down = until - now
        seen.append(cool_down)
        assert not circuit_allows(now + cool_down - timedelta(seconds=1))
    assert seen[:4] == [COOL_DOWN * 2, COOL_DOWN * 4, COOL_DOWN * 8, COOL_DOWN * 16]
    assert max(seen) == MAX_COOL_DOWN == seen[-1]


def test_a_probe_that_never_reports_back_lets_another_through() -> None:
    fail(5, T0)
    probe_at = T0 + COOL_DOWN
    assert circuit_allows(probe_at)
    assert not circuit_allows(probe_at + PROBE_TIMEOUT - timedelta(seconds=1))
    assert circuit_allows(probe_at + PROBE_TIMEOUT)


def test_refused_credentials_open_the_circuit_for_longer() -> None:
    fail(5, T0, "auth_failed")
    assert AUTH_COOL_DOWN > COOL_DOWN
    assert not circuit_allows(T0 + COOL_DOWN)
    assert not circuit_allows(T0 + AUTH_COOL_DOWN - timedelta(seconds=1))
    assert circuit_allows(T0 + AUTH_COOL_DOWN)


def test_rate_limiting_is_neither_success_nor_failure() -> None:
    fail(4, T0)
    for _ in range(10):
        note_outcome("rate_limited", T0)
    assert circuit_allows(T0)
    assert health_snapshot()["consecutive_failures"] == 4
    fail(1, T0)
    assert not circuit_allows(T0)


def test_a_rate_limited_probe_leaves_room_for_another_probe() -> None:
    fail(5, T0)
    probe_at = T0 + COOL_DOWN
    assert circuit_allows(probe_at)
    note_outcome("rate_limited", probe_at)
    assert circuit_allows(probe_at)
    assert health_snapshot()["circuit"] == "half_open"


@pytest.mark.parametrize("error", ["not_found", "invalid_receipt"])
def test_an_answer_about_the_receipt_proves_uscis_readable(error: str) -> None:
    fail(4, T0)
    note_outcome(error, minutes(1))
    snapshot = health_snapshot()
    assert snapshot["consecutive_failures"] == 0
    assert snapshot["unreadable_since"] is None
    assert snapshot["last_success_at"] == minutes(1).isoformat()


def test_malformed_answers_count_as_failures() -> None:
    fail(5, T0, "malformed_response")
    assert not circuit_allows(T0)


def test_a_success_noted_late_never_moves_the_last_success_back() -> None:
    note_outcome(None, minutes(5))
    note_outcome(None, minutes(3))
    assert health_snapshot()["last_success_at"] == minutes(5).isoformat()


def test_nonsense_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown"):
        note_outcome("teapot", T0)
    with pytest.raises(ValueError, match="timezone-aware"):
        note_outcome(None, datetime(2026, 3, 2, 15, 0))
    with pytest.raises(ValueError, match="timezone-aware"):
        circuit_allows(datetime(2026, 3, 2, 15, 0))


# --- outages -------------------------------------------------------------------------------


def test_an_outage_is_reported_once_after_the_configured_time_and_its_end_once() -> None:
    assert outage_alert_after() == timedelta(minutes=120)
    note_outcome(None, minutes(-10))
    fail(1, T0)
    fail(3, minutes(119))
    assert events() == []

    assert note_outcome("unavailable", minutes(120), message="Service Unavailable") is not None
    fail(3, minutes(121))
    for moment in (minutes(125), minutes(140)):
        circuit_allows(moment)
    (outage,) = events()
    assert outage.kind == OperationalKind.USCIS_UNREADABLE
    assert outage.occurred_at == minutes(120)
    assert outage.details["unreadable_since"] == T0.isoformat()
    assert outage.details["last_error"] == "unavailable"
    assert "2 h 0 min" in outage.message
    (entry,) = audited(outage)
    assert entry.details["kind"] == "uscis_unreadable"
    assert entry.at == minutes(120)

    recovered_event = note_outcome(None, minutes(150))
    note_outcome(None, minutes(151))
    assert recovered_event is not None
    assert [event.kind for event in events()] == ["uscis_unreadable", "uscis_recovered"]
    recovered = events("uscis_recovered")[0]
    assert recovered.details["duration_minutes"] == 150
    assert recovered.details["unreadable_since"] == T0.isoformat()
    assert "2 h 30 min" in recovered.message
    assert len(audited(recovered)) == 1
    assert health_snapshot()["unreadable_since"] is None
    assert verify().ok


def test_the_alert_time_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CASEWATCH_USCIS_OUTAGE_ALERT_MINUTES", "15")
    fail(1, T0)
    fail(1, minutes(14))
    assert events() == []
    fail(1, minutes(15))
    assert len(events("uscis_unreadable")) == 1


def test_a_bad_alert_time_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CASEWATCH_USCIS_OUTAGE_ALERT_MINUTES", "two hours")
    with pytest.raises(ConfigError, match="CASEWATCH_USCIS_OUTAGE_ALERT_MINUTES"):
        outage_alert_after()


def test_an_outage_is_noticed_while_the_open_circuit_keeps_everyone_waiting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CASEWATCH_USCIS_OUTAGE_ALERT_MINUTES", "10")
    fail(5, T0, "auth_failed")  # Open for 15 minutes: nobody calls.
    assert not circuit_allows(minutes(9))
    assert events() == []
    assert not circuit_allows(minutes(10))
    assert len(events("uscis_unreadable")) == 1


def test_a_short_blip_reports_nothing() -> None:
    fail(5, T0)
    fail(5, minutes(30))
    note_outcome(None, minutes(45))
    assert events() == []
    assert not AuditEntry.objects.filter(action="operational_event.recorded").exists()
    assert health_snapshot()["unreadable_since"] is None


def test_rate_limiting_is_not_an_outage() -> None:
    for moment in range(0, 300, 10):
        note_outcome("rate_limited", minutes(moment))
    assert events() == []
    assert health_snapshot()["unreadable_since"] is None


def test_the_event_and_its_audit_entry_share_the_callers_transaction() -> None:
    fail(1, T0)
    with pytest.raises(RuntimeError), transaction.atomic():
        assert note_outcome("unavailable", minutes(121)) is not None
        raise RuntimeError("the caller's transaction rolls back")
    assert events() == []
    assert not AuditEntry.objects.filter(action="operational_event.recorded").exists()
    assert note_outcome("unavailable", minutes(122)) is not None
    assert verify().ok


def test_the_snapshot_shows_what_status_needs() -> None:
    note_outcome(None, T0)
    fail(2, minutes(1))
    note_outcome("auth_failed", minutes(2), message="Invalid Access Token")
    assert health_snapshot() == {
        "circuit": "closed",
        "open_until": None,
        "last_success_at": T0.isoformat(),
        "unreadable_since": minutes(1).isoformat(),
        "consecutive_failures": 3,
        "last_error": "auth_failed",
        "last_error_at": minutes(2).isoformat(),
        "last_message": "Invalid Access Token",
        "outage_reported_at": None,
    }


# --- many workers at once ------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_workers_failing_together_report_one_outage() -> None:
    fail(1, T0)

    def work() -> None:
        for _ in range(5):
            note_outcome("unavailable", minutes(130))

    in_threads(work, 4)
    (outage,) = events()
    assert len(audited(outage)) == 1
    assert health_snapshot()["consecutive_failures"] == 21

    def recover() -> None:
        for _ in range(5):
            note_outcome(None, minutes(140))

    in_threads(recover, 4)
    assert len(events("uscis_recovered")) == 1
    assert verify().ok


@pytest.mark.django_db(transaction=True)
def test_only_one_of_many_workers_gets_to_probe() -> None:
    fail(5, T0)
    answers: list[bool] = []

    def ask() -> None:
        for _ in range(5):
            answers.append(circuit_allows(T0 + COOL_DOWN))

    in_threads(ask, 4)
    assert answers.count(True) == 1
