"""Clocks: the real one, and ones that run fast or stand still for the sandbox and tests."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current moment, timezone-aware (UTC)."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class ScaledClock:
    """Starts at `start` and runs `speed` times faster than the wall clock.

    Made with `running=False`, it shows `start` until `run()` sets it going: a replay
    can wait for its readers to be ready before anything happens.
    """

    def __init__(
        self, start: datetime | None = None, speed: float = 1.0, *, running: bool = True
    ) -> None:
        if speed <= 0:
            raise ValueError("clock speed must be greater than 0")
        self.start = start or datetime.now(UTC)
        self.speed = speed
        self._origin: float | None = time.monotonic() if running else None

    def run(self) -> None:
        """Set a clock made standing still going, from `start`; a running one runs on."""
        if self._origin is None:
            self._origin = time.monotonic()

    def now(self) -> datetime:
        if self._origin is None:
            return self.start
        return self.start + timedelta(seconds=(time.monotonic() - self._origin) * self.speed)


class ManualClock:
    """Stands still until told to move: for simulations in virtual time and for tests."""

    def __init__(self, start: datetime) -> None:
        self._now = start
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def set(self, moment: datetime) -> None:
        with self._lock:
            self._now = moment

    def advance(self, delta: timedelta) -> None:
        with self._lock:
            self._now += delta
