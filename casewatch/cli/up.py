"""`casewatch up`: the whole product on one machine, from one command.

The web app runs under gunicorn (with the built-in USCIS sandbox mounted beside it
when no credentials are set, and the WhatsApp and Twilio fakes when those providers
are not configured) and the worker runs as a child process; stopping `up` stops both.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from casewatch.cli.bootstrap import prepare_django
from casewatch.cli.output import fail
from casewatch.config import BUILTIN_SANDBOX_PREFIX as SANDBOX_PREFIX
from casewatch.config import (
    BUILTIN_TWILIO_PREFIX,
    BUILTIN_WHATSAPP_PREFIX,
    ConfigError,
    ensure_data_dir,
    uscis_settings,
)

DEMO_CLOCK_SPEED = 2000.0
DEMO_CHECK_INTERVAL_SECONDS = "20"
# The demo checks its dozen cases every few seconds: far more than a day's real budget.
DEMO_DAILY_BUDGET = "200000"
WEB_THREADS = 8


def register(commands: Any) -> None:
    parser = commands.add_parser("up", help="run casewatch: web app, worker and sandbox")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument(
        "--demo",
        action="store_true",
        help="run the sandbox clock fast and check often, so that statuses move within minutes",
    )
    parser.set_defaults(run=run)


def _port_problem(host: str, port: int) -> str | None:
    """Say so plainly when the port is taken, instead of gunicorn's retry loop."""
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as exc:
        return f"cannot listen on {host}:{port}: {exc.strerror}"
    return None


def _first_run(data: Path) -> None:
    """Create the firm and its first admin; print the generated password once."""
    from casewatch.accounts.firms import create_first_admin, default_firm

    admin = create_first_admin(default_firm())
    if admin is None:
        return
    note = data / "first-admin.txt"
    fd = os.open(note, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(f"login: {admin.username}\npassword: {admin.password}\n")
    print(
        f"First run: log in as '{admin.username}' with password '{admin.password}' "
        f"(also kept in {note}; change it after logging in). Admins sign in with a code "
        f"from a phone app too: have an authenticator app (Google Authenticator, "
        f"Microsoft Authenticator, 1Password, FreeOTP) ready; the first login sets it up.",
        flush=True,
    )


def _load_demo() -> None:
    from datetime import UTC, datetime

    from casewatch.accounts.firms import default_firm
    from casewatch.cli.demo import load_demo

    added = load_demo(default_firm(), datetime.now(UTC))
    if added:
        print(
            f"Demo: {added} sandbox cases of clients who speak several languages; their "
            f"next status changes come within minutes. Quiet hours are off for the demo firm.",
            flush=True,
        )


def run(args: argparse.Namespace) -> int:
    data = ensure_data_dir()
    settings = uscis_settings()
    from casewatch.cli.sandbox import channel_fakes, point_fakes_at

    try:
        # Signing as the web app verifies; callbacks go to it once it listens (when_ready).
        fakes = channel_fakes(None, builtin_only=True)
    except ConfigError as exc:
        return fail(str(exc))
    problem = _port_problem(args.host, args.port)
    if problem:
        return fail(problem)
    prepare_django()
    _first_run(data)
    if args.demo:
        _load_demo()

    from django.db import connections
    from gunicorn.app.base import BaseApplication
    from werkzeug.middleware.dispatcher import DispatcherMiddleware

    from casewatch.core.clock import ScaledClock
    from casewatch.uscis.sandbox.app import SandboxApp
    from casewatch.uscis.sandbox.world import SyntheticWorld
    from casewatch.wsgi import application

    mounts: dict[str, Any] = {}
    if settings.uses_builtin_sandbox:
        speed = DEMO_CLOCK_SPEED if args.demo else 1.0
        mounts[SANDBOX_PREFIX] = SandboxApp(SyntheticWorld(), ScaledClock(speed=speed))
    mounts.update(fakes)
    app = DispatcherMiddleware(application, mounts)
    connections.close_all()  # gunicorn forks; each process opens its own connection
    worker: list[subprocess.Popen[bytes]] = []

    def when_ready(server: Any) -> None:
        port = server.LISTENERS[0].sock.getsockname()[1]
        url = f"http://{args.host}:{port}"
        env = dict(os.environ)
        if settings.uses_builtin_sandbox:
            env["CASEWATCH_USCIS_BASE_URL"] = f"{url}{SANDBOX_PREFIX}"
        # The fakes are forked into the web worker after this: they call back to `url`.
        point_fakes_at(fakes, url)
        for prefix, name in (
            (BUILTIN_WHATSAPP_PREFIX, "CASEWATCH_WHATSAPP_BASE_URL"),
            (BUILTIN_TWILIO_PREFIX, "CASEWATCH_TWILIO_BASE_URL"),
        ):
            if prefix in fakes:
                env[name] = f"{url}{prefix}"
        # Where providers call the worker's messages back (config.callback_base_url()).
        env["CASEWATCH_WEB_URL"] = url
        if args.demo:
            env.setdefault("CASEWATCH_CHECK_INTERVAL_SECONDS", DEMO_CHECK_INTERVAL_SECONDS)
            env.setdefault("CASEWATCH_USCIS_DAILY_BUDGET", DEMO_DAILY_BUDGET)
        worker.append(subprocess.Popen([sys.executable, "-m", "casewatch", "worker"], env=env))
        print(f"casewatch is running at {url}/", flush=True)
        if settings.uses_builtin_sandbox:
            print(
                f"  No USCIS credentials are set: statuses come from the built-in sandbox at "
                f"{url}{SANDBOX_PREFIX} (sandbox data, not real USCIS data).\n"
                f"  Data directory: {data}",
                file=sys.stderr,
                flush=True,
            )
        for prefix in fakes:
            print(
                f"  No {prefix.rsplit('/', 1)[-1]} provider is configured: messages go to the "
                f"built-in fake at {url}{prefix} and reach no phone.",
                file=sys.stderr,
                flush=True,
            )

    def worker_exit(server: Any, web_worker: Any) -> None:
        for fake in fakes.values():
            fake.stop()

    def on_exit(server: Any) -> None:
        for process in worker:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()

    class WebServer(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            options = {
                "bind": f"[{args.host}]:{args.port}"
                if ":" in args.host
                else f"{args.host}:{args.port}",
                "workers": 1,
                "worker_class": "gthread",
                "threads": WEB_THREADS,
                "accesslog": None,
                "errorlog": "-",
                "loglevel": "warning",
                "proc_name": "casewatch",
                "when_ready": when_ready,
                "on_exit": on_exit,
                "worker_exit": worker_exit,
            }
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            return app

    WebServer().run()
    return 0
