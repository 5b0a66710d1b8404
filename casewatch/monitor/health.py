"""Whether USCIS can be read: the circuit breaker every worker obeys, and outage reports.

One `UscisHealth` row (name "uscis") is shared by all workers. Each call's
outcome is noted with `note_outcome`; `circuit_allows` says whether to call.

- **Readable** outcomes (a status, `not_found`, `invalid_receipt`: USCIS answered
  about the receipt) close the circuit and end an outage.
- **Failures** (`unavailable`, `auth_failed`, `malformed_response`) count; after
  `FAILURES_TO_OPEN` in a row the circuit opens for a cool-down. When it ends,
  the circuit is half-open and lets one probe through: success closes it, failure
  re-opens it for twice as long (up to a cap). Refused credentials open it for
  longer, since waiting rarely fixes them.
- `rate_limited` is neither: USCIS is up but wants us to slow down, which the
  limiter handles.

When no read has succeeded for CASEWATCH_USCIS_OUTAGE_ALERT_MINUTES (default
120) since the first failure, one `uscis_unreadable` OperationalEvent is
recorded; the first success after it records one `uscis_recovered`. Each comes
with its audit entry in the same transaction. A short blip records nothing.

Every moment is passed in (`now`), so the simulator's virtual clock works.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import TypedDict

from django.db import connection, transaction

from casewatch.audit.chain import record
from casewatch.config import ConfigError
from casewatch.monitor.limiter import process_lock
from casewatch.monitor.models import (
    CircuitState,
    OperationalEvent,
    OperationalKind,
    UscisHealth,
)

HEALTH_NAME = "uscis"
FAILURES_TO_OPEN = 5
COOL_DOWN = timedelta(seconds=30)
MAX_COOL_DOWN = timedelta(minutes=15)
AUTH_COOL_DOWN = timedelta(minutes=15)
MAX_AUTH_COOL_DOWN = timedelta(hours=2)
# A half-open probe whose outcome never arrives (its worker died) stops blocking
# others after this long; a call times out well before (15 s by default).
PROBE_TIMEOUT = timedelta(minutes=2)
DEFAULT_OUTAGE_ALERT_MINUTES = 120.0

READABLE: frozenset[str | None] = frozenset({None, "not_found", "invalid_receipt"})
FAILURES: frozenset[str] = frozenset({"unavailable", "auth_failed", "malformed_response"})
NEUTRAL: frozenset[str] = frozenset({"rate_limited"})
_LOCK = f"health:{HEALTH_NAME}"
_MESSAGE_LIMIT = 2000


class HealthSnapshot(TypedDict):
    """What `casewatch status` shows about USCIS; times are ISO 8601 UTC or None."""

    circuit: str
    open_until: str | None
    last_success_at: str | None
    unreadable_since: str | None
    consecutive_failures: int
    last_error: str | None
    last_error_at: str | None
    last_message: str | None
    outage_reported_at: str | None


def outage_alert_after() -> timedelta:
    """How long USCIS may stay unreadable before the firm hears of it (from the environment)."""
    name = "CASEWATCH_USCIS_OUTAGE_ALERT_MINUTES"
    raw = os.environ.get(name, "").strip()
    if not raw:
        return timedelta(minutes=DEFAULT_OUTAGE_ALERT_MINUTES)
    try:
        minutes = float(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a number of minutes, got {raw!r}") from exc
    if minutes <= 0:
        raise ConfigError(f"{name} must be greater than 0, got {raw!r}")
    return timedelta(minutes=minutes)


def note_outcome(error: str | None, now: datetime, *, message: str = "") -> OperationalEvent | None:
    """Record what one call to USCIS gave; return the outage or recovery event it caused, if any.

    `error` is the outcome's error code (None for a status). Call it inside the
    transaction that records the outcome, or on its own.
    """
    _require_aware(now)
    if error in READABLE:
        if _note_routine_success(now):
            return None
        with _locked() as health:
            return _note_success(health, now)
    if error in NEUTRAL:
        if _current().circuit == CircuitState.HALF_OPEN:
            with _locked() as health:
                # The probe learned nothing; let the next caller probe instead.
                health.probe_started_at = None
                health.save(update_fields=("probe_started_at",))
        return None
    if error not in FAILURES:
        raise ValueError(f"unknown USCIS outcome error {error!r}")
    assert error is not None
    with _locked() as health:
        return _note_failure(health, error, message, now)


def circuit_allows(now: datetime) -> bool:
    """Whether a worker may call USCIS now; a True from a half-open circuit makes it the probe."""
    _require_aware(now)
    if _current().circuit == CircuitState.CLOSED:
        return True
    with _locked() as health:
        allowed = True
        if health.circuit == CircuitState.OPEN:
            allowed = health.open_until is None or now >= health.open_until
            if allowed:
                health.circuit = CircuitState.HALF_OPEN
                health.probe_started_at = now
        elif health.circuit == CircuitState.HALF_OPEN:
            probing = health.probe_started_at
            allowed = probing is None or now >= probing + PROBE_TIMEOUT
            if allowed:
                health.probe_started_at = now
        # With the circuit open nobody calls, so the outage is noticed here too.
        _report_outage_if_due(health, now)
        health.save()
    return allowed


def health_snapshot() -> HealthSnapshot:
    """USCIS health as all workers see it, for `casewatch status`."""
    health = _current()
    return {
        "circuit": str(health.circuit),
        "open_until": _iso(health.open_until),
        "last_success_at": _iso(health.last_success_at),
        "unreadable_since": _iso(health.unreadable_since),
        "consecutive_failures": health.consecutive_failures,
        "last_error": health.last_error or None,
        "last_error_at": _iso(health.last_failure_at),
        "last_message": health.last_message or None,
        "outage_reported_at": _iso(health.outage_reported_at),
    }


# --- inside -------------------------------------------------------------------------


# Names fixed by the model; values always go in as parameters.
_ROUTINE_SUCCESS = (
    f"UPDATE {UscisHealth._meta.db_table} SET last_success_at = %s "  # noqa: S608
    "WHERE name = %s AND circuit = %s AND consecutive_failures = 0 "
    "AND unreadable_since IS NULL AND (last_success_at IS NULL OR last_success_at <= %s)"
)


def _note_routine_success(now: datetime) -> bool:
    """The common case in one UPDATE without a row lock: all was well and still is.

    Plain SQL: it runs once per request, and the ORM's query building cost
    several times what the database does with it.
    """
    at = UscisHealth._meta.get_field("last_success_at").get_db_prep_value(now, connection)
    with process_lock(_LOCK), connection.cursor() as cursor:
        cursor.execute(_ROUTINE_SUCCESS, [at, HEALTH_NAME, str(CircuitState.CLOSED), at])
        updated: int = cursor.rowcount
    return updated == 1


def _note_success(health: UscisHealth, now: datetime) -> OperationalEvent | None:
    event = None
    if health.unreadable_since is not None and health.outage_reported_at is not None:
        event = _record_event(
            OperationalKind.USCIS_RECOVERED,
            now,
            f"USCIS is readable again after {_duration(now - health.unreadable_since)}.",
            {
                "unreadable_since": health.unreadable_since.astimezone(UTC).isoformat(),
                "recovered_at": now.astimezone(UTC).isoformat(),
                "duration_minutes": _minutes(now - health.unreadable_since),
                "last_error": health.last_error,
            },
        )
    if health.last_success_at is None or now > health.last_success_at:
        health.last_success_at = now
    health.consecutive_failures = 0
    health.circuit = CircuitState.CLOSED
    health.open_until = None
    health.cool_down_seconds = 0.0
    health.probe_started_at = None
    health.unreadable_since = None
    health.outage_reported_at = None
    health.save()
    return event


def _note_failure(
    health: UscisHealth, error: str, message: str, now: datetime
) -> OperationalEvent | None:
    health.consecutive_failures += 1
    health.last_failure_at = now
    health.last_error = error
    health.last_message = message[:_MESSAGE_LIMIT]
    if health.unreadable_since is None:
        health.unreadable_since = now
    if health.circuit == CircuitState.HALF_OPEN or (
        health.circuit == CircuitState.CLOSED and health.consecutive_failures >= FAILURES_TO_OPEN
    ):
        _open(health, error, now)
    event = _report_outage_if_due(health, now)
    health.save()
    return event


def _open(health: UscisHealth, error: str, now: datetime) -> None:
    """Open the circuit: for the base cool-down the first time, then twice the last one."""
    base, cap = (
        (AUTH_COOL_DOWN, MAX_AUTH_COOL_DOWN)
        if error == "auth_failed"
        else (COOL_DOWN, MAX_COOL_DOWN)
    )
    seconds = base.total_seconds()
    if health.cool_down_seconds > 0:
        seconds = max(seconds, health.cool_down_seconds * 2)
    seconds = min(seconds, cap.total_seconds())
    health.circuit = CircuitState.OPEN
    health.cool_down_seconds = seconds
    health.open_until = now + timedelta(seconds=seconds)
    health.probe_started_at = None


def _report_outage_if_due(health: UscisHealth, now: datetime) -> OperationalEvent | None:
    since = health.unreadable_since
    if since is None or health.outage_reported_at is not None:
        return None
    if now - since < outage_alert_after():
        return None
    health.outage_reported_at = now
    return _record_event(
        OperationalKind.USCIS_UNREADABLE,
        now,
        f"USCIS has been unreadable for {_duration(now - since)}; "
        f"last error: {health.last_error or 'unknown'}. Status checks resume by themselves.",
        {
            "unreadable_since": since.astimezone(UTC).isoformat(),
            "minutes": _minutes(now - since),
            "last_error": health.last_error,
            "last_message": health.last_message[:200],
            "circuit": str(health.circuit),
        },
    )


def _record_event(
    kind: OperationalKind, now: datetime, message: str, details: dict[str, object]
) -> OperationalEvent:
    event = OperationalEvent.objects.create(
        kind=kind, occurred_at=now, message=message, details=details
    )
    record(
        "operational_event.recorded",
        object_type="operational_event",
        object_id=event.pk,
        actor="worker",
        details={"kind": str(kind), **details},
        at=now,
    )
    return event


@contextmanager
def _locked() -> Iterator[UscisHealth]:
    """The health row, locked for one short transaction (created on first use)."""
    with process_lock(_LOCK), transaction.atomic():
        health, _ = UscisHealth.objects.select_for_update().get_or_create(name=HEALTH_NAME)
        yield health


def _current() -> UscisHealth:
    """The row as it stands, unlocked; an unsaved default when nothing was noted yet."""
    with process_lock(_LOCK):
        health = UscisHealth.objects.filter(name=HEALTH_NAME).first()
    return health or UscisHealth(name=HEALTH_NAME)


def _require_aware(now: datetime) -> None:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"health times must be timezone-aware, got {now!r}")


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat()


def _minutes(span: timedelta) -> float:
    return round(span.total_seconds() / 60, 1)


def _duration(span: timedelta) -> str:
    """A span as people say it: "2 h 5 min", "45 min"."""
    minutes = int(span.total_seconds() // 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"
