"""`casewatch simulate`: the scheduler measured on traces, and the same events as a real worker."""

from __future__ import annotations

import json
import math
import os
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from casewatch.cases.models import StatusEvent
from casewatch.monitor.simulate import simulate
from casewatch.uscis.sandbox.world import TraceWorld
from tests.tracegen import write_trace

CASEWATCH = [sys.executable, "-m", "casewatch"]
SIMULATE_KEYS = {
    "policy",
    "cases",
    "days",
    "budget_per_day",
    "api_calls",
    "changes",
    "detected",
    "missed",
    "delay_hours",
    "action_delay_hours",
}

# Three cases, each with a change that a check every few hours can miss: two
# updates the same day (fee then biometrics; card produced then mailed), an
# RFE, and an IOE receipt, which carries no dates at all.
SMALL_TRACE = """receipt_number,form_type,at,status_en
EAC2590000001,I-485,2025-01-10T15:00:00Z,Case Was Received
EAC2590000001,I-485,2025-03-03T15:00:00Z,Fingerprint Fee Was Received
EAC2590000001,I-485,2025-03-03T18:00:00Z,Biometrics Appointment Was Scheduled
EAC2590000001,I-485,2025-03-05T16:00:00Z,Request for Additional Evidence Was Sent
LIN2590000002,I-765,2025-02-03T15:00:00Z,Case Was Received
LIN2590000002,I-765,2025-03-04T14:00:00Z,New Card Is Being Produced
LIN2590000002,I-765,2025-03-04T14:30:00-05:00,Card Was Mailed To Me
IOE0912345678,I-130,2024-11-01T15:00:00Z,Case Was Received
IOE0912345678,I-130,2025-03-06T20:00:00Z,Case Was Approved
"""
# A week before the first change: at 20,000 times real time, about half a minute for the
# import and the worker to start and read every case once, even on a loaded machine.
BEFORE_ANY_CHANGE = "2025-02-24T00:00:00Z"


def _run(args: list[str], data_dir: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "CASEWATCH_DATA_DIR": str(data_dir), **env}
    environment.pop("DATABASE_URL", None)
    return subprocess.run(
        [*CASEWATCH, *args], capture_output=True, text=True, env=environment, timeout=900
    )


@pytest.fixture(scope="module")
def trace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("trace") / "trace.csv"
    write_trace(path, cases=300, days=30, seed=12)
    return path


