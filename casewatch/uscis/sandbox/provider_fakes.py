"""What the WhatsApp and Twilio fakes share: the callback sender, faults, the fault table.

A provider answers a send at once and reports on the message later, by POSTing
signed callbacks to the sender's webhook. The fakes do the same from one
background thread each (`CallbackSender`): callbacks wait in a bounded queue
ordered by when they are due, failed deliveries are retried a few times, as the
providers do, and everything sent is kept for inspection (GET /_fake/callbacks).
"""

from __future__ import annotations

import heapq
import itertools
import json
import logging
import os
import threading
import time
import tomllib
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from typing import Any, Literal

import httpx
from werkzeug.wrappers import Request, Response

log = logging.getLogger("casewatch.sandbox")

# Callbacks waiting to be sent; beyond this a new one is dropped (and recorded as such).
MAX_PENDING = 10_000
# What inspection keeps: the newest requests and callbacks.
MAX_RECORDS = 10_000
# After a failed delivery, wait this long before each further try (providers retry too).
RETRY_DELAYS = (0.5, 2.0, 5.0)
CALLBACK_TIMEOUT = 10.0

Provider = Literal["whatsapp", "twilio"]


# -- the fault table -------------------------------------------------------------------


@dataclass(frozen=True)
class NumberFault:
    """One row of data/provider_faults.toml: a documented refusal and when it shows."""

    suffix: str
    code: int
    when: Literal["request", "callback"]
    http_status: int = 400
    title: str = ""
    message: str = ""
    details: str = ""
    callback_status: str = "failed"


@cache
def fault_table(provider: Provider) -> tuple[NumberFault, ...]:
    source = resources.files("casewatch.uscis.sandbox").joinpath("data", "provider_faults.toml")
    rows: list[dict[str, Any]] = tomllib.loads(source.read_text(encoding="utf-8"))[provider]
    return tuple(NumberFault(**row) for row in rows)


def fault_for_number(provider: Provider, number: str) -> NumberFault | None:
    """The fault a recipient number stands for, by the digits it ends with."""
    digits = "".join(ch for ch in number if ch.isdigit())
    return next((row for row in fault_table(provider) if digits.endswith(row.suffix)), None)


def fault_for_code(provider: Provider, code: int) -> NumberFault | None:
    return next((row for row in fault_table(provider) if row.code == code), None)


# -- faults injected at run time -------------------------------------------------------


class FaultRequestError(ValueError):
    """POST /_fake/faults was not understood; the message says what was wrong."""


FAULT_KEYS = (
    "code",
    "count",
    "outage",
    "seconds",
    "duplicate_callbacks",
    "out_of_order_callbacks",
    "clear",
)


