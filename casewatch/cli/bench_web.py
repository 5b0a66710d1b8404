"""`casewatch bench web`: how long the staff app's main pages take with N cases.

A throwaway database (embedded SQLite, or a fresh database on the PostgreSQL
server DATABASE_URL names) gets N cases with clients, status histories,
deadlines and audit entries, written in bulk as an import would. A staff member
logs in through Django's test client, and each page is requested in-process:
the time measured is the server's, from request to response, with no network.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from casewatch.cli.output import print_json

if TYPE_CHECKING:
    from django.contrib.auth.models import User
    from django.test import Client as Browser

    from casewatch.accounts.models import Firm

WARMUP_REQUESTS = 10
MEASURED_REQUESTS = 80
SEED = 11

FIRST_NAMES = (
    "María", "José", "Juan", "Ana", "Luis", "Carmen", "Jorge", "Sofía", "Ángel", "Lucía",
    "Nguyễn Văn", "Thị", "Wei", "Li", "Priya", "Rahul", "Jean", "Marie", "Fatima", "Omar",
    "Chloé", "François", "João", "Graça", "Mateo", "Valentina", "Camila", "Andrés", "Inés",
    "Ramón", "Beatriz", "Tomás", "Joël", "Renée", "Zoë", "Mónica", "Raúl", "Héctor",
    "Marisol", "Esperanza",
)  # fmt: skip
LAST_NAMES = (
    "García", "Rodríguez", "Martínez", "Hernández", "López", "González", "Pérez", "Sánchez",
    "Ramírez", "Torres", "Flores", "Rivera", "Gómez", "Díaz", "Cruz", "Morales", "Reyes",
    "Gutiérrez", "Ortiz", "Chávez", "Nguyễn", "Trần", "Lê", "Phạm", "Wang", "Zhang", "Chen",
    "Liu", "Patel", "Sharma", "Singh", "Pierre", "Joseph", "Baptiste", "Jean-Louis", "Dubois",
    "Lefèvre", "Santos", "Conceição", "Araújo", "Silva", "Oliveira", "Khan", "Haddad",
    "O'Brien", "Müller", "Núñez", "Peña", "Ibáñez", "Castañeda", "Muñoz", "Álvarez",
    "Jiménez", "Vásquez", "Domínguez", "Fernández", "Suárez", "Ruíz", "Mejía", "Medina",
)  # fmt: skip
PREFIXES = ("EAC", "WAC", "LIN", "SRC", "NBC", "MSC", "IOE")
FORMS = ("I-130", "I-485", "I-765", "I-131", "N-400", "I-129F", "I-751", "I-90")
TAGS = ("family", "employment", "priority", "pro bono", "asylum", "detained")
# How a case's status has gone so far, as USCIS status keys (casewatch.core.statuses).
STORIES = (
    ("case_received",),
    ("case_received", "fingerprint_fee_received", "actively_reviewed"),
    ("case_received", "actively_reviewed", "rfe_sent"),
    ("case_received", "rfe_sent", "rfe_response_received", "approved"),
    ("case_received", "biometrics_scheduled", "interview_scheduled"),
    ("case_received", "actively_reviewed", "approved", "card_being_produced", "card_mailed"),
    ("case_received", "actively_reviewed", "approved", "card_mailed", "card_delivered"),
    ("case_received", "noid_sent"),
    ("case_received", "actively_reviewed", "denied"),
)
RFE_DAYS = 87


def register(benches: Any) -> None:
    """`casewatch bench web`, beside the other benches (casewatch.cli.bench)."""
    web = benches.add_parser(
        "web",
        help="server-side latency of the staff app's main pages with N cases",
        description=(
            "Seeds N cases (clients, histories, deadlines, audit entries) into a throwaway "
            "database (SQLite, or a fresh database on the PostgreSQL server DATABASE_URL "
            "names), logs a staff member in and times the dashboard, the case list, "
            "search and case pages in-process."
        ),
    )
    web.add_argument("--cases", type=int, default=10_000, metavar="N")
    web.add_argument("--json", action="store_true")
    web.set_defaults(run=run_web)


def run_web(args: argparse.Namespace) -> int:
    if args.cases < 1:
        sys.stderr.write("casewatch: --cases must be at least 1\n")
        return 2
    from casewatch.cli.bench import postgres_server, throwaway_data_dir, throwaway_postgres
    from casewatch.cli.bench_monitor import _discard

    server = postgres_server()  # Read first: a throwaway data directory forgets DATABASE_URL.
    root = throwaway_data_dir(prefix="casewatch-bench-web-", fast=True)
    try:
        with throwaway_postgres(server) if server else nullcontext():
            result = _bench(args.cases, quiet=args.json)
    finally:
        _discard(root)
    if args.json:
        print_json(result)
    else:
        print(f"{result['cases']:,} cases on {result['database']}; server-side latency:")
        for page, figures in result["pages"].items():
            print(f"  {page:<12} p50 {figures['p50_ms']:7.1f} ms   p95 {figures['p95_ms']:7.1f} ms")
    return 0


def _bench(cases: int, *, quiet: bool) -> dict[str, Any]:
    from casewatch.cli.bootstrap import prepare_django

    prepare_django()
    from django.db import connection
    from django.test import Client as Browser

    from casewatch.accounts.firms import default_firm

    firm = default_firm()
    started = time.perf_counter()
    caseload = seed(firm, cases)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            # What autovacuum does soon after a large import (PostgreSQL 13+ vacuums after
            # inserts too), so that index-only scans need not visit the table.
            cursor.execute("VACUUM ANALYZE")
    if not quiet:
        print(f"Seeded {cases:,} cases in {time.perf_counter() - started:.1f} s.", file=sys.stderr)
    browser = Browser()
    browser.force_login(caseload.user)
    rng = random.Random(SEED)
    pages: dict[str, Callable[[], str]] = {
        "dashboard": lambda: "/",
        "case_list": _cycle(caseload.list_urls()),
        "case_search": lambda: caseload.search_url(rng),
        "case_detail": lambda: f"/cases/{rng.choice(caseload.case_ids)}/",
    }
    return {
        "cases": cases,
        "database": connection.vendor,
        "requests": MEASURED_REQUESTS,
        "pages": {name: _measure(browser, url) for name, url in pages.items()},
    }


def _cycle(urls: list[str]) -> Callable[[], str]:
    position = iter(range(10**9))
    return lambda: urls[next(position) % len(urls)]


def _measure(browser: Browser, next_url: Callable[[], str]) -> dict[str, float]:
    """Server-side milliseconds per request, after a warm-up; redirects followed."""
    timings: list[float] = []
    for n in range(WARMUP_REQUESTS + MEASURED_REQUESTS):
        url = next_url()
        started = time.perf_counter()
        response = browser.get(url, follow=True)
        elapsed = (time.perf_counter() - started) * 1000
        if response.status_code != 200:
            raise RuntimeError(f"{url} answered {response.status_code}")
        if n >= WARMUP_REQUESTS:
            timings.append(elapsed)
    timings.sort()
    return {
        "p50_ms": round(statistics.median(timings), 1),
        "p95_ms": round(timings[min(len(timings) - 1, round(0.95 * (len(timings) - 1)))], 1),
    }


@dataclass
class Caseload:
    """What the bench made, so that the requests can ask for real cases and people."""

    user: User
    case_ids: list[int]
    receipts: list[str]
    attorney_ids: list[int]

    def list_urls(self) -> list[str]:
        """The list as people use it: first pages, each filter, another sort."""
        return [
            "/cases/",
            "/cases/?page=2",
            "/cases/?category=evidence_requested",
            "/cases/?urgency=action",
            f"/cases/?attorney={self.attorney_ids[0]}",
            "/cases/?tag=priority",
            "/cases/?form=I-485&sort=receipt",
            "/cases/?state=archived",
            "/cases/?receipt=pending",
            "/cases/?page=5",
        ]

    def search_url(self, rng: random.Random) -> str:
        """A client's surname typed carelessly, or a receipt (whole, or how it starts)."""
        from urllib.parse import urlencode

        kind = rng.randrange(3)
        if kind == 0:
            word = rng.choice(LAST_NAMES)
            typed = rng.choice((word, word.upper(), word.lower()))
            return "/cases/?" + urlencode({"q": typed})
        receipt = rng.choice(self.receipts)
        typed = receipt if kind == 1 else receipt[:8].lower()
        return "/cases/?" + urlencode({"q": typed})