@pytest.fixture(scope="module")
def runs(trace: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """The same trace and budget through both policies, each run cold in an empty data dir."""
    results = {}
    for policy in ("adaptive", "round-robin"):
        data_dir = tmp_path_factory.mktemp(policy)
        done = _run(
            [
                "simulate",
                "--trace",
                str(trace),
                "--budget-per-day",
                "150",
                "--policy",
                policy,
                "--json",
            ],
            data_dir,
        )
        assert done.returncode == 0, done.stderr
        results[policy] = json.loads(done.stdout)
        assert not (data_dir / "casewatch.sqlite3").exists(), "the firm's database is untouched"
    return results


def test_simulate_prints_the_contract_object(runs: dict[str, dict[str, Any]]) -> None:
    for policy, result in runs.items():
        assert set(result) >= SIMULATE_KEYS
        assert result["policy"] == policy and result["cases"] == 300
        assert result["detected"] + result["missed"] == result["changes"] > 0
        assert set(result["delay_hours"]) == {"mean", "p50", "p95", "max"}
        assert set(result["action_delay_hours"]) == {"count", "mean", "p50", "p95", "max"}


def test_no_day_spends_more_than_the_budget(runs: dict[str, dict[str, Any]]) -> None:
    for result in runs.values():
        assert 0 < result["max_calls_in_a_day"] <= 150
        # A window of D days touches at most ceil(D) + 1 UTC days.
        assert result["api_calls"] <= 150 * (math.ceil(result["days"]) + 1)


def test_round_robin_waits_about_half_its_interval(runs: dict[str, dict[str, Any]]) -> None:
    interval_hours = 300 / 150 * 24
    assert runs["round-robin"]["delay_hours"]["mean"] == pytest.approx(interval_hours / 2, rel=0.25)


def test_the_adaptive_scheduler_notices_changes_sooner_than_round_robin(
    runs: dict[str, dict[str, Any]],
) -> None:
    adaptive, baseline = runs["adaptive"], runs["round-robin"]
    assert adaptive["delay_hours"]["mean"] < 0.8 * baseline["delay_hours"]["mean"]
    # Not by leaving some cases to wait: the slowest changes are seen sooner too.
    assert adaptive["delay_hours"]["p95"] < baseline["delay_hours"]["p95"]


def test_the_stated_freshness_is_within_a_quarter_of_what_simulation_measures(
    runs: dict[str, dict[str, Any]],
) -> None:
    adaptive = runs["adaptive"]
    estimate, measured = adaptive["estimate_delay_hours"], adaptive["delay_hours"]
    assert estimate["mean"] == pytest.approx(measured["mean"], rel=0.25)


def test_a_bad_trace_is_refused_with_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "receipt_number,form_type,at,status_en\nEAC2590000001,I-485,yesterday,Case Was Received\n"
    )
    done = _run(
        ["simulate", "--trace", str(bad), "--budget-per-day", "10", "--json"], tmp_path / "d"
    )
    assert done.returncode == 2 and done.stdout == ""
    assert "line 2" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    missing = _run(
        ["simulate", "--trace", str(tmp_path / "nope.csv"), "--budget-per-day", "10"],
        tmp_path / "d",
    )
    assert missing.returncode == 2 and "cannot read trace" in missing.stderr


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _events_in(database: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(database) as db:
        rows = db.execute(
            "SELECT c.receipt_number, e.status FROM cases_statusevent e "
            "JOIN cases_case c ON c.id = e.case_id ORDER BY c.receipt_number, e.id"
        ).fetchall()
    return [(str(receipt), str(status)) for receipt, status in rows]


@pytest.fixture
def small_trace(tmp_path: Path) -> Path:
    path = tmp_path / "small.csv"
    path.write_text(SMALL_TRACE)
    return path


@pytest.fixture
def trace_sandbox(small_trace: Path, tmp_path: Path) -> Iterator[str]:
    """`casewatch sandbox --trace` in its own process, its clock 20,000 times real time."""
    port = _free_port()
    log = (tmp_path / "sandbox.log").open("w")
    process = subprocess.Popen(
        [
            *CASEWATCH,
            "sandbox",
            "--trace",
            str(small_trace),
            "--port",
            str(port),
            "--start",
            BEFORE_ANY_CHANGE,
            "--clock-speed",
            "20000",
        ],
        stdout=log,
        stderr=log,
        env={**os.environ, "CASEWATCH_DATA_DIR": str(tmp_path / "sandbox-data")},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                httpx.get(f"{url}/health", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.mark.django_db
def test_a_small_trace_gives_the_same_events_through_simulate_and_a_real_worker(
    small_trace: Path, trace_sandbox: str, tmp_path: Path
) -> None:
    data_dir = tmp_path / "worker-data"
    caseload = tmp_path / "caseload.csv"
    world = TraceWorld.from_file(small_trace)
    caseload.write_text(
        "receipt,form\n" + "".join(f"{r},{c.form_type}\n" for r, c in world.cases.items())
    )
    imported = _run(["import", str(caseload), "--json"], data_dir)
    assert imported.returncode == 0, imported.stderr
    worker_env = {
        **os.environ,
        "CASEWATCH_DATA_DIR": str(data_dir),
        "CASEWATCH_USCIS_BASE_URL": trace_sandbox,
        "CASEWATCH_USCIS_CLIENT_ID": "casewatch-test",
        "CASEWATCH_USCIS_CLIENT_SECRET": "casewatch-test",
        "CASEWATCH_USCIS_DAILY_BUDGET": "2000000",
        "CASEWATCH_USCIS_RATE": "20",
        "CASEWATCH_CHECK_INTERVAL_SECONDS": "1",
    }
    worker_env.pop("DATABASE_URL", None)
    worker = subprocess.Popen(
        [*CASEWATCH, "worker"],
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "worker.log").open("w"),
        env=worker_env,
    )
    try:
        window_end = world.trace_window[1] if world.trace_window else None
        assert window_end is not None
        while True:  # until the sandbox's clock is past the trace
            now = httpx.get(f"{trace_sandbox}/health", timeout=5).json()["now"]
            if now > window_end.isoformat():
                break
            assert worker.poll() is None, (tmp_path / "worker.log").read_text()
            time.sleep(1)
        time.sleep(3)  # a last round sees the final statuses
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    through_worker = _events_in(data_dir / "casewatch.sqlite3")

    simulate(world, budget_per_day=50, warmup_days=0, start=_moment(BEFORE_ANY_CHANGE))
    through_simulate = [
        (str(e.case.receipt_number), e.status)
        for e in StatusEvent.objects.select_related("case").order_by("case__receipt_number", "pk")
    ]
    assert through_simulate == through_worker
    assert ("EAC2590000001", "biometrics_scheduled") in through_simulate
    assert len(through_simulate) == 9


def _moment(text: str) -> Any:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00"))
