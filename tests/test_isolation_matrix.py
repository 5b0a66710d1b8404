"""Isolation, proven route by route: every address Django knows × every role × the member's
own firm, another firm and nobody signed in, for GET and POST.

The routes come from Django's URL resolver, so a route added tomorrow is in the matrix
tomorrow: a route without a row in ROUTES fails, asking for its row. The expected
answers are data (ROUTES, with casewatch.accounts.permissions saying which role may do
what), and the same few rules apply to every row:

- nobody signed in is sent to the login page (token pages answer on the token alone);
- a role the permissions table does not allow gets 403, whoever's object it names (the
  gate answers before any lookup, so a 403 never tells that an object exists);
- an allowed role naming another firm's object, or a colleague's personal one, gets
  404, exactly as for an object that does not exist; never 403, never 200;
- front desk changes nothing but their own settings;
- no page shown to a member carries another firm's client (name, e-mail, phone) or receipt.

The REST API (/api/v1/) answers on a bearer token alone, so its rows (`Api`) are asked
with no token, a read token and a write token of the member's firm: no token is 401, a
read token changing anything is 403, and another firm's object is 404 like a missing one.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.contrib.auth.tokens import default_token_generator
from django.db import transaction
from django.test import Client as Browser
from django.urls import NoReverseMatch, URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from casewatch.accounts import team
from casewatch.accounts.api_tokens import create_token
from casewatch.accounts.models import Firm, Membership, Role
from casewatch.accounts.permissions import PERSONAL, READ_ONLY_ROLES, Action, may
from casewatch.cases.models import Case, Client, Deadline, SavedView, StatusEvent
from casewatch.notify.models import (
    Notification,
    NotificationStatus,
    RoutingRule,
    WebhookEndpoint,
)
from casewatch.notify.portal_links import issue_link
from casewatch.notify.unsubscribe import unsubscribe_token
from casewatch.web import held_files
from casewatch.web.calendar_feed import create_link
from casewatch.web.intake import UPLOAD
from casewatch.web.status_check import CHECK
from tests.environment import sign_in
from tests.routing_world import change, member

pytestmark = pytest.mark.django_db

A = Action
NOBODY = "anonymous"
ROLES: tuple[str, ...] = tuple(Role.values)
WHO: tuple[str, ...] = (NOBODY, *ROLES)
GET, POST, PATCH = "GET", "POST", "PATCH"
LOGIN = "/login/"


def signed_in(membership: Membership) -> Browser:
    """A browser signed in as the member, two-factor code and all where it is asked.

    The user is read afresh: signing in stamps `last_login` on the object it is given,
    which would outlive the test's rollback in the world's copy.
    """
    browser = Browser()
    sign_in(browser, User.objects.get(pk=membership.user_id))
    return browser


# --- Whose object an address names --------------------------------------------------


class Whose(StrEnum):
    OWN = "own"  # the asker's firm's (for a personal object: the asker's own)
    OTHER_FIRM = "other-firm"  # the same kind of object, at another firm
    COLLEAGUE = "colleague"  # a colleague's personal object, at the asker's own firm
    NONE = "none"  # the address names no object
    VALID = "valid"  # a token page given a live token
    FORGED = "forged"  # a token page given a token nobody issued


@dataclass(frozen=True)
class Target:
    """What fills the address (URL keywords) and, for a POST, the form."""

    kwargs: Mapping[str, Any] = field(default_factory=dict)
    data: Mapping[str, Any] = field(default_factory=dict)


# --- The expected answers, as data ----------------------------------------------------


@dataclass(frozen=True)
class Staff:
    """A staff page: `look` is needed to GET it, `change` to POST (None: POST is 405).

    `target` names the kind of object in its address (TARGETS); `looked` and `changed`
    are the answers an allowed member gets to a GET and to an empty POST.
    """

    look: Action
    change: Action | None
    target: str | None = None
    looked: int | Mapping[str, int] = 200
    changed: int | Mapping[str, int] = 302
    # False: a GET only redirects to another page (which looks), so its answer is the
    # same whoever's object it names; the object is looked at by the POST only.
    get_looks: bool = True


@dataclass(frozen=True)
class Public:
    """A page anyone may ask for, signed in or not: the same answer whoever asks.

    A token page (`target`) answers `refused` to a forged token. `get`/`post` None:
    that method is not part of the page's contract and is not asked.
    """

    get: int | None
    post: int | None
    target: str | None = None
    refused: int = 404
    # What the POST sends (the page's own form, filled in).
    form: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Api:
    """An API route: `methods` maps each method of its contract to the answer a write token
    of the object's own firm gets (sending `body`); `target` names the object in its path."""

    methods: Mapping[str, int]
    target: str | None = None
    body: Mapping[str, Any] = field(default_factory=dict)


