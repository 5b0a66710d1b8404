"""The shared USCIS budget: even spacing, the daily quota, back-off, on both backends.

Every behaviour runs against the database bucket and the Redis bucket alike
(real Redis, under a key prefix of the test's own that is deleted afterwards).
Most tests use a virtual clock, so they are exact and quick; one test per
backend paces real threads in real time, and one runs two processes on one
bucket.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import pytest
import redis
from django.db import connection, connections
from hypothesis import given, settings
from hypothesis import strategies as st

from casewatch.config import ConfigError
from casewatch.monitor.limiter import (
    DEFAULT_BACK_OFF,
    SAFETY_MARGIN,
    BucketState,
    DatabaseQuota,
    Grant,
    Quota,
    RedisQuota,
    acquire,
    decide,
    quota_day,
    reset_zone,
    shared_quota,
)
from casewatch.monitor.models import QuotaBucket

REPO = Path(__file__).resolve().parent.parent
REDIS_URL = os.environ.get("CASEWATCH_REDIS_URL", "").strip() or "redis://127.0.0.1:6379/0"
# A Monday in winter: US Eastern is UTC-5, so its midnight is 05:00 UTC.
START = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


class VirtualClock:
    """Epoch seconds that stand still until moved; `sleep` moves them."""

    def __init__(self, start: datetime = START) -> None:
        self._now = start.timestamp()
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def set(self, moment: datetime) -> None:
        with self._lock:
            self._now = moment.timestamp()

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self._now += max(seconds, 0.0)


MakeQuota = Callable[..., Quota]


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


@pytest.fixture
def redis_client() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2, socket_timeout=5)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.skip(f"Redis at {REDIS_URL} is not reachable: {exc}")
    yield client
    client.close()


@pytest.fixture
def redis_prefix(redis_client: redis.Redis) -> Iterator[str]:
    """A key prefix only this test uses; everything under it is deleted afterwards."""
    prefix = f"casewatch-test:{uuid.uuid4().hex}:"
    yield prefix
    for key in redis_client.scan_iter(match=f"{prefix}*"):
        redis_client.delete(key)


@pytest.fixture(
    params=[
        pytest.param("database", marks=pytest.mark.django_db(transaction=True)),
        pytest.param("redis"),
    ]
)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_quota(backend: str, clock: VirtualClock, request: pytest.FixtureRequest) -> MakeQuota:
    """Builds quotas on the backend under test, on the virtual clock unless told otherwise."""

    def make(
        rate: float | None,
        daily_budget: int | None = None,
        *,
        clock: Callable[[], float] = clock,
        zone: str | None = None,
        name: str = "uscis",
    ) -> Quota:
        if backend == "database":
            return DatabaseQuota(rate, daily_budget, clock=clock, zone=zone, name=name)
        client = request.getfixturevalue("redis_client")
        prefix = request.getfixturevalue("redis_prefix")
        return RedisQuota(
            rate, daily_budget, client=client, clock=clock, zone=zone, name=name, prefix=prefix
        )

    return make


def in_threads(work: Callable[[], None], count: int) -> None:
    """Run `work` in `count` threads at once; re-raise the first failure."""
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


def gaps(moments: list[float]) -> list[float]:
    ordered = sorted(moments)
    return [later - earlier for earlier, later in itertools.pairwise(ordered)]


# --- spacing --------------------------------------------------------------------------


def test_slots_taken_by_many_threads_are_never_closer_than_one_over_the_rate(
    make_quota: MakeQuota, clock: VirtualClock
) -> None:
    quota = make_quota(rate=10)
    grants: list[Grant] = []

    def take() -> None:
        for _ in range(25):
            grants.append(quota.reserve())

    in_threads(take, 4)
    assert len(grants) == 100 and all(grant.granted for grant in grants)
    assert min(gaps([grant.at for grant in grants])) >= 0.1
    assert min(grant.at for grant in grants) == clock()
    assert max(grant.at for grant in grants) == pytest.approx(clock() + 99 * (0.1 + SAFETY_MARGIN))
    assert quota.used_today() == 100


def test_an_idle_bucket_saves_up_no_burst(make_quota: MakeQuota, clock: VirtualClock) -> None:
    quota = make_quota(rate=5)
    assert quota.reserve().wait == 0
    clock.sleep(3600)
    first, second = quota.reserve(), quota.reserve()
    assert (first.at, first.wait) == (clock(), 0)
    assert second.wait == pytest.approx(0.2 + SAFETY_MARGIN)


def test_acquire_sleeps_until_the_callers_slot(make_quota: MakeQuota, clock: VirtualClock) -> None:
    quota = make_quota(rate=2)
    began = clock()
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.sleep(seconds)

    assert all(acquire(quota, sleep=sleep) for _ in range(3))
    assert slept == pytest.approx([0.5 + SAFETY_MARGIN] * 2)
    assert clock() == pytest.approx(began + 2 * (0.5 + SAFETY_MARGIN))


def test_without_a_rate_nothing_waits(make_quota: MakeQuota, clock: VirtualClock) -> None:
    quota = make_quota(rate=None)
    assert {quota.reserve().wait for _ in range(20)} == {0}


# --- the daily quota --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "reset"),
    [
        ("UTC", datetime(2026, 3, 3, 0, 0, tzinfo=UTC)),
        ("America/New_York", datetime(2026, 3, 3, 5, 0, tzinfo=UTC)),
    ],
)
def test_the_daily_quota_is_never_exceeded_and_resets_at_midnight_in_its_zone(
    make_quota: MakeQuota,
    clock: VirtualClock,
    monkeypatch: pytest.MonkeyPatch,
    zone: str,
    reset: datetime,
) -> None:
    monkeypatch.setenv("CASEWATCH_USCIS_QUOTA_RESET_ZONE", zone)
    quota = make_quota(rate=None, daily_budget=10)
    grants = [quota.reserve() for _ in range(15)]
    assert [grant.granted for grant in grants] == [True] * 10 + [False] * 5
    assert {grant.refused_until for grant in grants[10:]} == {reset.timestamp()}
    assert quota.used_today() == 10
    assert quota.resets_at() == reset

    if zone != "UTC":
        clock.set(datetime(2026, 3, 3, 0, 0, tzinfo=UTC))  # Midnight in London, not here.
        assert not quota.reserve().granted
    clock.set(reset - timedelta(seconds=1))
    assert not quota.reserve().granted and quota.used_today() == 10

    clock.set(reset)
    assert quota.used_today() == 0
    assert quota.resets_at() == reset + timedelta(days=1)
    assert sum(quota.reserve().granted for _ in range(12)) == 10


def test_threads_together_never_exceed_the_budget(make_quota: MakeQuota) -> None:
    quota = make_quota(rate=100, daily_budget=50)
    grants: list[Grant] = []

    def take() -> None:
        for _ in range(25):
            grants.append(quota.reserve())

    in_threads(take, 4)
    assert sum(grant.granted for grant in grants) == 50
    assert quota.used_today() == 50


def test_acquire_says_no_when_the_days_quota_is_used_up(
    make_quota: MakeQuota, clock: VirtualClock
) -> None:
    quota = make_quota(rate=1, daily_budget=2)

    assert acquire(quota, sleep=clock.sleep) and acquire(quota, sleep=clock.sleep)
    waited = clock()
    assert not acquire(quota, sleep=clock.sleep)
    assert clock() == waited  # Refused at once: nobody waits hours for the reset.


def test_a_slot_pushed_past_midnight_counts_against_the_new_day(
    make_quota: MakeQuota, clock: VirtualClock
) -> None:
    quota = make_quota(rate=1, daily_budget=2)
    clock.set(datetime(2026, 3, 2, 23, 59, 59, 500_000, tzinfo=UTC))
    today, tomorrow = quota.reserve(), quota.reserve()
    assert today.granted and tomorrow.granted
    assert tomorrow.at >= datetime(2026, 3, 3, tzinfo=UTC).timestamp()
    assert quota.reserve().granted  # Tomorrow has room for one more...
    refused = quota.reserve()  # ...and then none.
    assert refused.refused_until == datetime(2026, 3, 4, tzinfo=UTC).timestamp()


def test_quota_days_follow_the_zones_midnight_through_daylight_saving() -> None:
    new_york = reset_zone("America/New_York")
    summer = quota_day(datetime(2026, 7, 1, 12, 0, tzinfo=UTC).timestamp(), new_york)
    assert summer.label == "2026-07-01"
    assert summer.ends_at == datetime(2026, 7, 2, 4, 0, tzinfo=UTC).timestamp()
    # 8 March 2026 has 23 hours in New York: clocks go forward at 2:00.
    short = quota_day(datetime(2026, 3, 8, 4, 30, tzinfo=UTC).timestamp(), new_york)
    assert short.label == "2026-03-07"
    assert short.ends_at == datetime(2026, 3, 8, 5, 0, tzinfo=UTC).timestamp()
    spring = quota_day(short.ends_at, new_york)
    assert (spring.label, spring.ends_at - short.ends_at) == ("2026-03-08", 23 * 3600)


def test_a_zone_that_does_not_exist_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CASEWATCH_USCIS_QUOTA_RESET_ZONE", "Eastern Time")
    with pytest.raises(ConfigError, match="CASEWATCH_USCIS_QUOTA_RESET_ZONE"):
        reset_zone()
    assert str(reset_zone("America/New_York")) == "America/New_York"


def test_nonsense_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="rate"):
        DatabaseQuota(0, 10)
    with pytest.raises(ValueError, match="daily_budget"):
        DatabaseQuota(1, -1)


# --- back-off --------------------------------------------------------------------------


def test_a_back_off_holds_every_caller(make_quota: MakeQuota, clock: VirtualClock) -> None:
    quota = make_quota(rate=10)
    quota.reserve()
    quota.back_off(45)
    resume = clock() + 45
    assert quota.blocked_until() == pytest.approx(resume)
    grants: list[Grant] = []

    def take() -> None:
        for _ in range(5):
            grants.append(quota.reserve())

    in_threads(take, 3)
    assert min(grant.at for grant in grants) == pytest.approx(resume)
    assert min(gaps([grant.at for grant in grants])) >= 0.1

    quota.back_off(5)  # A shorter back-off never cuts a longer one short.
    assert quota.blocked_until() == pytest.approx(resume)


def test_a_back_off_without_retry_after_lasts_the_default(
    make_quota: MakeQuota, clock: VirtualClock
) -> None:
    quota = make_quota(rate=10)
    assert quota.blocked_until() <= clock()
    quota.back_off()
    assert DEFAULT_BACK_OFF == 30
    assert quota.blocked_until() == pytest.approx(clock() + DEFAULT_BACK_OFF)
    assert quota.reserve().wait == pytest.approx(DEFAULT_BACK_OFF)


def test_a_back_off_that_arrives_while_a_caller_sleeps_sends_it_to_a_later_slot(
    make_quota: MakeQuota, clock: VirtualClock
) -> None:
    quota = make_quota(rate=1)
    quota.reserve()
    began = clock()
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        if not sleeps:
            quota.back_off(30)  # Another worker hears 429 while this one waits.
        sleeps.append(seconds)
        clock.sleep(seconds)

    assert acquire(quota, sleep=sleep)
    assert len(sleeps) == 2
    assert clock() == pytest.approx(began + 30)
    assert quota.used_today() == 3  # The abandoned slot stays counted.


def test_a_caller_woken_too_late_gives_up_its_slot_for_a_later_one(
    make_quota: MakeQuota, clock: VirtualClock
) -> None:
    quota = make_quota(rate=1)
    quota.reserve()
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        # The first wake-up comes 50 ms late (a busy machine); sending then could
        # land just before the next slot's request and trip the spike arrest.
        clock.sleep(seconds + (0.05 if len(sleeps) == 1 else 0.0))

    assert acquire(quota, sleep=sleep)
    assert len(sleeps) == 2
    assert quota.used_today() == 3  # the late slot stays counted


# --- real time, real threads, real processes -------------------------------------------


class Recording:
    """A quota that remembers the grants it handed out."""

    def __init__(self, quota: Quota) -> None:
        self.quota = quota
        self.clock = quota.clock
        self.grants: list[Grant] = []

    def reserve(self) -> Grant:
        grant = self.quota.reserve()
        self.grants.append(grant)
        return grant

    def back_off(self, seconds: float | None = None) -> None:
        self.quota.back_off(seconds)

    def used_today(self) -> int:
        return self.quota.used_today()

    def resets_at(self) -> datetime:
        return self.quota.resets_at()

    def blocked_until(self) -> float:
        return self.quota.blocked_until()


def test_threads_in_real_time_send_no_faster_than_the_rate(make_quota: MakeQuota) -> None:
    rate = 20.0
    quota = Recording(make_quota(rate=rate, clock=time.time))
    sent: list[float] = []

    def send() -> None:
        for _ in range(5):
            assert acquire(quota)
            sent.append(time.time())

    began = time.time()
    in_threads(send, 4)
    slots = sorted(grant.at for grant in quota.grants)
    # A thread woken too late gives its slot up and takes another: never fewer slots.
    assert len(sent) == 20 and len(slots) >= 20
    assert min(gaps(slots)) >= 1 / rate
    # Paced, not bursted: 20 requests take 19 intervals, and none went before a slot.
    assert max(sent) - began >= 19 / rate
    free = list(slots)
    for moment in sorted(sent):
        used = max(slot for slot in free if slot <= moment)
        free.remove(used)


_CHILD = r"""
import json, sys, time
spec = json.loads(sys.argv[1])
from casewatch.cli.bootstrap import prepare_django
prepare_django(migrate=False)
from casewatch.monitor.limiter import DatabaseQuota, RedisQuota
if spec["backend"] == "redis":
    import redis
    quota = RedisQuota(spec["rate"], spec["budget"], name="shared", prefix=spec["prefix"],
                       client=redis.Redis.from_url(spec["url"]))
