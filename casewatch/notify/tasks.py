"""The worker's delivery loop and periodic follow-ups, as thin wrappers of notify's functions.

Routing and delivery run in a loop of their own in every worker, so a change the
monitor records reaches staff and clients within seconds, not at the next minute.
What is due lives in the database; several workers share the work through the
notifications' claims, and a worker that dies loses nothing.
"""

from __future__ import annotations

import logging
import threading
import time

from django.db import InterfaceError, OperationalError, close_old_connections, connection
from django.utils import timezone
from huey import crontab
from huey.contrib.djhuey import db_periodic_task

from casewatch.notify.channels import close_all, transports
from casewatch.notify.channels.base import Transport
from casewatch.notify.dispatch import dispatch_due
from casewatch.notify.escalation import (
    check_card_delivery,
    escalate_unacknowledged,
    send_digests,
)
from casewatch.notify.route import route_pending

ROUND_SECONDS = 50.0
IDLE_SECONDS = 1.0
RETRY_SECONDS = 5.0

log = logging.getLogger(__name__)

_round = threading.Lock()
# One set of adapters per thread: an SMTP connection kept between sends is not shareable.
_local = threading.local()
_opened: list[dict[str, Transport]] = []
_opened_lock = threading.Lock()
# Set when the worker shuts down (the consumer's stop flag): a round ends.
stopping = threading.Event()


def _channels() -> dict[str, Transport]:
    adapters: dict[str, Transport] | None = getattr(_local, "transports", None)
    if adapters is None:
        adapters = _local.transports = transports()
        with _opened_lock:
            _opened.append(adapters)
    return adapters


def deliver_round(seconds: float = ROUND_SECONDS) -> int:
    """Route and deliver for up to `seconds`, resting when idle; returns notifications handled."""
    if not _round.acquire(blocking=False):
        return 0
    try:
        started = time.monotonic()
        handled = 0
        while not stopping.is_set() and time.monotonic() - started < seconds:
            routed = route_pending(timezone.now())
            report = dispatch_due(timezone.now(), transports=_channels())
            busy = routed.notifications + report.claimed
            handled += busy
            if busy == 0:
                stopping.wait(IDLE_SECONDS)
        return handled
    finally:
        _round.release()


def deliver_forever() -> None:
    """The worker's delivery thread: rounds until the worker stops.

    A thread of its own rather than a queued task: a round lasts most of a minute, and
    on a shared queue another worker's single consumer thread could pick it up and stop
    checking USCIS meanwhile. A failed round (the database gone for a moment) is logged
    and the next one starts after a pause; what was due stays due in the database.
    """
    while not stopping.is_set():
        try:
            deliver_round()
        except (OperationalError, InterfaceError) as exc:
            # The database dropped the connection (restarted, or pg_terminate_backend):
            # Django reconnects only once it is closed; go on at once with a fresh one.
            log.warning("database connection lost in a delivery round, reconnecting: %s", exc)
            connection.close()
            stopping.wait(IDLE_SECONDS)
        except Exception:
            log.exception("a delivery round failed; trying again shortly")
            close_old_connections()
            stopping.wait(RETRY_SECONDS)
        finally:
            close_old_connections()


def start_delivery() -> threading.Thread:
    thread = threading.Thread(target=deliver_forever, name="casewatch-delivery", daemon=True)
    thread.start()
    return thread


def shut_down() -> None:
    stopping.set()
    if _round.acquire(timeout=15):
        _round.release()
    with _opened_lock:
        for adapters in _opened:
            close_all(adapters)
        _opened.clear()


@db_periodic_task(crontab(minute="*/5"))
def follow_up_changes() -> int:
    """Escalate unacknowledged action changes, ask about cards not delivered, send digests."""
    now = timezone.now()
    return escalate_unacknowledged(now) + check_card_delivery(now) + send_digests(now)