Row = Staff | Public | Api
# Who calls the API: nobody, or a token of the member's firm with one of the two scopes.
NO_TOKEN, READ_TOKEN, WRITE_TOKEN = "no-token", "read-token", "write-token"
API_CALLERS = (NO_TOKEN, READ_TOKEN, WRITE_TOKEN)


def for_admins(admins: int, others: int) -> Mapping[str, int]:
    """An answer that depends on two-factor sign-in: required of admins (so set up in this
    world), not set up by anyone else here."""
    return {role: admins if role == Role.ADMIN else others for role in ROLES}


ROUTES: Mapping[str, Row] = {
    # The dashboard and the changes on it.
    "home": Staff(A.VIEW_CASES, None),
    "welcome": Staff(A.VIEW_CASES, None),
    "dashboard-seen": Staff(A.VIEW_CASES, A.OWN_SETTINGS, looked=302),
    "dashboard-uscis": Staff(A.VIEW_CASES, None, looked=302),
    "dashboard-changes": Staff(A.VIEW_CASES, None, looked=302),
    "change-acknowledge": Staff(A.VIEW_CASES, A.FOLLOW_UP_CHANGES, "event", looked=302),
    "change-assign": Staff(A.VIEW_CASES, A.FOLLOW_UP_CHANGES, "event", looked=302),
    "change-comment": Staff(A.VIEW_CASES, A.FOLLOW_UP_CHANGES, "event", looked=302),
    # Signing in and out, and one's own account.
    "login": Public(get=200, post=200),
    "logout": Public(get=405, post=302),
    "language": Public(get=405, post=302, form={"language": "en"}),
    "password_reset": Public(get=200, post=200),
    "password_reset_done": Public(get=200, post=405),
    # A forged reset link gets Django's "this link is invalid" page; a forged invitation,
    # casewatch's (LINK_PROBLEMS).
    "password_reset_confirm": Public(get=302, post=None, target="reset", refused=200),
    "password_reset_complete": Public(get=200, post=405),
    "invitation": Public(get=200, post=200, target="invitation", refused=400),
    "two-factor-code": Public(get=302, post=302),  # nothing left to enter: on to the page
    "two-factor-set-up": Staff(
        A.OWN_SETTINGS, A.OWN_SETTINGS, looked=for_admins(302, 200), changed=for_admins(302, 400)
    ),
    "two-factor-recovery-codes": Staff(
        A.OWN_SETTINGS, A.OWN_SETTINGS, looked=302, changed=for_admins(200, 302)
    ),
    "two-factor-off": Staff(A.OWN_SETTINGS, A.OWN_SETTINGS, looked=302),
    "my-account": Staff(A.OWN_SETTINGS, A.OWN_SETTINGS, changed=400),  # no form named
    "switch-firm": Staff(A.VIEW_CASES, A.OWN_SETTINGS, "firm", looked=302, get_looks=False),
    # The team and the firm's messaging settings: admins only.
    "team": Staff(A.MANAGE_TEAM, A.MANAGE_TEAM, changed=200),
    "access-log": Staff(A.VIEW_ACCESS_LOG, None),
    "team-api-tokens": Staff(A.MANAGE_API_TOKENS, A.MANAGE_API_TOKENS, changed=200),
    "team-api-token-revoke": Staff(A.MANAGE_API_TOKENS, A.MANAGE_API_TOKENS, "api_token"),
    "team-role": Staff(A.MANAGE_TEAM, A.MANAGE_TEAM, "member", looked=302),
    "team-remove": Staff(A.MANAGE_TEAM, A.MANAGE_TEAM, "member"),
    "team-withdraw": Staff(A.MANAGE_TEAM, A.MANAGE_TEAM, "invitation", looked=302),
    "messaging-settings": Staff(A.MANAGE_MESSAGING, A.MANAGE_MESSAGING, changed=400),
    "messaging-rule-add": Staff(A.MANAGE_MESSAGING, A.MANAGE_MESSAGING, changed=400),
    "messaging-rule": Staff(A.MANAGE_MESSAGING, A.MANAGE_MESSAGING, "rule", changed=400),
    "messaging-rule-delete": Staff(A.MANAGE_MESSAGING, A.MANAGE_MESSAGING, "rule"),
    "messaging-rule-move": Staff(A.MANAGE_MESSAGING, A.MANAGE_MESSAGING, "rule", looked=302),
    # The firm's outbound webhooks, under the messaging settings: admins only.
    "webhooks": Staff(A.MANAGE_MESSAGING, A.MANAGE_MESSAGING, changed=400),
    "webhook": Staff(A.MANAGE_MESSAGING, A.MANAGE_MESSAGING, "webhook", changed=400),
    "webhook-delete": Staff(A.MANAGE_MESSAGING, A.MANAGE_MESSAGING, "webhook"),
    "webhook-test": Staff(A.MANAGE_MESSAGING, A.MANAGE_MESSAGING, "webhook", looked=302),
    # Cases.
    "case-list": Staff(A.VIEW_CASES, None),
    "cases-csv": Staff(A.VIEW_CASES, None),  # front desk's file has no personal columns
    "events-csv": Staff(A.VIEW_CASES, None),
    "case-view-save": Staff(A.CHANGE_CASES, A.CHANGE_CASES, looked=302),
    "case-view-delete": Staff(A.CHANGE_CASES, A.CHANGE_CASES, "saved_view", looked=302),
    "case-detail": Staff(A.VIEW_CASES, None, "case"),
    "case-edit": Staff(A.CHANGE_CASES, A.CHANGE_CASES, "case"),
    "case-note": Staff(A.CHANGE_CASES, A.CHANGE_CASES, "case", looked=302),
    "case-archive": Staff(A.CHANGE_CASES, A.CHANGE_CASES, "case", looked=302),
    # Deadlines and the calendar feed.
    "deadline-list": Staff(A.VIEW_CASES, None),
    "deadline-detail": Staff(A.VIEW_CASES, A.CHANGE_CASES, "deadline", changed=200),
    "deadline-done": Staff(A.CHANGE_CASES, A.CHANGE_CASES, "deadline", looked=302),
    "deadline-reopen": Staff(A.CHANGE_CASES, A.CHANGE_CASES, "deadline", looked=302),
    "deadline-computed": Staff(A.CHANGE_CASES, A.CHANGE_CASES, "deadline", looked=302),
    "calendar-link": Staff(A.CALENDAR_FEED, A.CALENDAR_FEED, changed=200),
    "calendar-feed": Public(get=200, post=None, target="calendar"),
    "insights": Staff(A.VIEW_CASES, None),
    # Bringing cases in, and asking USCIS now.
    "intake": Staff(A.CHANGE_CASES, None),
    "intake-case": Staff(A.CHANGE_CASES, A.CHANGE_CASES, changed=200),
    "intake-import": Staff(A.CHANGE_CASES, A.CHANGE_CASES, changed=200),
    "intake-import-review": Staff(A.CHANGE_CASES, A.CHANGE_CASES, "import", changed=200),
    "intake-import-commit": Staff(
        A.CHANGE_CASES, A.CHANGE_CASES, "import", looked=302, get_looks=False
    ),
    "intake-import-done": Staff(A.CHANGE_CASES, None, "import", looked=302),
    "intake-import-delete": Staff(A.CHANGE_CASES, A.CHANGE_CASES, "import", looked=302),
    "intake-receipts": Staff(A.CHANGE_CASES, A.CHANGE_CASES, changed=200),
    "status-check": Staff(A.CHECK_STATUS, A.CHECK_STATUS, changed=200),
    "status-check-csv": Staff(A.CHECK_STATUS, None, "check"),
    # Notifications: the firm's outbox and each member's own inbox.
    "outbox": Staff(A.VIEW_OUTBOX, None),
    "notification-detail": Staff(A.VIEW_OUTBOX, None, "notification"),
    "inbox": Staff(A.OWN_INBOX, None),
    "inbox-open": Staff(A.OWN_INBOX, None, "inbox"),
    # A client's contact page, consent and portal links.
    "client-contact": Staff(A.VIEW_CASES, None, "client"),
    "client-consent": Staff(A.VIEW_CASES, A.MANAGE_CONSENT, "client", 302, 400),
    "client-channels": Staff(A.VIEW_CASES, A.MANAGE_CONSENT, "client", looked=302),
    "client-portal-link": Staff(A.VIEW_CASES, A.ISSUE_PORTAL_LINK, "client", 302, 200),
    "portal-link-revoke": Staff(A.VIEW_CASES, A.ISSUE_PORTAL_LINK, "portal_link", 302),
    # What clients and providers reach without signing in.
    "portal": Public(get=200, post=405, target="portal"),
    "unsubscribe": Public(get=200, post=200, target="unsubscribe"),
    "health": Public(get=200, post=None),
    "webhook-whatsapp": Public(get=403, post=403),  # unsigned: refused
    "webhook-twilio": Public(get=403, post=403),
    # The REST API: its schema and docs are public; everything else needs a token.
    "openapi-json": Public(get=200, post=None),
    "openapi-view": Public(get=200, post=None),
    "api-root": Public(get=404, post=None),  # nothing at the bare prefix
    "api-not-found": Public(get=404, post=404, target="api"),  # any other API address
    "api-cases": Api({GET: 200, POST: 422}),  # an empty case is refused, field by field
    "api-case": Api({GET: 200, PATCH: 200}, "case"),
    "api-case-archive": Api({POST: 200}, "case"),
    "api-case-events": Api({GET: 200}, "case"),
    "api-events": Api({GET: 200}),
    "api-deadlines": Api({GET: 200}),
    "api-export-cases": Api({GET: 200}),
    "api-export-events": Api({GET: 200}),
    "api-cases-bulk": Api({POST: 200}, body={"cases": []}),  # an empty list: a report of none
    "api-cases-import": Api({POST: 422}),  # no file: the answer says to send one
    "api-notifications": Api({GET: 200}),
    "api-notification": Api({GET: 200}, "notification"),
    "api-clients": Api({GET: 200}),
    "api-client": Api({GET: 200}, "client"),
    "api-status-checks": Api({POST: 422}),  # a check of no receipts is refused, asking nothing
}