class RuntimeFaults:
    """Faults switched on while the fake runs (POST /_fake/faults), thread-safe.

    `{"code": 130429, "count": 3}`: the next 3 sends are refused with that code.
    `{"outage": 503, "seconds": 30}`: every send answers 503 for 30 seconds.
    `{"duplicate_callbacks": true}`: every callback is delivered twice.
    `{"out_of_order_callbacks": true}`: a message's callbacks arrive latest first.
    `{"clear": true}`: all of it off.
    """

    def __init__(self, *, duplicate_callbacks: bool = False, out_of_order: bool = False) -> None:
        self._lock = threading.Lock()
        self._codes: deque[int] = deque()
        self._outage_status = 0
        self._outage_until = 0.0
        self.duplicate_callbacks = duplicate_callbacks
        self.out_of_order_callbacks = out_of_order

    def configure(self, payload: Any, known_codes: Iterable[int]) -> None:
        if not isinstance(payload, dict):
            raise FaultRequestError('send a JSON object, e.g. {"code": 130429, "count": 3}')
        unknown = sorted(set(payload) - set(FAULT_KEYS))
        if unknown:
            raise FaultRequestError(f"unknown key {unknown[0]!r} (known: {', '.join(FAULT_KEYS)})")
        updates: list[tuple[str, Any]] = []
        if payload.get("clear"):
            updates.append(("clear", None))
        if "code" in payload:
            code, count = payload["code"], payload.get("count", 1)
            if not isinstance(code, int) or isinstance(code, bool):
                raise FaultRequestError("code must be a whole number, e.g. 130429")
            if code not in set(known_codes):
                known = ", ".join(str(c) for c in sorted(set(known_codes)))
                raise FaultRequestError(f"code {code} is not in the fault table (known: {known})")
            if not isinstance(count, int) or isinstance(count, bool) or count < 1:
                raise FaultRequestError("count must be a whole number of sends, at least 1")
            updates.append(("code", (code, count)))
        if "outage" in payload:
            status, seconds = payload["outage"], payload.get("seconds", 30)
            if not isinstance(status, int) or not 500 <= status <= 599:
                raise FaultRequestError("outage must be an HTTP status from 500 to 599, e.g. 503")
            if not isinstance(seconds, int | float) or isinstance(seconds, bool) or seconds <= 0:
                raise FaultRequestError("seconds must be a number greater than 0")
            updates.append(("outage", (status, float(seconds))))
        for key in ("duplicate_callbacks", "out_of_order_callbacks"):
            if key in payload:
                if not isinstance(payload[key], bool):
                    raise FaultRequestError(f"{key} must be true or false")
                updates.append((key, payload[key]))
        with self._lock:
            for key, value in updates:
                if key == "clear":
                    self._codes.clear()
                    self._outage_until = 0.0
                    self.duplicate_callbacks = self.out_of_order_callbacks = False
                elif key == "code":
                    self._codes.extend([value[0]] * value[1])
                elif key == "outage":
                    self._outage_status = value[0]
                    self._outage_until = time.monotonic() + value[1]
                else:
                    setattr(self, key, value)

    def clear(self) -> None:
        with self._lock:
            self._codes.clear()
            self._outage_until = 0.0
            self.duplicate_callbacks = self.out_of_order_callbacks = False

    def outage(self) -> int | None:
        """The HTTP status every send gets now, when an outage is on."""
        with self._lock:
            return self._outage_status if time.monotonic() < self._outage_until else None

    def take_code(self) -> int | None:
        """The code the next send is refused with, if one is queued (used up by this call)."""
        with self._lock:
            return self._codes.popleft() if self._codes else None

    def describe(self) -> dict[str, Any]:
        with self._lock:
            left = max(0.0, self._outage_until - time.monotonic())
            return {
                "queued_codes": list(self._codes),
                "outage": {"status": self._outage_status, "seconds_left": round(left, 3)}
                if left
                else None,
                "duplicate_callbacks": self.duplicate_callbacks,
                "out_of_order_callbacks": self.out_of_order_callbacks,
            }


# -- the callback sender ---------------------------------------------------------------


@dataclass(order=True)
class _Due:
    due: float
    seq: int
    record_id: int = 0
    url: str = ""
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    attempt: int = 0


def utc_iso(moment: datetime | None = None) -> str:
    return (moment or datetime.now(UTC)).astimezone(UTC).isoformat()