else:
    quota = DatabaseQuota(spec["rate"], spec["budget"], name="shared")
quota.used_today()  # Connected before the start.
print("ready", flush=True)
sys.stdin.readline()
slots, refused = [], 0
for _ in range(spec["attempts"]):
    grant = quota.reserve()
    if not grant.granted:
        refused += 1
        continue
    time.sleep(max(0.0, grant.at - time.time()))
    slots.append(grant.at)
print(json.dumps({"slots": slots, "refused": refused}), flush=True)
"""


def _database_url_of_the_test_database() -> str:
    settings = connection.settings_dict
    user = quote(settings["USER"] or "", safe="")
    password = quote(str(settings["PASSWORD"] or ""), safe="")
    host, port = settings["HOST"] or "127.0.0.1", settings["PORT"] or 5432
    return f"postgres://{user}:{password}@{host}:{port}/{settings['NAME']}"


def _child_environment(backend: str, tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="casewatch.settings", PYTHONPATH=str(REPO))
    env.pop("CASEWATCH_REDIS_URL", None)
    if backend == "database" and connection.vendor == "postgresql":
        env["DATABASE_URL"] = _database_url_of_the_test_database()
    elif backend == "database":
        # The test database lives in this process's memory: the children share a file.
        env.pop("DATABASE_URL", None)
        env["CASEWATCH_DATA_DIR"] = str(tmp_path / "data")
        prepare = "from casewatch.cli.bootstrap import prepare_django; prepare_django()"
        subprocess.run([sys.executable, "-c", prepare], env=env, cwd=REPO, check=True, timeout=120)
    return env


def test_two_processes_share_one_bucket(backend: str, tmp_path: Path, request) -> None:
    rate, budget, attempts = 40.0, 30, 20
    spec: dict[str, object] = {
        "backend": backend,
        "rate": rate,
        "budget": budget,
        "attempts": attempts,
    }
    if backend == "redis":
        request.getfixturevalue("redis_client")
        spec.update(url=REDIS_URL, prefix=request.getfixturevalue("redis_prefix"))
    env = _child_environment(backend, tmp_path)
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _CHILD, json.dumps(spec)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=REPO,
        )
        for _ in range(2)
    ]
    try:
        for child in children:
            assert child.stdout is not None
            if child.stdout.readline().strip() != "ready":
                raise AssertionError(f"a child failed to start: {child.communicate()[1]}")
        for child in children:
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        outputs = [child.communicate(timeout=60) for child in children]
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
    for child, (_, stderr) in zip(children, outputs, strict=True):
        assert child.returncode == 0, stderr
    results = [json.loads(stdout) for stdout, _ in outputs]

    labelled = sorted((slot, n) for n, result in enumerate(results) for slot in result["slots"])
    assert len(labelled) == budget  # Never more than the budget between them...
    assert sum(result["refused"] for result in results) == 2 * attempts - budget
    assert min(gaps([slot for slot, _ in labelled])) >= 1 / rate  # ...nor closer than 1/rate.
    switches = sum(a != b for (_, a), (_, b) in itertools.pairwise(labelled))
    assert switches >= 2, "the two processes did not take turns on one bucket"


# --- choosing the backend -----------------------------------------------------------------


def test_without_redis_the_bucket_is_in_the_database(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CASEWATCH_REDIS_URL", raising=False)
    assert isinstance(shared_quota(10, 1000), DatabaseQuota)


def test_with_redis_configured_the_bucket_is_in_redis(
    monkeypatch: pytest.MonkeyPatch, redis_client: redis.Redis, clock: VirtualClock
) -> None:
    monkeypatch.setenv("CASEWATCH_REDIS_URL", REDIS_URL)
    quota = shared_quota(10, 1000, clock=clock, name=f"casewatch-test-{uuid.uuid4().hex}")
    assert isinstance(quota, RedisQuota)
    try:
        assert quota.reserve().granted and quota.used_today() == 1
        assert redis_client.exists(quota.key)
    finally:
        redis_client.delete(quota.key)


# --- the database bucket's one-statement slot ---------------------------------------------

_STATES = st.builds(
    BucketState,
    day=st.sampled_from(["", "2026-03-01", "2026-03-02", "2026-03-03"]),
    used=st.integers(0, 12),
    next_slot=st.floats(-100_000, 200_000).map(lambda offset: START.timestamp() + offset),
    blocked_until=st.one_of(
        st.just(0.0), st.floats(-100_000, 200_000).map(lambda offset: START.timestamp() + offset)
    ),
)


@pytest.mark.django_db(transaction=True)
@settings(max_examples=200, deadline=None)
@given(
    state=_STATES,
    offset=st.floats(-3 * 86_400, 3 * 86_400),
    rate=st.sampled_from([None, 0.5, 10.0]),
    budget=st.sampled_from([None, 0, 5, 12]),
)
def test_a_slot_taken_in_one_statement_is_the_one_decide_gives(
    state: BucketState, offset: float, rate: float | None, budget: int | None
) -> None:
    """The bucket row after a reservation, and the grant, are what `decide` says; a
    reservation `decide` refuses changes nothing (and is then answered the long way)."""
    clock = VirtualClock(START + timedelta(seconds=offset))
    quota = DatabaseQuota(rate, budget, clock=clock, zone="America/New_York", name="decide")
    QuotaBucket.objects.update_or_create(
        name="decide",
        defaults={
            "day": state.day,
            "used": state.used,
            "next_slot": state.next_slot,
            "blocked_until": state.blocked_until,
        },
    )
    settings_ = quota._settings
    expected_state, expected = decide(
        state, clock(), settings_.interval, budget, settings_.days_from(clock())
    )
    grant = quota._take_slot()
    row = QuotaBucket.objects.get(name="decide")
    stored = BucketState(row.day, row.used, row.next_slot, row.blocked_until)
    if not expected.granted:
        assert grant is None and stored == state
        assert quota.reserve() == expected
        return
    assert grant is not None
    assert grant.at == pytest.approx(expected.at, abs=1e-6)
    assert grant.wait == pytest.approx(expected.wait, abs=1e-6)
    assert (stored.day, stored.used, stored.blocked_until) == (
        expected_state.day,
        expected_state.used,
        expected_state.blocked_until,
    )
    assert stored.next_slot == pytest.approx(expected_state.next_slot, abs=1e-6)
