"""Pacing requests the way a spike arrest expects: evenly, never in bursts.

USCIS enforces its rate as a spike arrest (10/second means one request per
100 ms), so a burst is refused even under the per-second average. This pacer
hands out start times at least 1/rate apart to every thread of one process,
and lets a 429 or 503 push everyone back. (The limiter shared across workers
and machines builds on this in the monitoring engine.)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

# Start a little later than 1/rate: network jitter must not land two
# requests inside the server's window.
SAFETY_MARGIN = 0.003


class Pacer:
    def __init__(
        self,
        rate: float | None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate is not None and rate <= 0:
            raise ValueError("rate must be greater than 0")
        self.interval = 0.0 if rate is None else 1.0 / rate + SAFETY_MARGIN
        self._clock = clock
        self._sleep = sleep
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        """Block until this caller may send its request."""
        with self._lock:
            now = self._clock()
            slot = max(now, self._next)
            self._next = slot + self.interval
        if slot > now:
            self._sleep(slot - now)

    def pause(self, seconds: float) -> None:
        """Hold every caller back for `seconds` (after a 429 or 503)."""
        with self._lock:
            self._next = max(self._next, self._clock() + seconds)