class CallbackSender:
    """Sends callbacks from one background thread, each when it is due.

    The queue is bounded (MAX_PENDING); a callback that does not fit is recorded as
    dropped instead of blocking the request that caused it. A delivery that fails
    (no answer, or not 2xx) is tried again after each of `retry_delays`. The thread
    starts with the first callback and in the process that schedules it, so a fake
    built before a server forks still sends from the child; `stop()` ends it.
    """

    def __init__(
        self,
        name: str,
        user_agent: str,
        *,
        retry_delays: tuple[float, ...] = RETRY_DELAYS,
        max_pending: int = MAX_PENDING,
        timeout: float = CALLBACK_TIMEOUT,
    ) -> None:
        self.name = name
        self.user_agent = user_agent
        self.retry_delays = retry_delays
        self.max_pending = max_pending
        self.timeout = timeout
        self._cond = threading.Condition()
        self._heap: list[_Due] = []
        self._seq = itertools.count()
        self._ids = itertools.count(1)
        self._records: dict[int, dict[str, Any]] = {}
        self._order: deque[int] = deque()
        self._in_flight = 0
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._pid = 0

    # -- scheduling --------------------------------------------------------------
    def schedule(
        self,
        *,
        kind: str,
        url: str | None,
        body: bytes,
        headers: Mapping[str, str],
        payload: Any,
        delay: float = 0.0,
    ) -> int:
        """Queue one callback to go out after `delay` seconds; returns its record id."""
        with self._cond:
            record_id = next(self._ids)
            record: dict[str, Any] = {
                "id": record_id,
                "kind": kind,
                "url": url,
                "payload": payload,
                "headers": dict(headers),
                "state": "pending",
                "attempts": 0,
                "http_status": None,
                "error": "",
                "scheduled_at": utc_iso(),
                "sent_at": None,
            }
            self._remember(record)
            if not url:
                record.update(state="not_sent", error="no callback URL is configured")
                self._cond.notify_all()
                return record_id
            if self._stopping:
                record.update(state="dropped", error="the fake is stopping")
                return record_id
            if len(self._heap) >= self.max_pending:
                record.update(state="dropped", error=f"more than {self.max_pending} pending")
                self._cond.notify_all()
                return record_id
            heapq.heappush(
                self._heap,
                _Due(
                    due=time.monotonic() + max(0.0, delay),
                    seq=next(self._seq),
                    record_id=record_id,
                    url=url,
                    body=body,
                    headers=tuple(headers.items()),
                ),
            )
            self._ensure_thread()
            self._cond.notify_all()
        return record_id

    def _remember(self, record: dict[str, Any]) -> None:
        self._records[record["id"]] = record
        self._order.append(record["id"])
        while len(self._order) > MAX_RECORDS:
            self._records.pop(self._order.popleft(), None)

    def _ensure_thread(self) -> None:
        if self._thread is not None and self._thread.is_alive() and self._pid == os.getpid():
            return
        self._pid = os.getpid()
        self._thread = threading.Thread(
            target=self._run, name=f"{self.name}-callbacks", daemon=True
        )
        self._thread.start()

    # -- inspection --------------------------------------------------------------
    def records(self) -> list[dict[str, Any]]:
        with self._cond:
            return [dict(self._records[i]) for i in self._order if i in self._records]

    def record(self, record_id: int) -> dict[str, Any] | None:
        with self._cond:
            found = self._records.get(record_id)
            return dict(found) if found else None

    def wait_for(self, record_id: int, timeout: float) -> dict[str, Any] | None:
        """Block until the callback was delivered or given up on; its record (None: unknown)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = self._records.get(record_id)
                if found is None or found["state"] != "pending":
                    return dict(found) if found else None
                left = deadline - time.monotonic()
                if left <= 0:
                    return dict(found)
                self._cond.wait(left)

    def idle(self, timeout: float) -> bool:
        """Wait until nothing is pending or in flight; False when time ran out first."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._heap or self._in_flight:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.05))
            return True

    def clear(self) -> None:
        """Forget what was sent (pending callbacks still go out)."""
        with self._cond:
            pending = {due.record_id for due in self._heap}
            self._order = deque(i for i in self._order if i in pending)
            self._records = {i: r for i, r in self._records.items() if i in pending}

    def stop(self, timeout: float = 5.0) -> None:
        """Stop sending; callbacks not yet sent are recorded as dropped."""
        with self._cond:
            self._stopping = True
            for due in self._heap:
                record = self._records.get(due.record_id)
                if record is not None:
                    record.update(state="dropped", error="the fake stopped")
            self._heap.clear()
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    # -- the thread --------------------------------------------------------------
    def _next(self) -> _Due | None:
        with self._cond:
            while not self._stopping:
                if self._heap:
                    wait = self._heap[0].due - time.monotonic()
                    if wait <= 0:
                        self._in_flight += 1
                        return heapq.heappop(self._heap)
                    self._cond.wait(wait)
                else:
                    self._cond.wait()
            return None

    def _run(self) -> None:
        with httpx.Client(timeout=self.timeout, headers={"User-Agent": self.user_agent}) as http:
            while (item := self._next()) is not None:
                try:
                    self._deliver(http, item)
                finally:
                    with self._cond:
                        self._in_flight -= 1
                        self._cond.notify_all()

    def _deliver(self, http: httpx.Client, item: _Due) -> None:
        status: int | None = None
        error = ""
        try:
            answer = http.post(item.url, content=item.body, headers=dict(item.headers))
            status = answer.status_code
            if not 200 <= status < 300:
                error = f"the webhook answered {status}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        with self._cond:
            record = self._records.get(item.record_id)
            retry = bool(error) and item.attempt < len(self.retry_delays) and not self._stopping
            if record is not None:
                record.update(
                    attempts=item.attempt + 1,
                    http_status=status,
                    error=error,
                    sent_at=utc_iso(),
                    state="pending" if retry else ("failed" if error else "delivered"),
                )
            if retry:
                item.due = time.monotonic() + self.retry_delays[item.attempt]
                item.attempt += 1
                item.seq = next(self._seq)
                heapq.heappush(self._heap, item)
            self._cond.notify_all()
        if error and not retry:
            log.warning("%s: a callback was not delivered: %s", self.name, error)