def expected_from_api(row: Api, caller: str, whose: Whose, method: str) -> int:
    """The one answer the token rules allow, in the order the API checks them."""
    if caller == NO_TOKEN:
        return 401
    if caller == READ_TOKEN and method != GET:
        return 403
    if whose is Whose.OTHER_FIRM:
        return 404
    return row.methods[method]


def expected(row: Staff | Public, who: str, whose: Whose, method: str) -> int:
    """The one answer the rules and the row allow (an API row's: expected_from_api)."""
    if isinstance(row, Public):
        answer = (row.get, row.post)[method == POST]
        assert answer is not None
        if answer == 405:  # a method the page does not take is refused before any token
            return answer
        return row.refused if whose is Whose.FORGED else answer
    if who == NOBODY:
        return 302  # to the login page
    needed = row.look if method == GET else row.change
    if needed is None:
        return 405
    if not may(who, needed):
        return 403
    if whose in (Whose.OTHER_FIRM, Whose.COLLEAGUE) and (method == POST or row.get_looks):
        return 404
    allowed = row.looked if method == GET else row.changed
    return allowed if isinstance(allowed, int) else allowed[who]


# --- The objects each kind of address names -------------------------------------------


PERSONAL_TARGETS = frozenset({"saved_view", "inbox", "import", "check"})


