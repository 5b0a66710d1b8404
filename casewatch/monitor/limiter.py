"""The USCIS budget shared by every worker: spike-arrest slots, the daily quota, back-off.

USCIS enforces its rate as a spike arrest (10/second means one request per
100 ms, bursts refused even under the average), counts a daily quota that
resets at midnight in one time zone (GMT or US Eastern, depending on the
grant), and answers 429 or 503 when it wants everyone to stop for a while.
One bucket holds all three for all workers on all machines:

- **Slots.** Each request atomically takes `slot = max(now, next_slot,
  blocked_until)` and moves `next_slot` to `slot + 1/rate + margin`; the caller
  sleeps until its slot. No credit piles up while idle, so there is never a
  burst, and no two slots are closer than 1/rate whoever holds them.
- **Daily quota.** Every slot counts against the quota day it falls in; once
  the day's budget is taken, reservations are refused until the reset.
- **Back-off.** A 429 or 503 sets `blocked_until`, and no slot is handed out
  before it.

The bucket is a `QuotaBucket` row in the database on the embedded default, and
a Redis hash updated by a Lua script when `CASEWATCH_REDIS_URL` is set; both
give the same answers. Time comes from the `clock` passed in (epoch seconds),
never from `time.time()` directly, so the simulator can run in virtual time.
Slots are moments on the workers' clocks, which must agree (NTP keeps them
within a millisecond or two; the margin absorbs that).

This is hand-written rather than taken from a rate-limiting library because
those count requests per window (which a spike arrest refuses as bursts) and
know neither quota days in a time zone nor an injected clock.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import redis
from django.db import connection, transaction

from casewatch.config import ConfigError
from casewatch.monitor.models import QuotaBucket

logger = logging.getLogger(__name__)

Clock = Callable[[], float]

# Slots start a little more than 1/rate apart: the jitter between taking a slot
# and the request reaching USCIS must not land two requests inside its window.
SAFETY_MARGIN = 0.003
# A slot more than this late is given up: with the margin, a request sent this
# late still leaves the next slot's one 5 ms clear of the spike arrest's 5 ms
# tolerance, room for the jitter of a busy machine between slot and arrival.
LATE_SLOT = 0.003
# How long a 429 or 503 without Retry-After holds everyone back.
DEFAULT_BACK_OFF = 30.0
BUCKET_NAME = "uscis"
REDIS_PREFIX = "casewatch:quota:"


class Quota(Protocol):
    """A shared USCIS allowance; `DatabaseQuota` and `RedisQuota` are the two kinds."""

    clock: Clock

    def reserve(self) -> Grant:
        """Take the next slot (counted against the quota), or be refused for the day."""
        ...

    def back_off(self, seconds: float | None = None) -> None:
        """Hold every caller back for `seconds` (Retry-After) or `DEFAULT_BACK_OFF`."""
        ...

    def used_today(self) -> int:
        """Slots taken in the current quota day."""
        ...

    def resets_at(self) -> datetime:
        """When the current quota day ends (UTC)."""
        ...

    def blocked_until(self) -> float:
        """Epoch seconds until which a 429/503 back-off holds (past when none)."""
        ...


@dataclass(frozen=True)
class Grant:
    """The answer to one reservation.

    Granted: send at `at` (epoch seconds on the quota's clock), `wait` seconds after
    reserving. Refused (the day's quota is used up, nothing was counted):
    `refused_until` is when the quota resets, and `at` equals it.
    """

    at: float
    wait: float
    refused_until: float | None = None

    @property
    def granted(self) -> bool:
        return self.refused_until is None


@dataclass(frozen=True)
class QuotaDay:
    """One day of the daily quota: its date in the reset zone and the reset that ends it."""

    label: str
    ends_at: float


def quota_day(at: float, zone: ZoneInfo) -> QuotaDay:
    """The quota day that the moment `at` (epoch seconds) falls in."""
    local = datetime.fromtimestamp(at, zone)
    reset = datetime.combine(local.date() + timedelta(days=1), datetime.min.time(), tzinfo=zone)
    return QuotaDay(local.date().isoformat(), reset.timestamp())


def reset_zone(name: str | None = None) -> ZoneInfo:
    """The zone whose midnight resets the quota: `name`, else CASEWATCH_USCIS_QUOTA_RESET_ZONE."""
    if name is None:
        name = os.environ.get("CASEWATCH_USCIS_QUOTA_RESET_ZONE", "").strip() or "UTC"
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(
            f"CASEWATCH_USCIS_QUOTA_RESET_ZONE must be a time zone such as UTC or "
            f"America/New_York, got {name!r}"
        ) from exc


def redis_url() -> str | None:
    return os.environ.get("CASEWATCH_REDIS_URL", "").strip() or None


@dataclass(frozen=True)
class BucketState:
    """What a bucket stores, whichever backend holds it."""

    day: str = ""
    used: int = 0
    next_slot: float = 0.0
    blocked_until: float = 0.0


class _Settings:
    """What both backends are built from; checks the arguments once."""

    def __init__(
        self,
        rate: float | None,
        daily_budget: int | None,
        clock: Clock,
        zone: str | ZoneInfo | None,
        margin: float,
    ) -> None:
        if rate is not None and rate <= 0:
            raise ValueError("rate must be greater than 0 (or None for no spacing)")
        if daily_budget is not None and daily_budget < 0:
            raise ValueError("daily_budget cannot be negative (or None for no quota)")
        if margin < 0:
            raise ValueError("margin cannot be negative")
        self.rate = rate
        self.daily_budget = daily_budget
        self.clock = clock
        self.zone = zone if isinstance(zone, ZoneInfo) else reset_zone(zone)
        self.interval = 0.0 if rate is None else 1.0 / rate + margin
        # The last answer of `days_from` and the moments it holds for (epoch seconds).
        self._days: tuple[float, float, tuple[QuotaDay, QuotaDay]] | None = None

    def days_from(self, now: float) -> tuple[QuotaDay, QuotaDay]:
        """Today's quota day and the next: a slot can be pushed past midnight, not further.

        (A slot more than a day ahead, which only a day-long back-off makes, is
        counted against tomorrow; both backends do the same.) Worked out once per
        day: every request asks.
        """
        known = self._days
        if known is not None and known[0] <= now < known[1]:
            return known[2]
        today = quota_day(now, self.zone)
        days = (today, quota_day(today.ends_at, self.zone))
        began = datetime.combine(
            datetime.fromtimestamp(now, self.zone).date(), datetime.min.time(), tzinfo=self.zone
        ).timestamp()
        self._days = (min(began, now), today.ends_at, days)
        return days


def decide(
    state: BucketState,
    now: float,
    interval: float,
    daily_budget: int | None,
    days: tuple[QuotaDay, QuotaDay],
) -> tuple[BucketState, Grant]:
    """One reservation against `state`: the new state and the grant (the Lua script mirrors it)."""
    slot = max(now, state.next_slot, state.blocked_until)
    day = days[0] if slot < days[0].ends_at else days[1]
    used = state.used if state.day == day.label else 0
    if daily_budget is not None and used >= daily_budget:
        return state, Grant(at=day.ends_at, wait=day.ends_at - now, refused_until=day.ends_at)
    new = replace(state, day=day.label, used=used + 1, next_slot=slot + interval)
    return new, Grant(at=slot, wait=slot - now)


# --- in the database --------------------------------------------------------------

_process_locks: dict[str, threading.Lock] = {}
_process_locks_guard = threading.Lock()


def process_lock(key: str) -> threading.Lock:
    """One lock per shared row and process, taken around its write transactions.

    The threads of one worker then queue here instead of in the database: SQLite's
    busy handler polls with sleeps of up to 100 ms, which would spoil the pacing
    (and the in-memory SQLite the tests use refuses concurrent writers outright).
    Other processes are kept out by the database itself.
    """
    with _process_locks_guard:
        return _process_locks.setdefault(key, threading.Lock())


class DatabaseQuota:
    """The bucket as a `QuotaBucket` row: the embedded default, and any shared database.

    Each change is one short transaction that locks the row (`select_for_update`
    on PostgreSQL; on SQLite the project's transactions are IMMEDIATE, so a write
    transaction is serialized already). Call it outside any transaction of your
    own, or the row stays locked until yours ends.
    """

    def __init__(
        self,
        rate: float | None,
        daily_budget: int | None,
        *,
        clock: Clock = time.time,
        name: str = BUCKET_NAME,
        zone: str | ZoneInfo | None = None,
        margin: float = SAFETY_MARGIN,
    ) -> None:
        self._settings = _Settings(rate, daily_budget, clock, zone, margin)
        self.clock = clock
        self.name = name
        self._lock = process_lock(f"quota:{name}")

    def reserve(self) -> Grant:
        # Plain SQL: a worker reserves once per request, and building the ORM's
        # queries cost several times what the database does with them.
        with self._lock:
            granted = self._take_slot()
            if granted is not None:
                return granted
            return self._reserve_locked()

    def _take_slot(self) -> Grant | None:
        """The common case in one statement: a slot granted within the budget.

        `decide` written as one UPDATE (as the Lua script writes it for Redis): one
        round trip to the database instead of four, so that on PostgreSQL a slot
        costs a fraction of a millisecond. None when nothing was granted this way
        (no bucket row yet, the day's budget spent, a database without RETURNING):
        `_reserve_locked` then decides, and says why.
        """
        vendor = connection.vendor
        if vendor == "postgresql" and not connection.in_atomic_block:
            vendor = "postgresql-autocommit"
        sql = _TAKE_SLOT_AT_ONCE.get(vendor)
        if sql is None or not connection.features.can_return_columns_from_insert:
            return None
        now = self.clock()
        today, tomorrow = self._settings.days_from(now)
        budget = self._settings.daily_budget
        interval = self._settings.interval
        with connection.cursor() as cursor:
            cursor.execute(
                sql,
                {
                    "now": now,
                    "today": today.label,
                    "today_ends": today.ends_at,
                    "tomorrow": tomorrow.label,
                    "interval": interval,
                    "budget": -1 if budget is None else budget,
                    "name": self.name,
                },
            )
            row = cursor.fetchone()
        if row is None:
            return None
        slot = float(row[0]) - interval
        if abs(slot - now) < 1e-6:
            slot = now  # an idle bucket's slot is now: exactly, not to within float rounding
        return Grant(at=slot, wait=slot - now)

    def _reserve_locked(self) -> Grant:
        with transaction.atomic(), connection.cursor() as cursor:
            pk, current = _locked_state(self.name, cursor)
            now = self.clock()  # Read under the lock: a slot must not start in the past.
            state, grant = decide(
                current,
                now,
                self._settings.interval,
                self._settings.daily_budget,
                self._settings.days_from(now),
            )
            if grant.granted:
                cursor.execute(_TAKE_SLOT, [state.day, state.used, state.next_slot, pk])
        return grant

    def back_off(self, seconds: float | None = None) -> None:
        seconds = DEFAULT_BACK_OFF if seconds is None else max(seconds, 0.0)
        with self._locked() as bucket:
            until = self.clock() + seconds
            if until > bucket.blocked_until:
                bucket.blocked_until = until
                bucket.save(update_fields=("blocked_until",))
        logger.info("USCIS asked to stop: every worker holds back for %.1f s", seconds)

    def used_today(self) -> int:
        state = self._read()
        return state.used if state.day == quota_day(self.clock(), self._settings.zone).label else 0

    def resets_at(self) -> datetime:
        return datetime.fromtimestamp(quota_day(self.clock(), self._settings.zone).ends_at, UTC)

    def blocked_until(self) -> float:
        return self._read().blocked_until

    @contextmanager
    def _locked(self) -> Iterator[QuotaBucket]:
        with process_lock(f"quota:{self.name}"), transaction.atomic():
            bucket, _ = QuotaBucket.objects.select_for_update().get_or_create(name=self.name)
            yield bucket

    def _read(self) -> BucketState:
        with process_lock(f"quota:{self.name}"):
            bucket = QuotaBucket.objects.filter(name=self.name).first()
        return BucketState() if bucket is None else _state_of(bucket)


def _state_of(bucket: QuotaBucket) -> BucketState:
    return BucketState(bucket.day, bucket.used, bucket.next_slot, bucket.blocked_until)


# The bucket table's names are fixed by the model; values always go in as parameters.
_TABLE = QuotaBucket._meta.db_table
_READ_LOCKED = f"SELECT id, day, used, next_slot, blocked_until FROM {_TABLE} WHERE name = %s"  # noqa: S608
_TAKE_SLOT = f"UPDATE {_TABLE} SET day = %s, used = %s, next_slot = %s WHERE id = %s"  # noqa: S608


def _take_slot_at_once(greatest: str, *, lazy_commit: bool = False) -> str:
    """`decide` for a granted slot as one UPDATE; `greatest` is the backend's n-ary maximum.

    Every expression reads the row as it was (SET and WHERE see the old values);
    RETURNING gives the new `next_slot`, which is the slot plus the interval.
    `lazy_commit` (PostgreSQL, the statement its own transaction): the commit does
    not wait for the disk. Other workers see the slot at once all the same; only a
    crash of the database server could forget the last few slots, which costs at
    most a request refused, while waiting would hold every request for a flush.
    """
    slot = f"{greatest}(%(now)s, next_slot, blocked_until)"
    day = f"(CASE WHEN {slot} < %(today_ends)s THEN %(today)s ELSE %(tomorrow)s END)"
    used = f"(CASE WHEN day = {day} THEN used ELSE 0 END)"
    lazy = " AND set_config('synchronous_commit', 'off', true) = 'off'" if lazy_commit else ""
    return (
        f"UPDATE {_TABLE} SET day = {day}, used = {used} + 1, "  # noqa: S608 - names from the model
        f"next_slot = {slot} + %(interval)s "
        f"WHERE name = %(name)s AND (%(budget)s < 0 OR {used} < %(budget)s){lazy} "
        "RETURNING next_slot"
    )


_TAKE_SLOT_AT_ONCE = {
    "postgresql": _take_slot_at_once("GREATEST"),
    "postgresql-autocommit": _take_slot_at_once("GREATEST", lazy_commit=True),
    "sqlite": _take_slot_at_once("MAX"),
}


def _locked_state(name: str, cursor: Any) -> tuple[int, BucketState]:
    """The bucket row's id and state, locked until the transaction ends (created on first use)."""
    lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
    cursor.execute(_READ_LOCKED + lock, [name])
    row = cursor.fetchone()
    if row is None:
        bucket, _ = QuotaBucket.objects.select_for_update().get_or_create(name=name)
        return bucket.pk, _state_of(bucket)
    pk, day, used, next_slot, blocked_until = row
    return pk, BucketState(day, used, next_slot, blocked_until)


# --- in Redis -----------------------------------------------------------------------

# KEYS[1]: the bucket hash. ARGV: now, interval, budget (-1: none), today, today's end,
# tomorrow, tomorrow's end. Returns {1, slot} or {0, refused_until}, numbers as text
# (Redis would truncate a Lua number in a reply to an integer). Mirrors `decide`.
_RESERVE = """
local now = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local budget = tonumber(ARGV[3])
local b = redis.call('HMGET', KEYS[1], 'day', 'used', 'next_slot', 'blocked_until')
local stored_day = b[1] or ''
local slot = math.max(now, tonumber(b[3]) or 0, tonumber(b[4]) or 0)
local day, ends = ARGV[4], ARGV[5]
if slot >= tonumber(ARGV[5]) then day, ends = ARGV[6], ARGV[7] end
local used = 0
if stored_day == day then used = tonumber(b[2]) or 0 end
if budget >= 0 and used >= budget then return {0, ends} end
redis.call('HSET', KEYS[1], 'day', day, 'used', string.format('%d', used + 1),
           'next_slot', string.format('%.6f', slot + interval))
return {1, string.format('%.6f', slot)}
"""

# KEYS[1]: the bucket hash. ARGV[1]: the moment to hold everyone back until.
_BACK_OFF = """
local until_ = tonumber(ARGV[1])
if until_ > (tonumber(redis.call('HGET', KEYS[1], 'blocked_until')) or 0) then
  redis.call('HSET', KEYS[1], 'blocked_until', string.format('%.6f', until_))
end
return 1
"""


class RedisQuota:
    """The bucket as a Redis hash, for scale-out: one Lua script per change, so atomic.

    A Redis error propagates: without the shared bucket no worker may call USCIS.
    """

    def __init__(
        self,
        rate: float | None,
        daily_budget: int | None,
        *,
        client: redis.Redis,
        clock: Clock = time.time,
        name: str = BUCKET_NAME,
        prefix: str = REDIS_PREFIX,
        zone: str | ZoneInfo | None = None,
        margin: float = SAFETY_MARGIN,
    ) -> None:
        self._settings = _Settings(rate, daily_budget, clock, zone, margin)
        self.clock = clock
        self.name = name
        self.key = f"{prefix}{name}"
        self._redis = client
        self._reserve = client.register_script(_RESERVE)
        self._back_off = client.register_script(_BACK_OFF)

    def reserve(self) -> Grant:
        now = self.clock()
        today, tomorrow = self._settings.days_from(now)
        budget = self._settings.daily_budget
        granted, value = self._reserve(
            keys=[self.key],
            args=[
                repr(now),
                repr(self._settings.interval),
                -1 if budget is None else budget,
                today.label,
                repr(today.ends_at),
                tomorrow.label,
                repr(tomorrow.ends_at),
            ],
        )
        moment = float(value)
        if int(granted):
            return Grant(at=moment, wait=moment - now)
        return Grant(at=moment, wait=moment - now, refused_until=moment)

    def back_off(self, seconds: float | None = None) -> None:
        seconds = DEFAULT_BACK_OFF if seconds is None else max(seconds, 0.0)
        self._back_off(keys=[self.key], args=[repr(self.clock() + seconds)])
        logger.info("USCIS asked to stop: every worker holds back for %.1f s", seconds)

    def used_today(self) -> int:
        day, used = self._redis.hmget(self.key, ["day", "used"])
        today = quota_day(self.clock(), self._settings.zone).label
        return int(used) if day is not None and _text(day) == today and used is not None else 0

    def resets_at(self) -> datetime:
        return datetime.fromtimestamp(quota_day(self.clock(), self._settings.zone).ends_at, UTC)

    def blocked_until(self) -> float:
        value = self._redis.hget(self.key, "blocked_until")
        return 0.0 if value is None else float(value)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


# --- choosing and using -------------------------------------------------------------


def shared_quota(
    rate: float | None,
    daily_budget: int | None,
    *,
    clock: Clock = time.time,
    name: str = BUCKET_NAME,
) -> Quota:
    """The bucket every worker shares: in Redis when CASEWATCH_REDIS_URL is set, else the DB."""
    url = redis_url()
    if url is None:
        return DatabaseQuota(rate, daily_budget, clock=clock, name=name)
    client = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=5)
    return RedisQuota(rate, daily_budget, client=client, clock=clock, name=name)


def acquire(quota: Quota, sleep: Callable[[float], None] = time.sleep) -> bool:
    """Wait for a slot: True when the caller may send now, False when today's quota is used up.

    A back-off that arrives while the caller sleeps (another worker got a 429 or
    503) sends it back for a later slot rather than letting it fire into the
    outage; the abandoned slot stays counted, erring on the side of the quota.
    """
    while True:
        grant = quota.reserve()
        if not grant.granted:
            return False
        delay = grant.at - quota.clock()
        if delay > 0:
            sleep(delay)
            if quota.blocked_until() > grant.at:
                continue
        if quota.clock() - grant.at <= LATE_SLOT:
            return True
        # Woken too late (a busy machine): sending now could land right before the
        # next slot's request and trip the spike arrest. Take a later slot instead.
