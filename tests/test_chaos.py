"""The chaos run, in CI: `casewatch bench chaos` on a smaller caseload, judged by its figures.

Workers check cases against a sandbox replaying a trace while every USCIS fault
is injected, workers are SIGKILLed, every database connection is terminated
(PostgreSQL) and the WhatsApp, SMS and SMTP providers go down. The bench judges
the outcome from witnesses the workers cannot influence (the trace, the
sandbox's request log, the providers' records, the audit chain); here its JSON
must show that nothing was changed falsely or lost, no notification went twice
or went missing, and that every kind of fault was injected and recovered from.

PostgreSQL and Redis skip when unreachable, and fail instead when CI is set.
The PostgreSQL run gets a throwaway database and a free Redis database from
test_scale_out's fixtures, as the scale-out tests do.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from casewatch.monitor.chaos import (
    PATH,
    WINDOW_START,
    Event,
    Seen,
    Trace,
    judge_changes,
    uscis_recoveries,
)
from casewatch.notify.chaos import Accepted, Entry, judge_notifications
from tests.test_scale_out import postgres_url, redis_url  # noqa: F401  (fixtures)

CASES = 300
SECONDS = 60
# Denser than the bench's default, so that each kind strikes a caseload this small.
FAULTS = "malformed=0.03,token_expiry=0.02,wrong_case=0.01,storm=0.003,storm_length=4"
USCIS_FAULTS = {"unavailable", "slow", "storm", "malformed", "html", "token_expiry", "errors"}


def run_bench(tmp_path: Path, *options: str) -> dict[str, Any]:
    """`casewatch bench chaos --json`, nothing of ours in its environment but `options`."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("CASEWATCH_") and k != "DATABASE_URL"
    }
    env["CASEWATCH_DATA_DIR"] = str(tmp_path / "unused")
    command = [sys.executable, "-m", "casewatch", "bench", "chaos", "--json"]
    command += ["--cases", str(CASES), "--seconds", str(SECONDS), "--faults", FAULTS, *options]
    done = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=420, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout)
    print(json.dumps(result, indent=1))  # the figures, in the CI log (-rA or on failure)
    return result


def assert_nothing_false_lost_twice_or_missing(result: dict[str, Any]) -> None:
    assert result["settled"], result.get("examples")
    assert result["checks_attempted"] >= 2 * CASES
    assert result["status_changes"] > 0 and result["notifications"] > 0
    assert result["false_changes"] == 0, result.get("examples")
    assert result["lost_changes"] == 0, result.get("examples")
    assert result["duplicate_notifications"] == 0, result.get("examples")
    assert result["missing_notifications"] == 0, result.get("examples")
    assert result["audit_chain_ok"] is True


def assert_every_fault_struck_and_was_recovered_from(result: dict[str, Any]) -> None:
    injected = result["faults_injected"]
    assert {kind for kind, count in injected.items() if count > 0} >= USCIS_FAULTS, injected
    assert result["worker_kills"] == 2
    assert result["channel_outages"] == {"sms_outage": 1, "smtp_down": 1, "whatsapp_outage": 1}
    recovered = result["time_to_recover_seconds"]["by_kind"]
    assert {"worker_kill", *(f"uscis_{kind}" for kind in USCIS_FAULTS)} <= set(recovered), recovered
    # An outage recovers once something was waiting for the provider; at least one was.
    hit = [kind for kind, refused in result["sends_refused_in_outages"].items() if refused]
    assert hit and set(hit) <= set(recovered), result["sends_refused_in_outages"]
    assert result["recoveries"] == result["time_to_recover_seconds"]["count"] > 0
    assert result["time_to_recover_seconds"]["max"] < SECONDS + 180


@pytest.fixture
def empty_redis(redis_url: str) -> str:  # noqa: F811
    """test_scale_out's claimed Redis database, its claim key removed: the bench wants it empty."""
    import redis

    client = redis.Redis.from_url(redis_url, socket_timeout=5)
    try:
        client.delete("casewatch-test:owner")
    finally:
        client.close()
    return redis_url


@pytest.mark.slow
@pytest.mark.postgres
def test_chaos_on_postgresql_and_redis_changes_nothing_falsely_and_loses_nothing(
    tmp_path: Path,
    postgres_url: str,  # noqa: F811
    empty_redis: str,
) -> None:
    result = run_bench(tmp_path, "--database-url", postgres_url, "--redis-url", empty_redis)
    assert (result["database"], result["queue"]) == ("postgresql", "redis")
    assert_nothing_false_lost_twice_or_missing(result)
    assert_every_fault_struck_and_was_recovered_from(result)
    # Every connection was dropped three times over, and the workers went on each time.
    assert result["faults_injected"]["db_terminate"] == 3
    assert result["connections_terminated"] >= 3
    assert result["time_to_recover_seconds"]["by_kind"]["db_terminate"]["count"] == 3