@dataclass
class Office:
    """One firm with a member in every role and one of each thing a page can name."""

    firm: Firm
    members: dict[str, Membership]
    client: Client
    case: Case
    event: StatusEvent
    deadline: Deadline
    notification: Notification
    rule: RoutingRule
    portal_link: int
    portal_token: str
    invitation: int
    invitation_token: str
    saved_views: dict[str, int]
    inbox: dict[str, int]
    calendar_tokens: dict[str, str]
    api_tokens: dict[str, str]


SHEET = b"Receipt Number,Client Name\nEAC2690099999,Fakey McTestface\n"

TARGETS: Mapping[str, Callable[[Office, Membership], Target]] = {
    "event": lambda office, m: Target({"pk": office.event.pk}),
    "case": lambda office, m: Target({"pk": office.case.pk}),
    "client": lambda office, m: Target({"pk": office.client.pk}),
    "deadline": lambda office, m: Target({"pk": office.deadline.pk}),
    "notification": lambda office, m: Target({"pk": office.notification.pk}),
    "rule": lambda office, m: Target({"pk": office.rule.pk}),
    "webhook": lambda office, m: Target({"pk": webhook_endpoint(office.firm)}),
    "portal_link": lambda office, m: Target({"pk": office.portal_link}),
    "member": lambda office, m: Target({"pk": office.members[Role.PARALEGAL].pk}),
    "invitation": lambda office, m: Target({"pk": office.invitation}),
    "api_token": lambda office, m: Target({"pk": office.firm.api_tokens.earliest("pk").pk}),
    "firm": lambda office, m: Target(data={"firm": office.firm.pk}),
    "saved_view": lambda office, m: Target({"pk": office.saved_views[m.role]}),
    "inbox": lambda office, m: Target({"pk": office.inbox[m.role]}),
    # Held files are made afresh for each test: a POST may consume them.
    "import": lambda office, m: Target(
        {"token": held_files.hold(m, UPLOAD, SHEET, {"name": "s.csv", "mapping": None})}
    ),
    "check": lambda office, m: Target(
        {"token": held_files.hold(m, CHECK, None, {"rows": [], "at": timezone.now().isoformat()})}
    ),
}