def seed(firm: Firm, count: int) -> Caseload:
    """N cases with clients, staff, histories, deadlines and audit entries, in bulk."""
    from django.db import transaction

    with transaction.atomic():
        return _seed(firm, count)


def _seed(firm: Firm, count: int) -> Caseload:
    from django.contrib.auth.models import User

    from casewatch.accounts.models import Membership, Role
    from casewatch.audit.chain import PendingEntry, record_many
    from casewatch.bulk import insert_records
    from casewatch.cases.models import Case, Client, Deadline, DeadlineKind, StatusEvent
    from casewatch.cases.name_index import index_names
    from casewatch.core.statuses import default_catalog

    rng = random.Random(SEED)
    now = datetime.now(UTC).replace(microsecond=0)
    staff: dict[str, list[int]] = {Role.ATTORNEY: [], Role.PARALEGAL: []}
    for role, people in ((Role.ATTORNEY, 5), (Role.PARALEGAL, 4)):
        for n in range(people):
            user = User.objects.create_user(
                username=f"bench-{role}-{n}", first_name=f"Bench {role}", last_name=str(n + 1)
            )
            Membership.objects.create(firm=firm, user=user, role=role)
            staff[role].append(user.pk)
    looker = User.objects.create_user(username="bench-attorney-looker", first_name="Bench")
    Membership.objects.create(firm=firm, user=looker, role=Role.ATTORNEY)

    names = [_name(rng) for _ in range(count)]
    clients: list[dict[str, Any]] = [
        {
            "firm_id": firm.pk,
            "reference": f"C{n:07d}",
            "personal": {"name": name, "email": f"client{n}@example.com"},
            "language": ("es", "en", "vi", "zh", "pt", "")[n % 6],
        }
        for n, name in enumerate(names)
    ]
    insert_records(Client, clients)
    named = {client["id"]: name for client, name in zip(clients, names, strict=True)}
    index_names(firm.pk, named, replace=False)

    catalog = default_catalog().statuses
    serials = rng.sample(range(10**9, 10**10), count)
    cases: list[dict[str, Any]] = []
    stories: list[tuple[str, ...]] = []
    for n in range(count):
        pending = n % 50 == 49
        story: tuple[str, ...] = () if pending else STORIES[n % len(STORIES)]
        stories.append(story)
        started = now - timedelta(days=rng.randrange(30, 900), minutes=rng.randrange(1440))
        record: dict[str, Any] = {
            "firm_id": firm.pk,
            "receipt_number": None if pending else f"{PREFIXES[n % len(PREFIXES)]}{serials[n]}",
            "form_type": FORMS[n % len(FORMS)],
            "client_id": clients[n]["id"],
            "attorney_id": None if n % 10 == 9 else staff[Role.ATTORNEY][n % 5],
            "paralegal_id": staff[Role.PARALEGAL][n % 4],
            "tags": [TAGS[n % len(TAGS)]] + (["priority"] if n % 7 == 0 else []),
            "archived_at": now - timedelta(hours=n % 5000) if n % 20 == 19 else None,
            "next_check_at": now + timedelta(minutes=rng.randrange(1440)),
            "source": "" if pending else "sandbox",
            "_started": started,
        }
        if story:
            last = catalog[story[-1]]
            since = started + timedelta(days=40 * (len(story) - 1))
            record.update(
                status=last.key,
                category=last.category,
                urgency=last.urgency,
                title_en=last.title_en,
                title_es=last.title_es,
                status_since=since,
                uscis_status_since=since - timedelta(hours=6),
                last_checked_at=now - timedelta(minutes=rng.randrange(600)),
                last_read_at=now - timedelta(minutes=rng.randrange(600)),
            )
        cases.append(record)
    starts = [record.pop("_started") for record in cases]
    insert_records(Case, cases)

    events: list[dict[str, Any]] = []
    deadlines: list[dict[str, Any]] = []
    for record, story, started in zip(cases, stories, starts, strict=True):
        previous = ""
        for step, key in enumerate(story):
            status = catalog[key]
            seen = started + timedelta(days=40 * step)
            # Every third case was last read after two changes: the first came from history.
            recovered = step == len(story) - 2 and record["id"] % 3 == 0
            events.append(
                {
                    "firm_id": firm.pk,
                    "case_id": record["id"],
                    "status": key,
                    "category": status.category,
                    "urgency": status.urgency,
                    "confidence": 1.0,
                    "previous_status": previous,
                    "title_en": status.title_en,
                    "title_es": status.title_es,
                    "description_en": _description(status.title_en, seen, record),
                    "description_es": "",
                    "uscis_date": seen - timedelta(hours=6),
                    "observed_at": seen + timedelta(days=40) if recovered else seen,
                    "source": "sandbox",
                    "initial": step == 0,
                    "recovered": recovered,
                    "routed_at": seen,
                }
            )
            previous = key
        if story and catalog[story[-1]].category in ("evidence_requested", "intent_to_deny"):
            basis = (started + timedelta(days=40 * (len(story) - 1))).date()
            deadlines.append(
                {
                    "firm_id": firm.pk,
                    "case_id": record["id"],
                    "kind": DeadlineKind.RFE_RESPONSE
                    if catalog[story[-1]].category == "evidence_requested"
                    else DeadlineKind.NOID_RESPONSE,
                    "due_on": basis + timedelta(days=RFE_DAYS),
                    "basis": basis,
                }
            )
    insert_records(StatusEvent, events)
    by_case = {e["case_id"]: e["id"] for e in events}
    for deadline in deadlines:
        deadline["event_id"] = by_case[deadline["case_id"]]
    insert_records(Deadline, deadlines)
    record_many(
        [
            PendingEntry(
                "case.created",
                object_type="case",
                object_id=str(record["id"]),
                firm_id=firm.pk,
                actor="import",
                details={"receipt_number": record["receipt_number"]},
                at=now,
            )
            for record in cases
        ]
    )
    return Caseload(
        user=looker,
        case_ids=[record["id"] for record in cases],
        receipts=[r["receipt_number"] for r in cases if r["receipt_number"]],
        attorney_ids=staff[Role.ATTORNEY],
    )


def _name(rng: random.Random) -> str:
    first = rng.choice(FIRST_NAMES)
    last = rng.choice(LAST_NAMES)
    if rng.random() < 0.2:
        last = f"{last} {rng.choice(LAST_NAMES)}"
    return f"{first} {last}"


def _description(title: str, seen: datetime, record: dict[str, Any]) -> str:
    day: date = seen.date()
    return (
        f"On {day:%B} {day.day}, {day.year}, we took this action on your Form "
        f"{record['form_type']}, Receipt Number {record['receipt_number']}: {title}. "
        "We will let you know when we take the next step on your case."
    )
