"""`casewatch sandbox`: the fake USCIS Case Status API as a real HTTP server.

The WhatsApp and Twilio fakes are served beside it, under the same prefixes as
`casewatch up` mounts them (config.BUILTIN_WHATSAPP_PREFIX, BUILTIN_TWILIO_PREFIX),
signing with the secrets casewatch verifies (config.whatsapp_settings(),
config.twilio_settings()).
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from werkzeug.middleware.dispatcher import DispatcherMiddleware

from casewatch.cli.output import fail
from casewatch.config import (
    BUILTIN_TWILIO_PREFIX,
    BUILTIN_WHATSAPP_PREFIX,
    ConfigError,
    twilio_settings,
    whatsapp_settings,
)
from casewatch.core.clock import ScaledClock
from casewatch.uscis.sandbox.app import Limits, SandboxApp
from casewatch.uscis.sandbox.faults import FaultSpecError, parse_faults
from casewatch.uscis.sandbox.server import serve_in_thread
from casewatch.uscis.sandbox.twilio_fake import TwilioFake
from casewatch.uscis.sandbox.whatsapp_fake import WhatsAppFake
from casewatch.uscis.sandbox.world import SyntheticWorld, TraceError, TraceWorld


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "sandbox",
        help="run the fake USCIS Case Status API (and the WhatsApp and Twilio fakes)",
        description=(
            "Serve the USCIS Case Status API's paths and JSON with synthetic cases, "
            "staging receipts or a replayed trace. Open around the clock with no limits "
            "unless the flags say otherwise. Beside it, under "
            f"{BUILTIN_WHATSAPP_PREFIX} and {BUILTIN_TWILIO_PREFIX}, fakes of the WhatsApp "
            "Cloud API and Twilio's Messages API that sign their callbacks with the secrets "
            "casewatch verifies (point CASEWATCH_WHATSAPP_BASE_URL and "
            "CASEWATCH_TWILIO_BASE_URL at them)."
        ),
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--trace", type=Path, help="replay this trace CSV (trace-format.md)")
    parser.add_argument(
        "--clock-speed",
        type=float,
        default=1.0,
        metavar="X",
        help="sandbox time runs X times faster than real time",
    )
    parser.add_argument(
        "--start", help="sandbox time at start (ISO 8601; default now, or the trace window's start)"
    )
    parser.add_argument(
        "--faults",
        default="",
        metavar="SPEC",
        help="e.g. unavailable=0.1,slow=0.05,storm=0.01,malformed=0.02,"
        "html=0.02,token_expiry=0.01,wrong_case=0.01,shapes=1,seed=7, or random=0.2: "
        "that share of requests each get one fault of a kind drawn at random (docs/sandbox.md)",
    )
    parser.add_argument(
        "--rate",
        type=float,
        metavar="R",
        help="spike arrest: requests at least 1/R s apart, else 429",
    )
    parser.add_argument("--daily-quota", type=int, metavar="N", help="requests per UTC day")
    parser.add_argument(
        "--office-hours",
        action="store_true",
        help="open Monday–Friday 7:00–20:00 US Eastern only, else 503",
    )
    parser.add_argument(
        "--request-log",
        type=Path,
        metavar="FILE",
        help="append one JSON line per case-status lookup: arrival and answer times "
        "(epoch seconds), receipt, the client id its token was issued to, HTTP status, "
        "injected fault",
    )
    parser.add_argument(
        "--callback-base",
        metavar="URL",
        help="where casewatch's web app listens, e.g. http://127.0.0.1:8000: the WhatsApp "
        "fake posts delivery statuses and inbound messages to URL/webhooks/whatsapp, the "
        "Twilio fake inbound SMS to URL/webhooks/twilio (its status callbacks go to each "
        "message's StatusCallback); without it they are recorded, not sent",
    )
    parser.add_argument(
        "--callback-delay",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="seconds between a message's status callbacks (sent, delivered, read)",
    )
    parser.add_argument("--client-id", help="accept only this client id (default: any)")
    parser.add_argument("--client-secret", help="accept only this client secret (default: any)")
    parser.set_defaults(run=run)


def build_app(args: argparse.Namespace) -> SandboxApp | str:
    """The sandbox the flags describe, or a one-line reason they are wrong."""
    if args.clock_speed <= 0:
        return "--clock-speed must be greater than 0"
    if args.rate is not None and args.rate <= 0:
        return "--rate must be greater than 0"
    if args.daily_quota is not None and args.daily_quota < 0:
        return "--daily-quota cannot be negative"
    try:
        faults = parse_faults(args.faults)
    except FaultSpecError as exc:
        return str(exc)
    world: SyntheticWorld | TraceWorld
    if args.trace is not None:
        try:
            world = TraceWorld.from_file(args.trace)
        except TraceError as exc:
            return f"--trace: {exc}"
    else:
        world = SyntheticWorld()
    start = None
    if args.start:
        try:
            start = datetime.fromisoformat(args.start.replace("Z", "+00:00"))
        except ValueError:
            return f"--start is not an ISO 8601 time: {args.start!r}"
        if start.tzinfo is None:
            start = start.replace(tzinfo=UTC)
    elif world.trace_window is not None:
        start = world.trace_window[0]
    return SandboxApp(
        world,
        ScaledClock(start=start, speed=args.clock_speed),
        limits=Limits(rate=args.rate, daily_quota=args.daily_quota, office_hours=args.office_hours),
        faults=faults,
        client_id=args.client_id,
        client_secret=args.client_secret,
    )


def channel_fakes(
    web_url: str | None, *, callback_delay: float = 1.0, builtin_only: bool = False
) -> dict[str, WhatsAppFake | TwilioFake]:
    """The WhatsApp and Twilio fakes by mount prefix, signing as casewatch verifies.

    `web_url` is casewatch's web app, where callbacks and inbound messages go.
    With `builtin_only`, a provider configured for real gets no fake (`casewatch up`).
    Raises ConfigError when a provider's settings are half given.
    """
    whatsapp, twilio = whatsapp_settings(), twilio_settings()
    base = web_url.rstrip("/") if web_url else None
    fakes: dict[str, WhatsAppFake | TwilioFake] = {}
    if whatsapp.builtin or not builtin_only:
        fakes[BUILTIN_WHATSAPP_PREFIX] = WhatsAppFake(
            app_secret=whatsapp.app_secret,
            token=whatsapp.token,
            phone_number_id=whatsapp.phone_number_id,
            callback_url=f"{base}/webhooks/whatsapp" if base else None,
            callback_delay=callback_delay,
        )
    if twilio.builtin or not builtin_only:
        fakes[BUILTIN_TWILIO_PREFIX] = TwilioFake(
            account_sid=twilio.account_sid,
            auth_token=twilio.auth_token,
            sender=twilio.sender,
            inbound_url=f"{base}/webhooks/twilio" if base else None,
            callback_delay=callback_delay,
        )
    return fakes


def point_fakes_at(fakes: dict[str, WhatsAppFake | TwilioFake], web_url: str) -> None:
    """Send the fakes' callbacks to casewatch at `web_url` (known once it listens)."""
    for fake in fakes.values():
        if isinstance(fake, WhatsAppFake):
            fake.callback_url = f"{web_url.rstrip('/')}/webhooks/whatsapp"
        else:
            fake.inbound_url = f"{web_url.rstrip('/')}/webhooks/twilio"


