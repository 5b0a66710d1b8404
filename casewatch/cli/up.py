"""`casewatch up`: the whole product on one machine, from one command."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from types import FrameType
from typing import Any

from casewatch.cli.bootstrap import prepare_django
from casewatch.cli.output import fail
from casewatch.config import BUILTIN_SANDBOX_PREFIX as SANDBOX_PREFIX
from casewatch.config import ensure_data_dir, uscis_settings
from casewatch.core.clock import ScaledClock
from casewatch.uscis.sandbox.app import SandboxApp
from casewatch.uscis.sandbox.server import serve_in_thread
from casewatch.uscis.sandbox.world import SyntheticWorld

DEMO_CLOCK_SPEED = 2000.0


def register(commands: Any) -> None:
    parser = commands.add_parser("up", help="run casewatch: web app, worker and sandbox")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument(
        "--demo",
        action="store_true",
        help="run the sandbox clock fast so that statuses move within minutes",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from werkzeug.middleware.dispatcher import DispatcherMiddleware

    data = ensure_data_dir()
    settings = uscis_settings()
    prepare_django()
    from casewatch.wsgi import application

    mounts: dict[str, Any] = {}
    if settings.uses_builtin_sandbox:
        speed = DEMO_CLOCK_SPEED if args.demo else 1.0
        mounts[SANDBOX_PREFIX] = SandboxApp(SyntheticWorld(), ScaledClock(speed=speed))
    try:
        server = serve_in_thread(DispatcherMiddleware(application, mounts), args.host, args.port)
    except OSError as exc:
        return fail(f"cannot listen on {args.host}:{args.port}: {exc.strerror}")
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    print(f"casewatch is running at {server.url}/", flush=True)
    if settings.uses_builtin_sandbox:
        sandbox = f"{server.url}{SANDBOX_PREFIX}"
        print(
            f"  No USCIS credentials are set: the built-in sandbox answers at {sandbox}\n"
            f"  (sandbox data, not real USCIS data). Check receipts against it with:\n"
            f"    CASEWATCH_USCIS_BASE_URL={sandbox} casewatch check EAC9999103403\n"
            f"  Data directory: {data}",
            file=sys.stderr,
            flush=True,
        )
    stop.wait()
    server.stop()
    return 0
