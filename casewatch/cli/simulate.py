"""`casewatch simulate`: replay a trace in virtual time and measure detection delay."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from casewatch.cli.output import fail, print_json


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "simulate",
        help="replay a status trace in virtual time under a USCIS budget",
        description=(
            "Replays a trace (trace-format.md) through the worker's own check-and-record "
            "code against the sandbox, in a throwaway database, and measures how soon "
            "each change is noticed."
        ),
    )
    parser.add_argument("--trace", type=Path, required=True, metavar="FILE")
    parser.add_argument("--budget-per-day", type=int, required=True, metavar="N")
    parser.add_argument("--rate", type=float, default=10.0, metavar="R", help="calls per second")
    parser.add_argument("--policy", choices=("adaptive", "round-robin"), default="adaptive")
    parser.add_argument("--warmup-days", type=float, default=7.0, metavar="D")
    parser.add_argument("--start", help="window start (ISO 8601; default from the trace)")
    parser.add_argument("--end", help="window end (ISO 8601; default from the trace)")
    parser.add_argument("--json", action="store_true")
    parser.set_defaults(run=run)


def _moment(text: str | None, flag: str) -> datetime | str | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return f"{flag} is not an ISO 8601 time: {text!r}"
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def run(args: argparse.Namespace) -> int:
    if args.budget_per_day < 1:
        return fail("--budget-per-day must be at least 1")
    if args.rate <= 0:
        return fail("--rate must be greater than 0")
    if args.warmup_days < 0:
        return fail("--warmup-days cannot be negative")
    start, end = _moment(args.start, "--start"), _moment(args.end, "--end")
    for value in (start, end):
        if isinstance(value, str):
            return fail(value)
    assert not isinstance(start, str) and not isinstance(end, str)
    if start is not None and end is not None and end <= start:
        return fail("--end must be after --start")

    from casewatch.uscis.sandbox.world import TraceError, TraceWorld

    try:
        world = TraceWorld.from_file(args.trace)
    except TraceError as exc:
        return fail(f"--trace: {exc}")
    if not world.cases:
        return fail(f"--trace: {args.trace} holds no cases")

    from casewatch.cli.bench import throwaway_data_dir

    throwaway_data_dir(prefix="casewatch-simulate-", fast=True)
    from casewatch.cli.bootstrap import prepare_django

    prepare_django()
    from casewatch.monitor.simulate import simulate

    result = simulate(
        world,
        budget_per_day=args.budget_per_day,
        rate=args.rate,
        policy_name=args.policy,
        warmup_days=args.warmup_days,
        start=start,
        end=end,
    )
    if args.json:
        print_json(result)
        return 0
    delay, action = result["delay_hours"], result["action_delay_hours"]
    print(
        f"{result['policy']}: {result['cases']:,} cases over {result['days']} days, "
        f"{result['api_calls']:,} calls ({result['budget_per_day']:,}/day budget)"
    )
    print(
        f"changes {result['changes']:,}: detected {result['detected']:,}, "
        f"missed {result['missed']:,}"
    )
    print(
        f"delay hours: mean {delay['mean']} p50 {delay['p50']} "
        f"p95 {delay['p95']} max {delay['max']}"
    )
    print(f"action delay hours ({action['count']}): mean {action['mean']} p95 {action['p95']}")
    sys.stdout.flush()
    return 0
