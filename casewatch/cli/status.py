"""`casewatch status`: USCIS health, today's budget, the caseload and what the budget buys."""

from __future__ import annotations

import argparse
from typing import Any

from casewatch.cli.bootstrap import prepare_django
from casewatch.cli.output import print_json


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "status",
        help="USCIS health, budget used today and the expected detection delay",
    )
    parser.add_argument("--json", action="store_true")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    prepare_django()
    from django.utils import timezone

    from casewatch.cases.models import Case
    from casewatch.monitor.freshness import freshness_now
    from casewatch.monitor.health import health_snapshot
    from casewatch.monitor.limiter import shared_quota
    from casewatch.monitor.tasks import current_budget

    now = timezone.now()
    budget = current_budget()
    quota = shared_quota(budget.rate_per_second, budget.calls_per_day)
    freshness = freshness_now(budget, now)
    cases = Case.objects.filter(receipt_number__isnull=False)
    health = health_snapshot()
    spent = {
        "calls_per_day": budget.calls_per_day,
        "rate_per_second": budget.rate_per_second,
        "used_today": quota.used_today(),
        "resets_at": quota.resets_at().isoformat(),
    }
    result = {
        "uscis": health,
        "budget": spent,
        "active_cases": freshness.active_cases,
        "never_checked": cases.filter(last_checked_at__isnull=True).count(),
        "receipt_pending": Case.objects.filter(
            receipt_number__isnull=True, archived_at__isnull=True
        ).count(),
        "expected_detection_delay_hours": freshness.delay_hours,
        "freshness": freshness.sentence,
    }
    if args.json:
        print_json(result)
        return 0
    print(f"USCIS: circuit {health['circuit']}, last successful read {health['last_success_at']}")
    if health["unreadable_since"]:
        print(f"  unreadable since {health['unreadable_since']} ({health['last_error']})")
    print(
        f"Budget: {spent['used_today']:,} of {spent['calls_per_day']:,} calls used today "
        f"(resets {spent['resets_at']})"
    )
    print(freshness.sentence)
    return 0
