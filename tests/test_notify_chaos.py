"""Notifications under faults: the demo firm's real changes go out while workers are killed
with SIGKILL, the WhatsApp and Twilio stand-ins have outages, one client has replied BAJA
and another is in quiet hours. At the end every message the providers accepted belongs
to exactly one notification (its idempotency key and provider id), nothing went to a
client without consent or in their quiet hours, and the audit chain is intact."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import httpx
import pytest

from tests.test_cli import _free_port

pytestmark = pytest.mark.slow

ZONES = (
    "America/New_York",
    "America/Los_Angeles",
    "Europe/London",
    "Asia/Tokyo",
    "Asia/Kolkata",
    "Pacific/Auckland",
    "America/Sao_Paulo",
    "Asia/Manila",
)
# Short leases so that a killed worker's claims come back within the test.
FAST_RECOVERY = {
    "CASEWATCH_CLAIM_LEASE_SECONDS": "15",
    "CASEWATCH_DISPATCH_LEASE_SECONDS": "10",
    "CASEWATCH_DISPATCH_GRACE_SECONDS": "8",
    "CASEWATCH_DISPATCH_BACKOFF_SECONDS": "3",
    "CASEWATCH_DISPATCH_BACKOFF_CAP_SECONDS": "15",
}
SETTLED = ("delivered", "read", "failed", "suppressed", "held")


def _zone_where(now: datetime, hours: range) -> str:
    for name in ZONES:
        if now.astimezone(ZoneInfo(name)).hour in hours:
            return name
    raise AssertionError(f"no zone among {ZONES} has an hour in {hours}")


def _environment(data_dir: Path, **extra: str) -> dict[str, str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("CASEWATCH_")}
    environment.update(CASEWATCH_DATA_DIR=str(data_dir), **FAST_RECOVERY, **extra)
    return environment


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent == pid and b"casewatch worker" in cmdline:
            found.append(int(entry.name))
    return found


def _outbox(data_dir: Path) -> list[dict[str, Any]]:
    result = subprocess.run(
        [sys.executable, "-m", "casewatch", "outbox", "--json"],
        capture_output=True,
        text=True,
        env=_environment(data_dir),
        timeout=60,
        check=True,
    )
    entries: list[dict[str, Any]] = json.loads(result.stdout)
    return entries


def test_killed_workers_and_provider_outages_lose_and_duplicate_no_message(tmp_path) -> None:
    data_dir = tmp_path / "chaos"
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    up = subprocess.Popen(
        [sys.executable, "-m", "casewatch", "up", "--demo", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=_environment(data_dir),
    )
    workers: list[subprocess.Popen[bytes]] = []
    worker_env = _environment(
        data_dir,
        CASEWATCH_USCIS_BASE_URL=f"{url}/sandbox/uscis",
        CASEWATCH_WHATSAPP_BASE_URL=f"{url}/sandbox/whatsapp",
        CASEWATCH_TWILIO_BASE_URL=f"{url}/sandbox/twilio",
        CASEWATCH_WEB_URL=url,
        CASEWATCH_CHECK_INTERVAL_SECONDS="20",
        CASEWATCH_USCIS_DAILY_BUDGET="200000",
    )

    def start_worker() -> None:
        workers.append(
            subprocess.Popen(
                [sys.executable, "-m", "casewatch", "worker"],
                env=worker_env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )

    try:
        assert up.stdout is not None
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if up.stdout.readline().startswith("casewatch is running at"):
                break
        else:
            raise AssertionError("casewatch up --demo did not start")
        started = time.monotonic()
        now = datetime.now(UTC)
        day_zone = _zone_where(now, range(10, 17))
        night_zone = _zone_where(now, range(0, 5))
        database = sqlite3.connect(data_dir / "casewatch.sqlite3", timeout=30)
        with database:
            # Quiet hours on, the firm in daylight, client DEMO-02 in the middle of the night.
            database.execute("UPDATE accounts_firm SET time_zone = ?", (day_zone,))
            database.execute("UPDATE notify_messagingpolicy SET quiet_hours = 1")
            database.execute(
                "UPDATE cases_client SET time_zone = ? WHERE reference = 'DEMO-02'",
                (night_zone,),
            )
        (sleeper_receipt,) = database.execute(
            "SELECT receipt_number FROM cases_case JOIN cases_client "
            "ON cases_case.client_id = cases_client.id WHERE reference = 'DEMO-02'"
        ).fetchone()
        database.close()
        http = httpx.Client(timeout=30)
        # DEMO-01 replies BAJA on WhatsApp before any news: WhatsApp consent is withdrawn.
        answer = http.post(
            f"{url}/sandbox/whatsapp/_fake/inbound",
            json={"from": "12025550101", "text": "BAJA", "wait": True},
        )
        assert answer.status_code == 200, answer.text

        kills = 0
        plan = [
            (12, "kill_up_worker"),
            (20, "whatsapp_outage"),
            (35, "kill"),
            (50, "twilio_outage"),
            (60, "kill"),
            (85, "kill"),
        ]
        for at, step in plan:
            time.sleep(max(0.0, started + at - time.monotonic()))
            if step == "kill_up_worker":
                for pid in _children(up.pid):
                    os.kill(pid, signal.SIGKILL)
                    kills += 1
                start_worker()
            elif step == "kill":
                workers[-1].send_signal(signal.SIGKILL)
                workers[-1].wait()
                kills += 1
                start_worker()
                if len(workers) == 3:
                    start_worker()  # two workers at once from here on
            else:
                provider = step.split("_")[0]
                answer = http.post(
                    f"{url}/sandbox/{provider}/_fake/faults", json={"outage": 503, "seconds": 15}
                )
                assert answer.status_code == 200, answer.text
        assert kills >= 4

        entries: list[dict[str, Any]] = []
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline:
            time.sleep(5)
            entries = _outbox(data_dir)
            # Past the last demo change (60 sandbox hours, 108 s) and its next check.
            past_news = time.monotonic() - started > 140
            if past_news and entries and all(e["status"] in SETTLED for e in entries):
                break
        unsettled = [e for e in entries if e["status"] not in SETTLED]
        assert not unsettled, unsettled

        whatsapp_sends = http.get(f"{url}/sandbox/whatsapp/_fake/messages").json()
        sms_sends = http.get(f"{url}/sandbox/twilio/_fake/messages").json()
    finally:
        for process in workers:
            process.send_signal(signal.SIGTERM)
        for process in workers:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
        up.terminate()
        up.wait(timeout=30)

    whatsapp_accepted = [s for s in whatsapp_sends if s["accepted"]]
    sms_accepted = [s for s in sms_sends if s["accepted"]]
    # Each message a provider accepted carries one notification's key, once.
    whatsapp_keys = Counter(s["idempotency"]["biz_opaque_callback_data"] for s in whatsapp_accepted)
    sms_keys = Counter(
        parse_qs(urlsplit(s["idempotency"]["status_callback"]).query).get("key", [""])[0]
        for s in sms_accepted
    )
    assert all(key for key in whatsapp_keys) and all(key for key in sms_keys)
    assert max(whatsapp_keys.values(), default=1) == 1, whatsapp_keys.most_common(3)
    assert max(sms_keys.values(), default=1) == 1, sms_keys.most_common(3)
    # …and the outbox knows each of them by its provider id: none lost, none extra.
    sent = {"sent", "delivered", "read"}
    outbox_ids = {
        channel: {e["provider_message_id"] for e in entries if e["channel"] == channel}
        for channel in ("whatsapp", "sms")
    }
    assert {s["id"] for s in whatsapp_accepted} == outbox_ids["whatsapp"] - {None}
    assert {s["sid"] for s in sms_accepted} == outbox_ids["sms"] - {None}
    clients_told = [e for e in entries if e["recipient_kind"] == "client" and e["status"] in sent]
    assert len(clients_told) >= 5
    assert any(e["channel"] == "whatsapp" and e["language"] != "en" for e in clients_told)
    assert any(e["recipient_kind"] == "staff" for e in entries)
    # No WhatsApp message to the client who said BAJA there.
    assert not [s for s in whatsapp_accepted if s["body"]["to"] == "12025550101"]
    # Nothing to the client whose night it is: their news waits for the morning.
    assert not [s for s in whatsapp_accepted if s["body"]["to"] == "12025550102"]
    assert not [s for s in sms_accepted if s["form"]["To"] == "+12025550102"]
    sleeper = [
        e for e in entries if e["case"] == sleeper_receipt and e["recipient_kind"] == "client"
    ]
    assert sleeper and all(e["status"] == "held" for e in sleeper)

    verify = subprocess.run(
        [sys.executable, "-m", "casewatch", "audit", "verify", "--json"],
        capture_output=True,
        text=True,
        env=_environment(data_dir),
        timeout=120,
        check=False,
    )
    assert verify.returncode == 0, verify.stdout
