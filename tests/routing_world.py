"""A small law office for the routing tests: its people, a client, a case, and changes.

The people are obviously fake (Test Client, +1 555 01xx numbers, example.test mail).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.contrib.auth.models import User

from casewatch.accounts.models import Firm, Membership, Role
from casewatch.cases.models import Case, Client, StatusEvent
from casewatch.core.statuses import default_catalog
from casewatch.notify.consent import record_consent
from casewatch.notify.models import CLIENT_CHANNELS, ContactPlan, Notification, StaffContact

# Monday 2 March 2026, 10:00 in New York (EST): nobody's quiet hours.
NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
CLIENT_NAME = "Test Client"
CLIENT_PHONE = "+15555550123"
CLIENT_EMAIL = "test.client@example.test"


@dataclass
class Office:
    firm: Firm
    attorney: Membership
    paralegal: Membership
    operations: Membership
    admin: Membership
    client: Client
    case: Case


def member(firm: Firm, username: str, role: str, language: str = "") -> Membership:
    user = User.objects.create_user(
        username=f"{username}.{firm.slug}",
        email=f"{username}.{firm.slug}@example.test",
        first_name=username.title(),
    )
    return Membership.objects.create(firm=firm, user=user, role=role, language=language)


def make_client(
    firm: Firm,
    *,
    reference: str = "C-0001",
    language: str = "es",
    phone: str = CLIENT_PHONE,
    email: str = CLIENT_EMAIL,
    time_zone: str = "",
    consent: tuple[str, ...] = tuple(CLIENT_CHANNELS),
) -> Client:
    client = Client.objects.create(
        firm=firm,
        reference=reference,
        personal={"name": CLIENT_NAME, "phone": phone, "email": email},
        language=language,
        time_zone=time_zone,
    )
    for channel in consent:
        give_consent(client, channel)
    return client


def give_consent(client: Client, channel: str, *, granted: bool = True) -> None:
    record_consent(
        client,
        channel,
        granted=granted,
        at=NOW - timedelta(days=30),
        actor="user:1",
        method="form",
        wording="I agree to receive case updates.",
    )


def make_office(slug: str = "example", *, with_operations: bool = True) -> Office:
    firm = Firm.objects.create(
        name="Example Immigration Law", slug=slug, time_zone="America/New_York"
    )
    attorney = member(firm, "alma", Role.ATTORNEY)
    paralegal = member(firm, "pablo", Role.PARALEGAL, language="es")
    operations = (
        member(firm, "olu", Role.OPERATIONS)
        if with_operations
        else member(firm, "frida", Role.FRONT_DESK)
    )
    admin = member(firm, "ada", Role.ADMIN)
    client = make_client(firm)
    case = Case.objects.create(
        firm=firm,
        receipt_number=f"EAC26900{firm.pk:05d}",
        form_type="I-485",
        client=client,
        attorney=attorney.user,
        paralegal=paralegal.user,
    )
    return Office(firm, attorney, paralegal, operations, admin, client, case)


def another_case(office: Office, n: int, **fields: object) -> Case:
    defaults: dict[str, object] = {
        "firm": office.firm,
        "receipt_number": f"IOE09{office.firm.pk:03d}{n:05d}",
        "form_type": "I-765",
        "client": office.client,
        "attorney": office.attorney.user,
        "paralegal": office.paralegal.user,
    }
    defaults.update(fields)
    return Case.objects.create(**defaults)


def change(
    case: Case,
    status: str,
    *,
    at: datetime = NOW - timedelta(minutes=5),
    initial: bool = False,
    source: str = "sandbox",
) -> StatusEvent:
    """A change of the case to a catalog status, as the monitor records it."""
    if status == "unknown":
        category, urgency, title_en, title_es = "unknown", "review", "Case Status Garbled", ""
    else:
        known = default_catalog().statuses[status]
        category, urgency = known.category, known.urgency
        title_en, title_es = known.title_en, known.title_es
    event = StatusEvent.objects.create(
        firm_id=case.firm_id,
        case=case,
        status=status,
        category=category,
        urgency=urgency,
        confidence=1.0,
        title_en=title_en,
        title_es=title_es,
        uscis_date=at - timedelta(hours=3),
        observed_at=at,
        source=source,
        initial=initial,
    )
    Case.objects.filter(pk=case.pk).update(
        status=status, category=category, urgency=urgency, status_since=at
    )
    return event


def contact(membership: Membership, *channels: str, phone: str = "") -> StaffContact:
    return StaffContact.objects.create(membership=membership, phone=phone, channels=list(channels))


def plan(client: Client, *channels: str) -> None:
    ContactPlan.objects.update_or_create(client=client, defaults={"channels": list(channels)})


def who(notification: Notification) -> str:
    """The recipient as the tests name them: the member's first name, "client" or "webhook"."""
    if notification.recipient_kind == "client":
        return "client"
    if notification.user is None:
        return "webhook"
    return notification.user.first_name.lower()


def heard(**filters: object) -> set[tuple[str, str]]:
    """(recipient, channel) of every notification matching the filters."""
    rows = Notification.objects.filter(**filters).select_related("user")
    return {(who(n), n.channel) for n in rows}
