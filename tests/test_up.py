"""`casewatch up` on a cold data directory: the whole product from one command."""

from __future__ import annotations

import json
import re
import time
from base64 import b32decode

import httpx
from django_otp.oath import totp

from tests.test_cli import _free_port, _start, casewatch

SHEET = """Receipt Number,Client Name,Email,Form
EAC9999103403,Fakey McTestface,fakey@example.com,I-130
LIN9999106498,Ana Ejemplo Prueba,ana@example.com,I-526
"""


def _log_in(client: httpx.Client, base: str, username: str, password: str) -> httpx.Response:
    form = client.get(base + "login/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text)
    assert token, form.text
    return client.post(
        base + "login/",
        data={"csrfmiddlewaretoken": token.group(1), "username": username, "password": password},
        headers={"Referer": base + "login/"},
        follow_redirects=True,
    )


def _set_up_two_factor(client: httpx.Client, page: httpx.Response) -> httpx.Response:
    """What the admin does with an authenticator app: type in the key, confirm its code."""
    key = re.search(r'<code class="secret">([A-Z2-7 ]+)</code>', page.text)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
    assert key and token, page.text
    code = totp(b32decode(key.group(1).replace(" ", "")))
    codes = client.post(
        str(page.url),
        data={"csrfmiddlewaretoken": token.group(1), "code": f"{code:06d}", "next": "/"},
        headers={"Referer": str(page.url)},
    )
    assert "Your recovery codes" in codes.text, codes.text
    return client.get(str(page.url.join("/")), follow_redirects=True)


def test_up_serves_a_login_form_and_tracks_an_imported_caseload(tmp_path) -> None:
    data_dir = tmp_path / "cold"
    sheet = tmp_path / "caseload.csv"
    sheet.write_text(SHEET, encoding="utf-8")
    imported = casewatch("import", str(sheet), "--json", data_dir=data_dir)
    assert imported.returncode == 0, imported.stderr
    assert json.loads(imported.stdout)["created"] == 2

    port = _free_port()
    process, url = _start(["up", "--port", str(port)], data_dir, "casewatch is running at")
    try:
        assert url == f"http://127.0.0.1:{port}/"
        credentials = (data_dir / "first-admin.txt").read_text(encoding="utf-8")
        assert (data_dir / "first-admin.txt").stat().st_mode & 0o077 == 0
        username = re.search(r"login: (\S+)", credentials).group(1)  # type: ignore[union-attr]
        password = re.search(r"password: (\S+)", credentials).group(1)  # type: ignore[union-attr]

        with httpx.Client(timeout=10) as client:
            assert client.get(url + "health").json() == {"ok": True}
            login_page = client.get(url, follow_redirects=True)
            assert login_page.status_code == 200
            assert 'name="password"' in login_page.text
            assert "SANDBOX" in login_page.text

            refused = _log_in(client, url, username, "not-the-password")
            assert "do not match" in refused.text

            # The first admin's first login sets up two-factor sign-in, then goes on.
            set_up = _log_in(client, url, username, password)
            assert "Set up two-factor sign-in" in set_up.text, set_up.text
            dashboard = _set_up_two_factor(client, set_up)
            assert "Changes since you last looked" in dashboard.text
            cases = client.get(url + "cases/")
            assert "EAC9999103403" in cases.text and "Fakey McTestface" in cases.text

            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                page = client.get(url + "cases/")
                if "Case Was Approved" in page.text:
                    break
                time.sleep(0.5)
            assert "Case Was Approved" in page.text, "the worker did not read the caseload"
            link = re.search(r'href="(/cases/\d+/)">EAC9999103403', page.text)
            assert link
            detail = client.get(url + link.group(1)[1:])
            assert "Case Was Approved" in detail.text and "Caso Fue Aprobado" in detail.text
            assert "SANDBOX" in detail.text
    finally:
        process.terminate()
        process.wait(timeout=20)
    assert (data_dir / "keys" / "secret_key").stat().st_mode & 0o077 == 0


def test_up_refuses_a_port_that_is_taken(tmp_path) -> None:
    port = _free_port()
    process, _ = _start(["up", "--port", str(port)], tmp_path / "a", "casewatch is running at")
    try:
        second = casewatch("up", "--port", str(port), data_dir=tmp_path / "b")
        assert second.returncode == 2
        assert f"cannot listen on 127.0.0.1:{port}" in second.stderr
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_a_worker_alone_reads_the_imported_caseload_and_stops_cleanly(tmp_path) -> None:
    import os
    import signal
    import sqlite3
    import subprocess
    import sys

    data_dir = tmp_path / "cold"
    sheet = tmp_path / "caseload.csv"
    sheet.write_text(SHEET, encoding="utf-8")
    assert casewatch("import", str(sheet), data_dir=data_dir).returncode == 0
    env = {k: v for k, v in os.environ.items() if not k.startswith("CASEWATCH_")}
    env["CASEWATCH_DATA_DIR"] = str(data_dir)
    worker = subprocess.Popen(
        [sys.executable, "-m", "casewatch", "worker"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        statuses: list[tuple[str, str]] = []
        while time.monotonic() < deadline:
            with sqlite3.connect(data_dir / "casewatch.sqlite3") as db:
                statuses = db.execute(
                    "SELECT receipt_number, category FROM cases_case ORDER BY receipt_number"
                ).fetchall()
            if all(category for _, category in statuses):
                break
            time.sleep(0.5)
        assert statuses == [("EAC9999103403", "approved"), ("LIN9999106498", "approved")]
    finally:
        worker.send_signal(signal.SIGTERM)
        _, stderr = worker.communicate(timeout=30)
    assert b"Traceback" not in stderr, stderr.decode()