PUBLIC_TARGETS: Mapping[str, Callable[[Office], Target]] = {
    "api": lambda office: Target({"rest": f"cases/{office.case.pk}/nothing"}),
    "portal": lambda office: Target({"token": office.portal_token}),
    "invitation": lambda office: Target({"token": office.invitation_token}),
    "calendar": lambda office: Target({"token": office.calendar_tokens[Role.ATTORNEY]}),
    "unsubscribe": lambda office: Target({"token": unsubscribe_token(office.client.pk, "email")}),
    "reset": lambda office: Target(
        {
            "uidb64": urlsafe_base64_encode(force_bytes(office.members[Role.ADMIN].user_id)),
            "token": default_token_generator.make_token(
                User.objects.get(pk=office.members[Role.ADMIN].user_id)
            ),
        }
    ),
}
# Looks like a real token, so that it reaches the lookup rather than a format check.
FORGED: Mapping[str, Mapping[str, str]] = {
    "api": {"rest": "no/such/thing"},
    "portal": {"token": "x" * 43},
    "invitation": {"token": "MQ:1vQ2Xx:forgedforgedforgedforgedforgedforg"},
    "calendar": {"token": "y" * 43},
    "unsubscribe": {"token": "eyJjIjoxfQ:1vQ2Xx:forgedforgedforgedforgedforge"},
    "reset": {"uidb64": "MQ", "token": "cxyz12-0123456789abcdef0123456789abcdef"},
}


def webhook_endpoint(firm: Firm) -> int:
    """The firm's webhook endpoint, made again when a test before deleted it."""
    endpoint, _ = WebhookEndpoint.objects.get_or_create(
        firm=firm, url=f"https://hooks.{firm.slug}.example.test/casewatch", defaults={"secret": "s"}
    )
    return endpoint.pk


COLLEAGUE_OF: Mapping[str, str] = {role: Role.ADMIN for role in ROLES} | {Role.ADMIN: Role.ATTORNEY}


@dataclass
class World:
    own: Office
    other: Office


