"""`casewatch worker`: the monitor, router and dispatcher, without the web app."""

from __future__ import annotations

import argparse
import logging
from typing import Any

from casewatch.cli.bootstrap import prepare_django


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "worker",
        help="check due cases at USCIS, record changes, route and deliver notifications",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=2,
        help="threads for checking USCIS and follow-ups (default 2)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    prepare_django()
    from huey.contrib.djhuey import HUEY

    from casewatch.audit import tasks as audit_tasks  # noqa: F401  (registers its periodic task)
    from casewatch.monitor import tasks
    from casewatch.notify import tasks as notify_tasks

    logging.getLogger("huey").setLevel(logging.WARNING)
    tasks.poll_now()
    consumer = HUEY.create_consumer(
        workers=max(args.threads, 1), worker_type="thread", periodic=True, check_worker_health=True
    )
    # Huey sets this flag on SIGTERM/SIGINT; a round in progress sees it and ends.
    tasks.stopping = notify_tasks.stopping = consumer.stop_flag
    notify_tasks.start_delivery()
    try:
        consumer.run()
    finally:
        tasks.shut_down()
        notify_tasks.shut_down()
    return 0