@pytest.mark.slow
def test_chaos_on_the_embedded_default_changes_nothing_falsely_and_loses_nothing(
    tmp_path: Path,
) -> None:
    result = run_bench(tmp_path)
    assert (result["database"], result["queue"]) == ("sqlite", "sqlite")
    assert_nothing_false_lost_twice_or_missing(result)
    assert_every_fault_struck_and_was_recovered_from(result)
    assert result["connections_terminated"] == 0


# --- the judges catch what they are there to catch -------------------------------------

RECEIPT = "EAC2590000001"


def one_case_trace() -> Trace:
    """A case received, then fingerprint fee, then biometrics scheduled."""
    steps = [(WINDOW_START + timedelta(hours=h), PATH[i]) for i, h in ((0, -900), (1, 5), (2, 9))]
    return Trace({RECEIPT: steps}, WINDOW_START, WINDOW_START + timedelta(days=1))


def false_and_lost(trace: Trace, seen: list[Seen], events: list[Event]) -> tuple[int, int]:
    verdict = judge_changes(trace, seen, events)
    return verdict.false_changes, verdict.lost_changes


def test_the_change_judge_counts_invented_repeated_and_lost_changes() -> None:
    trace = one_case_trace()
    first, second, third = trace.statuses(RECEIPT)
    seen = [
        Seen(RECEIPT, "found", first, 1),
        Seen(RECEIPT, "malformed_response", "", 2),
        Seen(RECEIPT, "found", third, 3),
    ]
    true = [
        Event(RECEIPT, first, "", True, 1),
        Event(RECEIPT, second, first, False, 3),  # recovered from the history
        Event(RECEIPT, third, second, False, 3),
    ]
    assert false_and_lost(trace, seen, true) == (0, 0)
    assert false_and_lost(trace, seen, true[:2]) == (0, 1)  # the last change lost
    assert false_and_lost(trace, seen, [*true, true[2]]) == (1, 0)  # one twice
    from_a_fault = Event(RECEIPT, third, second, False, 2)
    assert false_and_lost(trace, seen, [*true[:2], from_a_fault]) == (1, 0)
    assert false_and_lost(trace, [], []) == (0, 2)  # never read: both changes lost


def test_the_notification_judge_counts_duplicates_and_missing_from_both_ends() -> None:
    entries = [
        Entry(1, 10, "whatsapp", "delivered", "key-1", "wamid.1", None),
        Entry(2, 11, "sms", "sent", "key-2", "SM2", None),
        Entry(3, 11, "email", "sent", "key-3", "<key-3@x>", None),
    ]
    accepted = [
        Accepted("whatsapp", "key-1", "wamid.1", 1.0),
        Accepted("sms", "key-2", "SM2", 1.0),
        Accepted("email", "", "<key-3@x>", 1.0),
    ]
    due = {10: ["key-1"], 11: ["key-2", "key-3"]}
    clean = judge_notifications(entries, due, 0, accepted)
    assert (clean.duplicate, clean.missing) == (0, 0)

    twice = judge_notifications(entries, due, 0, [*accepted, Accepted("sms", "key-2", "SM9", 2)])
    assert (twice.duplicate, twice.missing) == (1, 0)
    unknown = judge_notifications(entries, due, 0, [*accepted, Accepted("sms", "key-x", "SM", 2)])
    assert unknown.duplicate == 1
    not_made = judge_notifications(entries, {**due, 12: ["key-4"]}, 0, accepted)
    assert not_made.missing == 1
    not_taken = judge_notifications(entries, due, 0, accepted[1:])
    assert not_taken.missing == 1  # the outbox says delivered; WhatsApp never had it
    stuck = [*entries[:2], Entry(3, 11, "email", "sending", "key-3", "", None)]
    assert judge_notifications(stuck, due, 0, accepted).missing == 1
    assert judge_notifications(entries, due, 2, accepted).missing == 2  # never routed
    resent = judge_notifications(entries, due, 0, [*accepted, accepted[2]])
    assert (resent.duplicate, resent.email_resent_same_message_id) == (0, 1)


def test_a_fault_recovers_at_the_next_answer_with_a_status() -> None:
    lookups = [
        {"at": 0.0, "done": 0.1, "receipt": "A", "status": 200, "fault": None},
        {"at": 1.0, "done": 1.1, "receipt": "B", "status": 503, "fault": "unavailable"},
        {"at": 1.05, "done": 1.2, "receipt": "C", "status": 200, "fault": None},  # asked before
        {"at": 2.0, "done": 2.1, "receipt": "D", "status": 429, "fault": "storm"},
        {"at": 6.0, "done": 6.1, "receipt": "B", "status": 200, "fault": None},
    ]
    injected, recoveries = uscis_recoveries(lookups)
    assert injected == {"unavailable": 1, "storm": 1}
    assert [(r.kind, round(r.seconds, 1)) for r in recoveries] == [
        ("uscis_unavailable", 5.0),
        ("uscis_storm", 4.0),
    ]