def office(slug: str, name: str, client_name: str, receipt: str, phone: str) -> Office:
    firm = Firm.objects.create(name=name, slug=slug, time_zone="America/New_York")
    members = {role: member(firm, role.replace("_", ""), role) for role in ROLES}
    admin = members[Role.ADMIN]
    client = Client.objects.create(
        firm=firm,
        reference=f"{slug}-1",
        personal={"name": client_name, "phone": phone, "email": f"{slug}.client@example.test"},
        language="en",
    )
    case = Case.objects.create(
        firm=firm,
        receipt_number=receipt,
        form_type="I-485",
        client=client,
        attorney=members[Role.ATTORNEY].user,
        paralegal=members[Role.PARALEGAL].user,
    )
    event = change(case, "rfe_sent", at=timezone.now() - timedelta(hours=1))
    due = timezone.localdate() + timedelta(days=30)
    deadline = Deadline.objects.create(
        firm=firm, case=case, event=event, kind="rfe_response", due_on=due, basis=due
    )
    now = timezone.now()
    notification = Notification.objects.create(
        firm=firm,
        case=case,
        event=event,
        kind="status_change",
        recipient_kind="client",
        client=client,
        address=phone,
        channel="whatsapp",
        language="en",
        status=NotificationStatus.DELIVERED,
        idempotency_key=f"{slug}-client",
        created_at=now,
    )
    inbox = {
        role: Notification.objects.create(
            firm=firm,
            case=case,
            event=event,
            kind="status_change",
            recipient_kind="staff",
            user=m.user,
            channel="in_app",
            language="en",
            status=NotificationStatus.DELIVERED,
            idempotency_key=f"{slug}-{role}-inbox",
            created_at=now,
        ).pk
        for role, m in members.items()
    }
    rule = RoutingRule.objects.create(firm=firm, position=1, category="approved")
    link, portal_token = issue_link(client, by_user_id=admin.user_id, at=now)
    invitation = team.invite(
        firm, f"newcomer.{slug}@example.test", Role.PARALEGAL, invited_by=admin.user
    )
    saved_views = {
        role: SavedView.objects.create(firm=firm, owner=m.user, name="Mine", query="q=x").pk
        for role, m in members.items()
    }
    calendar_tokens = {role: create_link(m) for role, m in members.items()}
    return Office(
        firm=firm,
        members=members,
        client=client,
        case=case,
        event=event,
        deadline=deadline,
        notification=notification,
        rule=rule,
        portal_link=link.pk,
        portal_token=portal_token,
        invitation=invitation.pk,
        invitation_token=team.link_token(invitation),
        saved_views=saved_views,
        inbox=inbox,
        calendar_tokens=calendar_tokens,
        api_tokens={
            caller: create_token(firm, scope, actor="test").secret
            for caller, scope in ((READ_TOKEN, "read"), (WRITE_TOKEN, "write"))
        },
    )


# What an alpha member must never see: beta's client and case.
OTHER_FIRMS_DATA = ("Beto Fakeclient-Beta", "beta.client@example.test", "+15550100102")
OTHER_RECEIPT = "LIN2690000002"


@pytest.fixture(scope="module")
def world(django_db_setup: None, django_db_blocker: Any) -> Iterator[World]:
    """Built once for the module inside a transaction rolled back at its end; each test
    runs in its own savepoint within it (pytest-django's `db`), so nothing one test
    changes is seen by the next."""
    with django_db_blocker.unblock(), transaction.atomic():
        built = World(
            own=office(
                "alpha", "Alpha Law", "Alma Fakeclient-Alpha", "EAC2690000001", "+15550100101"
            ),
            other=office(
                "beta", "Beta Law", OTHER_FIRMS_DATA[0], OTHER_RECEIPT, OTHER_FIRMS_DATA[2]
            ),
        )
        yield built
        transaction.set_rollback(True)


# --- The matrix -----------------------------------------------------------------------


def routes() -> Iterator[tuple[str, str]]:
    """(name, route) of every URL pattern the resolver knows, included ones too."""

    def walk(patterns: list[Any], prefix: str) -> Iterator[tuple[str, str]]:
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                yield from walk(pattern.url_patterns, prefix + str(pattern.pattern))
            elif isinstance(pattern, URLPattern):
                yield pattern.name or "", prefix + str(pattern.pattern)

    yield from walk(get_resolver().url_patterns, "")


def whose_for(row: Row, who: str) -> tuple[Whose, ...]:
    if isinstance(row, Public):
        return (Whose.VALID, Whose.FORGED) if row.target else (Whose.NONE,)
    if row.target is None:
        return (Whose.NONE,)
    if who == NOBODY:
        return (Whose.OWN,)
    if row.target in PERSONAL_TARGETS:
        return (Whose.OWN, Whose.OTHER_FIRM, Whose.COLLEAGUE)
    return (Whose.OWN, Whose.OTHER_FIRM)


