"""No client personal data in plain text anywhere under the data directory after an import
and a demo run (issue 7, "Done means").

The real CLI runs as it would for a firm: `casewatch import` of a caseload whose people
are obviously fake but spelled so that they cannot occur by chance, then `casewatch up
--demo` until the worker has told clients of their changes, its output kept as log files
under the data directory. Every byte of every file there (the database and its WAL, the
queue, the logs, held uploads) is then searched for each name, e-mail and phone, as
written and in the forms software normalizes them to. Only key material is not read.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from casewatch.cli.demo import _sheet, demo_receipts
from tests.test_cli import _free_port, casewatch

pytestmark = pytest.mark.slow

CASELOAD = (
    "Receipt Number,Client Name,Client Email,Client Phone,Language\n"
    "EAC9999103403,Zyxwaldo Quimbersnatch,zyxwaldo.q@example.com,+1 202 555 0177,en\n"
    "LIN9999106498,Brunhilda Vexcombe-Ortiz,brunhilda.vexcombe@example.com,(202) 555-0178,es\n"
)
# Where the files that are keys, not data, are kept (casewatch.config); never read here.
KEY_FOLDERS = ("keys",)
# Outgoing e-mail kept as files when no SMTP server is configured (config.mail_settings):
# each is a copy of a message to a client, so it holds the client's address in clear.
MAIL_FOLDER = "mail"
# A copy of the data directory taken while casewatch still runs, beside the data directory.
RUNNING = "while-running"
DEMO_WAIT_SECONDS = 240
CLIENT_CHANNELS = {"whatsapp", "sms", "email"}


@dataclass(frozen=True)
class Person:
    name: str
    email: str
    phone: str

    def needles(self) -> set[bytes]:
        """Every way the person's data could be written down, as UTF-8."""
        digits = "".join(c for c in self.phone if c.isdigit())
        digits = f"1{digits}" if len(digits) == 10 else digits  # the fake people are in the US
        national = digits[1:]
        words = {self.name, self.name.lower(), self.name.upper(), self.email, self.email.lower()}
        # Each long word of a name alone too ("Demo Client 01" has none: "Client" is not hers).
        parts = [part for part in self.name.replace("-", " ").split() if len(part) >= 8]
        words |= {form for part in parts for form in (part, part.lower())}
        words |= {self.phone, f"+{digits}", digits, national}
        words |= {f"{national[:3]}-{national[3:6]}-{national[6:]}"}
        return {word.encode("utf-8") for word in words}


def imported_people() -> list[Person]:
    rows = csv.DictReader(io.StringIO(CASELOAD))
    return [Person(r["Client Name"], r["Client Email"], r["Client Phone"]) for r in rows]


def demo_people() -> list[Person]:
    """The demo's clients, read from the sheet the demo imports."""
    sheet = _sheet(demo_receipts(datetime.now(UTC))).decode("utf-8")
    rows = csv.DictReader(io.StringIO(sheet))
    return [Person(r["client_name"], r["client_email"], r["client_phone"]) for r in rows]


def files_under(data_dir: Path) -> Iterator[Path]:
    for path in sorted(data_dir.rglob("*")):
        if path.is_file() and path.relative_to(data_dir).parts[0] not in KEY_FOLDERS:
            yield path


def found_in(data_dir: Path, people: list[Person]) -> dict[str, set[str]]:
    """{file (relative): the data found in it in clear}."""
    needles = {needle for person in people for needle in person.needles()}
    found: dict[str, set[str]] = {}
    for path in files_under(data_dir):
        content = path.read_bytes()
        hits = {n.decode() for n in needles if n in content}
        if hits:
            found[str(path.relative_to(data_dir))] = hits
    return found


def environment(data_dir: Path) -> dict[str, str]:
    """A fresh installation: its own data directory, SQLite and queue in it, nothing else."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CASEWATCH_")}
    env.pop("DATABASE_URL", None)
    env["CASEWATCH_DATA_DIR"] = str(data_dir)
    # Logs as an operator keeps them: what casewatch says at INFO, not only warnings.
    env["CASEWATCH_LOG_LEVEL"] = "INFO"
    return env


def clients_told(data_dir: Path) -> list[dict[str, object]]:
    result = casewatch("outbox", "--json", data_dir=data_dir)
    assert result.returncode == 0, result.stderr
    entries: list[dict[str, object]] = json.loads(result.stdout)
    return [
        e
        for e in entries
        if e["recipient_kind"] == "client" and e["status"] in ("sent", "delivered", "read")
    ]


def running_at(log: Path, process: subprocess.Popen[bytes]) -> str:
    """The address `up` printed once it listens."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and process.poll() is None:
        for line in log.read_text(errors="replace").splitlines():
            if line.startswith("casewatch is running at "):
                return line.split()[-1].rstrip("/")
        time.sleep(0.5)
    raise AssertionError(f"casewatch up did not start: {log.read_text(errors='replace')}")