# -- small WSGI helpers ----------------------------------------------------------------


def json_response(status: int, payload: Any, headers: Mapping[str, str] | None = None) -> Response:
    return Response(
        json.dumps(payload, ensure_ascii=False),
        status=status,
        mimetype="application/json",
        headers=dict(headers or {}),
    )


def read_json(request: Request) -> Any:
    """The request's JSON body, or None when it has none or it is not JSON."""
    try:
        return json.loads(request.get_data(cache=True) or b"null")
    except (ValueError, UnicodeDecodeError):
        return None


def plan_callbacks(
    statuses: list[tuple[str, float]], *, out_of_order: bool, duplicate: bool
) -> list[tuple[str, float]]:
    """When each of a message's callbacks goes out: (status, seconds from now).

    Out of order, the latest status leaves first (its timestamp still says when it
    happened); duplicated, each leaves a second time shortly after the first.
    """
    delays = [delay for _, delay in statuses]
    if out_of_order:
        delays = delays[::-1]
    plan = [(status, delay) for (status, _), delay in zip(statuses, delays, strict=True)]
    if duplicate:
        step = min((d for d in delays if d > 0), default=0.1) / 2
        plan += [(status, delay + step) for status, delay in plan]
    return sorted(plan, key=lambda item: item[1])


__all__ = [
    "FAULT_KEYS",
    "CallbackSender",
    "FaultRequestError",
    "NumberFault",
    "RuntimeFaults",
    "fault_for_code",
    "fault_for_number",
    "fault_table",
    "json_response",
    "plan_callbacks",
    "read_json",
]


class ProviderFake:
    """What both provider fakes offer tests and operators: inspection and run-time control.

    A fake sets `provider` (its name in the fault table) and, in its constructor,
    `_lock`, `_received`, `sender` and `faults`; `_forget` clears its own extra state.
    """

    provider: str
    _lock: threading.Lock
    _received: Any
    sender: CallbackSender
    faults: RuntimeFaults

    def on_messages(self, request: Request) -> Response:
        return json_response(200, self.received())

    def received(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._received)

    def _keep(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self._received.append(entry)

    def on_callbacks(self, request: Request) -> Response:
        return json_response(200, self.sender.records())

    def on_faults(self, request: Request) -> Response:
        if request.method == "POST":
            try:
                self.faults.configure(
                    read_json(request), [row.code for row in fault_table(self.provider)]
                )
            except FaultRequestError as exc:
                return json_response(400, {"error": str(exc)})
        return json_response(200, self.faults.describe())

    def on_reset(self, request: Request) -> Response:
        self.reset()
        return json_response(200, {"reset": True})

    def reset(self) -> None:
        """Forget what was received and sent, and switch run-time faults off."""
        with self._lock:
            self._received.clear()
            self._forget()
        self.sender.clear()
        self.faults.clear()

    def _forget(self) -> None:
        """Clear the fake's own state (under the lock)."""