def methods_for(row: Row) -> tuple[str, ...]:
    if isinstance(row, Public):
        return tuple(m for m, answer in ((GET, row.get), (POST, row.post)) if answer is not None)
    return (GET, POST)


def matrix() -> Iterator[Any]:
    for name, route in routes():
        row = ROUTES.get(name)
        if row is None:
            yield pytest.param(name, route, "", Whose.NONE, GET, id=f"{name or route}-NO-ROW")
            continue
        if isinstance(row, Api):
            for caller in API_CALLERS:
                for whose in (Whose.OWN, Whose.OTHER_FIRM) if row.target else (Whose.NONE,):
                    for method in row.methods:
                        yield pytest.param(
                            name,
                            route,
                            caller,
                            whose,
                            method,
                            id=f"{name}-{caller}-{whose}-{method}",
                        )
            continue
        for who in WHO:
            for whose in whose_for(row, who):
                for method in methods_for(row):
                    yield pytest.param(
                        name, route, who, whose, method, id=f"{name}-{who}-{whose}-{method}"
                    )


def reverse_route(name: str) -> str:
    """A route's address by name; the API's routes are named within its namespace."""
    try:
        return reverse(name)
    except NoReverseMatch:
        return reverse(f"api:{name}")


def address(world: World, name: str, row: Row, who: str, whose: Whose) -> tuple[str, Target]:
    if isinstance(row, Public):
        if row.target is None:
            return reverse_route(name), Target()
        if whose is Whose.FORGED:
            return reverse(name, kwargs=dict(FORGED[row.target])), Target()
        found = PUBLIC_TARGETS[row.target](world.own)
        return reverse(name, kwargs=dict(found.kwargs)), found
    if row.target is None:
        return reverse(name), Target()
    office, role = world.own, (Role.ADMIN if who == NOBODY else who)
    if whose is Whose.OTHER_FIRM:
        office = world.other
    elif whose is Whose.COLLEAGUE:
        role = COLLEAGUE_OF[role]
    found = TARGETS[row.target](office, office.members[role])
    return reverse(name, kwargs=dict(found.kwargs)), found


def body_of(response: Any) -> bytes:
    if getattr(response, "streaming", False):
        return b"".join(response.streaming_content)
    return bytes(response.content)


@pytest.fixture
def providers_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    """Webhooks are configured, so that only a missing signature can refuse them."""
    monkeypatch.setenv("CASEWATCH_WHATSAPP_APP_SECRET", "app-secret")
    monkeypatch.setenv("CASEWATCH_WHATSAPP_VERIFY_TOKEN", "verify-token")
    monkeypatch.setenv("CASEWATCH_WHATSAPP_ACCESS_TOKEN", "access-token")
    monkeypatch.setenv("CASEWATCH_WHATSAPP_PHONE_NUMBER_ID", "123")
    monkeypatch.setenv("CASEWATCH_TWILIO_ACCOUNT_SID", "AC" + "0" * 32)
    monkeypatch.setenv("CASEWATCH_TWILIO_AUTH_TOKEN", "auth-token")
    monkeypatch.setenv("CASEWATCH_TWILIO_FROM", "+15550100100")


@pytest.mark.parametrize(("name", "route", "who", "whose", "method"), list(matrix()))
def test_the_answer_is_the_one_allowed(
    world: World,
    providers_configured: None,
    name: str,
    route: str,
    who: str,
    whose: Whose,
    method: str,
) -> None:
    row = ROUTES.get(name)
    if row is None:
        pytest.fail(
            f"route {route!r} (name {name!r}) has no row in ROUTES in {__file__}: add one "
            f"saying which action it needs to look and to change, so that it is in the matrix"
        )
    if isinstance(row, Api):
        call_the_api(world, name, row, who, whose, method)
        return
    browser = Browser() if who == NOBODY else signed_in(world.own.members[who])
    url, target = address(world, name, row, who, whose)
    if method == GET:
        response = browser.get(url)
    else:
        form = row.form if isinstance(row, Public) else {}
        response = browser.post(url, {**form, **target.data})
    want = expected(row, who, whose, method)
    assert response.status_code == want, (
        f"{method} {url} as {who} ({whose}): {response.status_code}, expected {want}"
        + body_of(response).decode("utf-8", "replace")[-1500:]
    )
    if isinstance(row, Staff) and who == NOBODY:
        assert response["Location"].startswith(LOGIN), response["Location"]
    if isinstance(row, Staff) and who != NOBODY:
        shown = body_of(response).decode("utf-8", "replace")
        for secret in (*OTHER_FIRMS_DATA, OTHER_RECEIPT):
            assert secret not in shown, f"{method} {url} as {who} shows {secret!r}"


