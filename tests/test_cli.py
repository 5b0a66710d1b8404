"""The `casewatch` command as cli.md defines it: run cold, in a fresh process, output to a file."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

CHECK_KEYS = {
    "receipt_number",
    "ok",
    "error",
    "message",
    "form_type",
    "title_en",
    "title_es",
    "description_en",
    "status",
    "category",
    "urgency",
    "confidence",
    "source",
}


# Only a guard against a command that hangs: a loaded CI machine runs the benches slowly.
CLI_TIMEOUT = 600


def casewatch(
    *args: str, data_dir: Path, stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("CASEWATCH_")}
    environment["CASEWATCH_DATA_DIR"] = str(data_dir)
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "casewatch", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=environment,
        timeout=CLI_TIMEOUT,
        check=False,
    )


def test_check_prints_the_contract_objects_from_the_sandbox(tmp_path) -> None:
    data_dir = tmp_path / "empty"
    result = casewatch("check", "EAC9999103403", "lin-9999-106498", "--json", data_dir=data_dir)
    assert result.returncode == 0, result.stderr
    items = json.loads(result.stdout)
    assert [i["receipt_number"] for i in items] == ["EAC9999103403", "LIN9999106498"]
    for item in items:
        assert set(item) == CHECK_KEYS
        assert item["ok"] is True and item["error"] is None and item["source"] == "sandbox"
        assert item["category"] and item["urgency"] and 0 <= item["confidence"] <= 1
    assert items[0]["title_en"] == "Case Was Approved" and items[0]["category"] == "approved"
    assert data_dir.is_dir()


def test_an_invalid_receipt_fails_only_its_item_and_exits_1(tmp_path) -> None:
    result = casewatch(
        "check", "EAC9999103403", "EAC12345", "LIN2410010404", "--json", data_dir=tmp_path
    )
    assert result.returncode == 1
    items = json.loads(result.stdout)
    assert [i["error"] for i in items] == [None, "invalid_receipt", "not_found"]
    assert items[1]["ok"] is False and "13 characters" in items[1]["message"]
    assert items[1]["receipt_number"] == "EAC12345"
    assert "does not recognize" in items[2]["message"]


def test_check_reads_a_file_and_keeps_input_order_with_repeats(tmp_path) -> None:
    listing = tmp_path / "receipts.txt"
    listing.write_text("LIN9999106498\n\neac9999103403, LIN9999106498\n", encoding="utf-8")
    result = casewatch("check", "--file", str(listing), "--json", data_dir=tmp_path / "d")
    items = json.loads(result.stdout)
    assert [i["receipt_number"] for i in items] == [
        "LIN9999106498",
        "EAC9999103403",
        "LIN9999106498",
    ]
    assert items[0] == items[2]


def test_check_without_json_prints_plain_lines_off_a_terminal(tmp_path) -> None:
    result = casewatch("check", "EAC9999103403", data_dir=tmp_path)
    assert result.returncode == 0
    assert "EAC9999103403\tI-130\tapproved\tCase Was Approved" in result.stdout
    spanish = casewatch("check", "EAC9999103403", "--lang", "es", data_dir=tmp_path)
    assert "Caso Fue Aprobado" in spanish.stdout


@pytest.mark.parametrize(
    "args",
    [
        ("check",),
        ("check", "--file", "/nonexistent/receipts.txt"),
        ("no-such-command",),
        ("check", "--lang", "fr", "EAC9999103403"),
        ("sandbox", "--faults", "meteor=1"),
    ],
)
def test_bad_usage_exits_2_with_one_line(tmp_path, args) -> None:
    result = casewatch(*args, data_dir=tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1


def test_bad_configuration_exits_2_with_one_line(tmp_path) -> None:
    result = casewatch(
        "check", "EAC9999103403", data_dir=tmp_path, env={"CASEWATCH_USCIS_CLIENT_ID": "only-id"}
    )
    assert result.returncode == 2
    assert "CASEWATCH_USCIS_CLIENT_SECRET" in result.stderr


def test_classify_reads_stdin_and_prints_json_lines(tmp_path) -> None:
    titles = "Case Was Approved\nREQUEST FOR EVIDENCE WAS SENT\nCaso Fue Aprobado\nxyzzy plugh\n"
    result = casewatch("classify", "--json", data_dir=tmp_path, stdin=titles)
    assert result.returncode == 0
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["input"] for line in lines] == titles.splitlines()
    assert [line["category"] for line in lines] == [
        "approved",
        "evidence_requested",
        "approved",
        "unknown",
    ]
    assert set(lines[0]) == {"input", "status", "category", "urgency", "confidence"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(args: list[str], data_dir: Path, line: str) -> tuple[subprocess.Popen[str], str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("CASEWATCH_")}
    environment["CASEWATCH_DATA_DIR"] = str(data_dir)
    process = subprocess.Popen(
        [sys.executable, "-m", "casewatch", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment,
    )
    assert process.stdout is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        output = process.stdout.readline()
        if output.startswith(line):
            return process, output.strip().split()[-1]
        if process.poll() is not None:
            break
    process.kill()
    raise AssertionError(f"{args} did not start: {process.stderr.read() if process.stderr else ''}")


def test_an_external_sandbox_serves_check_over_http(tmp_path) -> None:
    port = _free_port()
    process, url = _start(
        ["sandbox", "--port", str(port), "--rate", "50"], tmp_path, "casewatch sandbox is running"
    )
    try:
        assert url == f"http://127.0.0.1:{port}/"
        result = casewatch(
            "check",
            "EAC9999103403",
            "SRC2512345678",
            "--json",
            data_dir=tmp_path,
            env={"CASEWATCH_USCIS_BASE_URL": url.rstrip("/")},
        )
        items = json.loads(result.stdout)
        assert result.returncode == 0, items
        assert {i["source"] for i in items} == {"sandbox"}
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert process.returncode == 0


def test_bench_import_prints_the_contract_and_leaves_nothing_behind(tmp_path) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    result = casewatch(
        "bench",
        "import",
        "--rows",
        "200",
        "--json",
        data_dir=tmp_path / "d",
        env={"TMPDIR": str(scratch)},
    )
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    assert {"rows", "seconds", "rows_per_second"} <= set(figures) and figures["rows"] == 200
    assert list(scratch.iterdir()) == [], "the throwaway database is removed"
    assert not (tmp_path / "d" / "casewatch.sqlite3").exists(), "the firm's database is untouched"


def test_token_create_prints_the_token_once_as_the_contract_says(tmp_path) -> None:
    result = casewatch("token", "create", "--scope", "read", "--json", data_dir=tmp_path)
    assert result.returncode == 0, result.stderr
    created = json.loads(result.stdout)
    assert set(created) == {"token", "scope", "firm"}
    assert created["scope"] == "read" and created["firm"] == "default"
    assert created["token"].startswith("cw_") and len(created["token"]) > 40

    plain = casewatch("token", "create", "--scope", "write", data_dir=tmp_path)
    assert plain.returncode == 0, plain.stderr
    (line,) = plain.stdout.splitlines()
    assert line.startswith("cw_") and line != created["token"]


@pytest.mark.parametrize(
    "args",
    [
        ("token", "create", "--scope", "admin"),
        ("token", "create"),
        ("token", "create", "--scope", "read", "--firm", "no-such-firm"),
    ],
)
def test_token_create_refuses_bad_usage_in_one_line(tmp_path, args) -> None:
    result = casewatch(*args, data_dir=tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1