def run(args: argparse.Namespace) -> int:
    app = build_app(args)
    if isinstance(app, str):
        return fail(app)
    if args.callback_delay < 0:
        return fail("--callback-delay cannot be negative")
    if args.callback_base and not args.callback_base.startswith(("http://", "https://")):
        return fail(
            f"--callback-base must be an http:// or https:// URL, got {args.callback_base!r}"
        )
    try:
        fakes = channel_fakes(args.callback_base, callback_delay=args.callback_delay)
    except ConfigError as exc:
        return fail(str(exc))
    with contextlib.ExitStack() as open_files:
        if args.request_log is not None:
            try:
                app.request_log = open_files.enter_context(
                    args.request_log.open("a", encoding="utf-8")
                )
            except OSError as exc:
                return fail(f"--request-log: cannot write {args.request_log}: {exc.strerror}")
        try:
            return _serve(app, fakes, args)
        finally:
            for fake in fakes.values():
                fake.stop()


def _serve(
    app: SandboxApp, fakes: dict[str, WhatsAppFake | TwilioFake], args: argparse.Namespace
) -> int:
    try:
        mounts: dict[str, Any] = dict(fakes)
        server = serve_in_thread(DispatcherMiddleware(app, mounts), args.host, args.port)
    except OSError as exc:
        return fail(f"cannot listen on {args.host}:{args.port}: {exc.strerror}")
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    print(f"casewatch sandbox is running at {server.url}/", flush=True)
    print(
        f"  token URL {server.url}/oauth/accesstoken, lookups at {server.url}/case-status/RECEIPT",
        file=sys.stderr,
        flush=True,
    )
    for prefix in fakes:
        print(f"  channel fake at {server.url}{prefix}", file=sys.stderr, flush=True)
    stop.wait()
    server.stop()
    return 0