def call_the_api(world: World, name: str, row: Api, caller: str, whose: Whose, method: str) -> None:
    """One API request with the caller's token of the own firm, naming whose object."""
    office = world.other if whose is Whose.OTHER_FIRM else world.own
    # The path names the object as `<target>_id`: case_id, client_id, notification_id.
    kwargs = {f"{row.target}_id": getattr(office, row.target).pk} if row.target else {}
    headers = {}
    if caller != NO_TOKEN:
        headers["Authorization"] = f"Bearer {world.own.api_tokens[caller]}"
    response = Browser().generic(
        method,
        reverse(f"api:{name}", kwargs=kwargs),
        json.dumps(dict(row.body)) if method != GET else "",
        content_type="application/json",
        headers=headers,
    )
    want = expected_from_api(row, caller, whose, method)
    shown = body_of(response).decode("utf-8", "replace")
    assert response.status_code == want, f"{method} {name} with {caller} ({whose}): {shown[-800:]}"
    if want >= 400:
        assert response["Content-Type"] == "application/problem+json"
    for secret in (*OTHER_FIRMS_DATA, OTHER_RECEIPT):
        assert secret not in shown, f"{method} {name} with {caller} shows {secret!r}"


def nowhere(target: Target) -> Target:
    """The same address naming an object that does not exist."""
    missing = {"pk": 10**9, "token": "Z" * 32, "firm": 10**9}
    return Target(
        {key: missing[key] for key in target.kwargs}, {key: missing[key] for key in target.data}
    )


def object_routes() -> Iterator[Any]:
    for name, _route in routes():
        row = ROUTES.get(name)
        if isinstance(row, Staff) and row.target is not None:
            for who in ROLES:
                for method in (GET, POST):
                    yield pytest.param(name, who, method, id=f"{name}-{who}-{method}")


@pytest.mark.parametrize(("name", "who", "method"), list(object_routes()))
def test_another_firms_object_is_answered_as_one_that_does_not_exist(
    world: World, name: str, who: str, method: str
) -> None:
    """Whatever the role, the answer says nothing about whether the object exists."""
    row = ROUTES[name]
    assert isinstance(row, Staff) and row.target is not None
    theirs = TARGETS[row.target](world.other, world.other.members[who])
    answers = []
    for target in (theirs, nowhere(theirs)):
        browser = signed_in(world.own.members[who])
        url = reverse(name, kwargs=dict(target.kwargs))
        sent = browser.get(url) if method == GET else browser.post(url, dict(target.data))
        answers.append(sent.status_code)
    assert answers[0] == answers[1], f"{method} {name} as {who}: {answers} (theirs, missing)"


def test_every_row_names_a_route_that_exists() -> None:
    """A row for a route that was removed or renamed is a route no longer tested."""
    assert set(ROUTES) - {name for name, _route in routes()} == set()


def test_front_desk_changes_nothing_but_their_own_settings() -> None:
    """Read from the rows, not the views: any change a front desk member may POST is personal."""
    for name, row in ROUTES.items():
        if isinstance(row, Staff) and row.change is not None:
            for role in READ_ONLY_ROLES:
                assert not may(role, row.change) or row.change in PERSONAL, name


def test_the_matrix_covers_every_role_and_both_firms() -> None:
    ids = [p.id for p in matrix()]
    assert all(any(f"-{who}-" in i for i in ids) for who in WHO)
    assert any("-other-firm-" in i for i in ids) and any("-colleague-" in i for i in ids)


def test_the_world_is_what_the_rows_assume(world: World) -> None:
    """Both firms hold one of everything a row names; beta's data is where it should be."""
    assert json.dumps(world.other.client.personal).count("Beto") == 1
    assert world.other.case.receipt_number == OTHER_RECEIPT
    for office in (world.own, world.other):
        assert set(office.members) == set(ROLES)