def make_every_channel_carry_client_data(url: str, someone: Person) -> None:
    """Through the built-in fakes' controls: some WhatsApp messages cannot be delivered
    (131026) and some texts go to an invalid number (21211), so that messages fall back
    to SMS and then to e-mail; and a client writes in, under their WhatsApp name."""
    faults = {"whatsapp": {"code": 131026, "count": 6}, "twilio": {"code": 21211, "count": 3}}
    for provider, fault in faults.items():
        answer = httpx.post(f"{url}/sandbox/{provider}/_fake/faults", json=fault, timeout=10)
        assert answer.status_code == 200, answer.text
    digits = "".join(c for c in someone.phone if c.isdigit())
    writes = {"from": digits, "text": "Hola, ¿hay noticias de mi caso?", "name": someone.name}
    answer = httpx.post(f"{url}/sandbox/whatsapp/_fake/inbound", json=writes, timeout=10)
    assert answer.status_code in (200, 202), answer.text


def ignore_keys(folder: str, names: list[str]) -> set[str]:
    return set(KEY_FOLDERS) & set(names) if Path(folder).name == "data" else set()


def run_demo_until_clients_are_told(data_dir: Path) -> list[dict[str, object]]:
    """`casewatch up --demo`, stdout and stderr kept as logs in the data directory, until
    clients were sent messages on every channel (or the wait is over); then stopped."""
    with (
        open(data_dir / "up.out.log", "wb") as out,
        open(data_dir / "up.err.log", "wb") as err,
    ):
        process = subprocess.Popen(
            [sys.executable, "-m", "casewatch", "up", "--demo", "--port", str(_free_port())],
            stdout=out,
            stderr=err,
            env=environment(data_dir),
        )
        told: list[dict[str, object]] = []
        try:
            url = running_at(data_dir / "up.out.log", process)
            make_every_channel_carry_client_data(url, demo_people()[0])
            deadline = time.monotonic() + DEMO_WAIT_SECONDS
            while time.monotonic() < deadline and process.poll() is None:
                time.sleep(10)
                told = clients_told(data_dir)
                if {e["channel"] for e in told} >= CLIENT_CHANNELS:
                    time.sleep(10)  # delivery receipts, and what the worker logs after
                    break
            # As the files are while it runs: the databases' write-ahead logs are still
            # there, not yet folded into the database files.
            shutil.copytree(data_dir, data_dir.parent / RUNNING, ignore=ignore_keys)
        finally:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    return told


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, object]]]:
    data_dir = tmp_path_factory.mktemp("pii") / "data"
    sheet = data_dir.parent / "caseload.csv"  # the firm's own file, outside casewatch's data
    sheet.write_text(CASELOAD, encoding="utf-8")
    imported = subprocess.run(
        [sys.executable, "-m", "casewatch", "import", str(sheet), "--json"],
        capture_output=True,
        env=environment(data_dir),
        timeout=120,
        check=False,
    )
    (data_dir / "import.out.log").write_bytes(imported.stdout)
    (data_dir / "import.err.log").write_bytes(imported.stderr)
    assert imported.returncode == 0, imported.stderr
    assert json.loads(imported.stdout)["created"] == 2
    return data_dir, run_demo_until_clients_are_told(data_dir)


def test_the_demo_ran_and_told_clients(demo_run: tuple[Path, list[dict[str, object]]]) -> None:
    """The scan below means something only if client data went all the way through."""
    data_dir, told = demo_run
    assert told, (data_dir / "up.err.log").read_text(errors="replace")[-3000:]
    assert {e["channel"] for e in told} >= CLIENT_CHANNELS
    # A control for the search: what the database keeps in clear (receipts) is found.
    assert b"EAC9999103403" in (data_dir / "casewatch.sqlite3").read_bytes()
    assert (data_dir / "up.err.log").exists()


@pytest.mark.parametrize("when", ["stopped", "running"])
def test_no_client_data_in_clear_under_the_data_directory(
    demo_run: tuple[Path, list[dict[str, object]]], when: str
) -> None:
    data_dir, _told = demo_run
    folder = data_dir if when == "stopped" else data_dir.parent / RUNNING
    assert any(folder.glob("*.sqlite3")), f"no database in {folder}"
    found = found_in(folder, imported_people() + demo_people())
    assert found == {}, f"client data in clear under {folder}: {found}"


def test_e_mail_kept_without_an_smtp_server_is_encrypted_and_readable_with_the_key(
    demo_run: tuple[Path, list[dict[str, object]]],
) -> None:
    """Clients' e-mails were kept under mail/ (the scan above found nothing in them),
    and `casewatch mail` reads them back with the data key."""
    data_dir, _told = demo_run
    assert any((data_dir / MAIL_FOLDER).iterdir())
    listed = subprocess.run(
        [sys.executable, "-m", "casewatch", "mail", "--json"],
        capture_output=True,
        env=environment(data_dir),
        timeout=120,
        check=True,
    )
    recipients = {message["to"] for message in json.loads(listed.stdout)}
    demo_addresses = {str(person.email) for person in demo_people() if person.email}
    assert recipients & demo_addresses


def test_the_needles_would_be_found() -> None:
    """The search itself: each form of a person's data, written anywhere, is a hit."""
    person = imported_people()[1]
    needles = person.needles()
    for written in (b"(202) 555-0178", b"+12025550178", b"2025550178", b"Brunhilda", b"brunhilda"):
        assert any(n in b"..." + written + b"..." for n in needles), written
    assert b"Brunhilda Vexcombe-Ortiz" in needles and b"brunhilda vexcombe-ortiz" in needles
    assert b"+12025550178" in needles and b"12025550178" in needles
