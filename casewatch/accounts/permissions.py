"""Who may do what, as data: the one place where a role turns into a yes or a no.

Views name the action they perform (casewatch.web.access.staff_view); nothing else
looks at a role to decide. Front desk may look at everything and change nothing but
their own preferences.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

from casewatch.accounts.models import Role


class Action(StrEnum):
    VIEW_CASES = "view_cases"
    CHANGE_CASES = "change_cases"
    MANAGE_TEAM = "manage_team"
    VIEW_AUDIT = "view_audit"
    # A secret calendar link that copies deadlines into an outside calendar.
    CALENDAR_FEED = "calendar_feed"
    # Asking USCIS about any receipts now: spends the firm's daily USCIS budget.
    CHECK_STATUS = "check_status"
    # Acknowledging a change of status, assigning it to someone, commenting on it.
    FOLLOW_UP_CHANGES = "follow_up_changes"
    # A person's own settings (their language): not the firm's data.
    OWN_SETTINGS = "own_settings"
    # The firm's notifications and how each was delivered (no client addresses in the list).
    VIEW_OUTBOX = "view_outbox"
    # Recording a client's consent on a channel, given or withdrawn, and their channels' order.
    MANAGE_CONSENT = "manage_consent"
    # Creating and revoking a client's private portal link.
    ISSUE_PORTAL_LINK = "issue_portal_link"
    # A member's own in-app notifications: opening one marks it read.
    OWN_INBOX = "own_inbox"
    # The firm's messaging settings: quiet hours, escalation, follow-ups, routing rules.
    MANAGE_MESSAGING = "manage_messaging"
    # Reading who looked at which case page or client's personal data (the access log).
    VIEW_ACCESS_LOG = "view_access_log"
    # Issuing and revoking the firm's REST API tokens: a token reads (or changes) every case.
    MANAGE_API_TOKENS = "manage_api_tokens"


EVERYONE = frozenset(Role)
CASE_WORKERS = frozenset({Role.ADMIN, Role.ATTORNEY, Role.PARALEGAL, Role.OPERATIONS})

ALLOWED: Mapping[Action, frozenset[Role]] = {
    Action.VIEW_CASES: EVERYONE,
    Action.CHANGE_CASES: CASE_WORKERS,
    Action.MANAGE_TEAM: frozenset({Role.ADMIN}),
    Action.VIEW_AUDIT: frozenset({Role.ADMIN, Role.ATTORNEY}),
    Action.CALENDAR_FEED: CASE_WORKERS,
    Action.CHECK_STATUS: CASE_WORKERS,
    Action.FOLLOW_UP_CHANGES: CASE_WORKERS,
    Action.OWN_SETTINGS: EVERYONE,
    Action.VIEW_OUTBOX: EVERYONE,
    Action.MANAGE_CONSENT: CASE_WORKERS,
    Action.ISSUE_PORTAL_LINK: CASE_WORKERS,
    Action.OWN_INBOX: EVERYONE,
    Action.MANAGE_MESSAGING: frozenset({Role.ADMIN}),
    Action.VIEW_ACCESS_LOG: frozenset({Role.ADMIN}),
    Action.MANAGE_API_TOKENS: frozenset({Role.ADMIN}),
}

# Actions that only look; a request that changes something may never be allowed by one.
READS = frozenset({Action.VIEW_CASES, Action.VIEW_OUTBOX})
# Actions that change nothing of the firm's; the only changes a read-only role may make.
PERSONAL = frozenset({Action.OWN_SETTINGS, Action.OWN_INBOX})
READ_ONLY_ROLES = frozenset({Role.FRONT_DESK})


def may(role: str, action: Action) -> bool:
    """Whether a member with this role may perform this action."""
    return role in ALLOWED[action]


def _check_read_only_roles() -> None:
    """Refuse at import a table that would let a read-only role change firm data."""
    for action, roles in ALLOWED.items():
        if action in READS or action in PERSONAL:
            continue
        if roles & READ_ONLY_ROLES:
            raise AssertionError(f"{action} must not be granted to a read-only role")


_check_read_only_roles()
