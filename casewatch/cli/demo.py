"""`casewatch up --demo`: a firm whose clients speak several languages, with news on the way.

The demo's cases are real sandbox receipts chosen because their next status change
falls a few sandbox hours after start-up (seconds at the demo clock's speed), so
that casewatch detects it on its own, as it would at USCIS, and routes and delivers
it through the WhatsApp, Twilio and e-mail stand-ins. The people are obviously fake.
"""

from __future__ import annotations

import csv
import io
import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.contrib.auth import get_user_model
from django.db import transaction

from casewatch.accounts.firms import DEFAULT_FIRM_NAME
from casewatch.accounts.models import Firm, Membership, Role
from casewatch.cases.intake import import_sheet
from casewatch.cases.models import Client
from casewatch.cases.sheet import read_sheet_bytes
from casewatch.core.statuses import default_catalog
from casewatch.notify.consent import record_consent
from casewatch.notify.models import CLIENT_CHANNELS, ContactPlan, MessagingPolicy, StaffContact
from casewatch.uscis.sandbox.world import SandboxCase, SyntheticWorld

DEMO_FIRM_NAME = "Demo Immigration Law (sandbox data)"
DEMO_REFERENCE_PREFIX = "DEMO-"
# The next change of each demo case falls this long after start-up, in sandbox time.
CHANGE_WINDOW = (timedelta(hours=12), timedelta(hours=60))
CASES = 12
MOST_PER_CATEGORY = 3
LANGUAGES = ("es", "pt", "zh", "vi", "hi", "ar", "ht", "fr", "tl", "es", "en", "pt")
PREFIXES = ("IOE", "EAC", "WAC", "LIN", "SRC", "MSC", "NBC")
CONSENT_WORDING = (
    "I agree that {firm} may send me updates about my immigration case by WhatsApp, "
    "text message and e-mail. I can reply STOP (or BAJA) at any time to stop."
)


@dataclass(frozen=True)
class DemoPerson:
    username: str
    first_name: str
    last_name: str
    role: str
    language: str


STAFF = (
    DemoPerson("demo.attorney", "Alex", "Attorney (demo)", Role.ATTORNEY, "en"),
    DemoPerson("demo.paralegal", "Paz", "Paralegal (demo)", Role.PARALEGAL, "es"),
    DemoPerson("demo.operations", "Olu", "Operations (demo)", Role.OPERATIONS, "en"),
)


def demo_receipts(start: datetime, count: int = CASES) -> list[tuple[str, str]]:
    """Sandbox receipts whose next status change falls in CHANGE_WINDOW after `start`.

    Returns (receipt, category of the coming change), a few of each category at most,
    so the demo shows several kinds of news. Deterministic for a given day.
    """
    world = SyntheticWorld()
    catalog = default_catalog()
    rng = random.Random(f"casewatch-demo-{start:%Y-%m-%d}")
    chosen: list[tuple[str, str]] = []
    per_category: dict[str, int] = {}
    fiscal_years = (start.year % 100, (start.year + 1) % 100, (start.year - 1) % 100)
    for _ in range(20000):
        receipt = (
            f"{rng.choice(PREFIXES)}{rng.choice(fiscal_years):02d}"
            f"{rng.randint(1, 250):03d}{rng.randint(10000, 99999):05d}"
        )
        found = world.case(receipt, start)
        if not isinstance(found, tuple):
            continue
        case: SandboxCase = found[0]
        coming = [
            s for s in case.steps if start + CHANGE_WINDOW[0] < s.at < start + CHANGE_WINDOW[1]
        ]
        if not coming:
            continue
        category = catalog.classify(coming[0].title).category
        if per_category.get(category, 0) >= MOST_PER_CATEGORY:
            continue
        if any(receipt == r for r, _ in chosen):
            continue
        per_category[category] = per_category.get(category, 0) + 1
        chosen.append((receipt, category))
        if len(chosen) == count:
            break
    return chosen


def _staff(firm: Firm) -> list[Membership]:
    user_model = get_user_model()
    members = []
    for person in STAFF:
        user, _ = user_model.objects.get_or_create(
            username=person.username,
            defaults={
                "first_name": person.first_name,
                "last_name": person.last_name,
                "email": f"{person.username}@demo.example",
            },
        )
        if not user.has_usable_password():
            user.set_unusable_password()
            user.save(update_fields=["password"])
        member, _ = Membership.objects.get_or_create(
            firm=firm, user=user, defaults={"role": person.role, "language": person.language}
        )
        StaffContact.objects.get_or_create(membership=member, defaults={"channels": ["in_app"]})
        members.append(member)
    return members


def _sheet(receipts: list[tuple[str, str]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        [
            "receipt_number",
            "client_id",
            "client_name",
            "client_email",
            "client_phone",
            "client_language",
            "attorney",
            "paralegal",
            "tags",
        ]
    )
    for n, (receipt, _) in enumerate(receipts, start=1):
        writer.writerow(
            [
                receipt,
                f"{DEMO_REFERENCE_PREFIX}{n:02d}",
                f"Demo Client {n:02d}",
                f"demo.client{n:02d}@demo.example",
                f"+1202555{100 + n:04d}",  # 555-0100 to 555-0199: fictional numbers
                LANGUAGES[(n - 1) % len(LANGUAGES)],
                "demo.attorney",
                "demo.paralegal",
                "demo",
            ]
        )
    return out.getvalue().encode("utf-8")


def load_demo(firm: Firm, start: datetime) -> int:
    """Fill the firm with demo staff, clients and cases, once; returns cases added."""
    if Client.objects.filter(firm=firm, reference__startswith=DEMO_REFERENCE_PREFIX).exists():
        return 0
    receipts = demo_receipts(start)
    with transaction.atomic():
        if firm.name == DEFAULT_FIRM_NAME:
            firm.name = DEMO_FIRM_NAME
            firm.save(update_fields=["name"])
        _staff(firm)
        # Demo clients may hear from the firm at any hour: the demo would wait all night.
        MessagingPolicy.objects.update_or_create(firm=firm, defaults={"quiet_hours": False})
        summary = import_sheet(
            firm,
            read_sheet_bytes(_sheet(receipts), "demo.csv"),
            file_name="demo.csv",
            actor="demo",
            now=start,
        )
        clients = Client.objects.filter(firm=firm, reference__startswith=DEMO_REFERENCE_PREFIX)
        for client in clients:
            ContactPlan.objects.update_or_create(
                client=client, defaults={"channels": list(CLIENT_CHANNELS)}
            )
            for channel in CLIENT_CHANNELS:
                record_consent(
                    client,
                    channel,
                    granted=True,
                    at=start,
                    actor="demo",
                    method="form",
                    wording=CONSENT_WORDING.format(firm=firm.name),
                    language="en",
                )
    return summary.created
