"""Values every page needs: whether what it shows comes from a sandbox, and who is looking."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest

from casewatch.accounts.permissions import Action, may
from casewatch.accounts.two_factor import step_needed
from casewatch.config import USCIS_SANDBOX_BASE_URL, ConfigError, uscis_settings
from casewatch.web.access import membership_of, memberships_of


def reads_sandbox() -> bool:
    """True when casewatch's own sandbox or USCIS's sandbox answers, not production USCIS."""
    try:
        settings = uscis_settings()
    except ConfigError:
        return True
    base = (settings.base_url or "").rstrip("/")
    return settings.uses_builtin_sandbox or base == USCIS_SANDBOX_BASE_URL


def sandbox_notice(request: HttpRequest) -> dict[str, bool]:
    from casewatch.cases.models import Case

    sandbox = reads_sandbox()
    if not sandbox and request.user.is_authenticated:
        sandbox = Case.objects.filter(source="sandbox").exists()
    return {"sandbox_mode": sandbox}


def staff(request: HttpRequest) -> dict[str, Any]:
    """The member looking at the page, and which parts of the header are theirs to use.

    Languages are listed under their own names, untranslated, so anyone finds theirs.
    The firm switcher shows only for a member of several firms; a signed-in user without
    an e-mail address (the first admin `casewatch up` made) is asked to add one, since
    a forgotten password can only be reset by e-mail. While a sign-in still owes its
    second step (a code, or setting up an app), the header offers only logging out and
    the languages: every other page would send the person back.
    """
    signed_in = request.user.is_authenticated
    # Signed in but owing the second step: the app's pages only lead back to it.
    second_step = signed_in and step_needed(request) is not None
    membership = membership_of(request) if signed_in else None
    firms = memberships_of(request) if membership is not None else []
    return {
        "second_step": second_step,
        "firm_choices": firms if len(firms) > 1 else [],
        "needs_email": membership is not None
        and not second_step
        and not getattr(request.user, "email", ""),
        "language_choices": settings.LANGUAGES,
        "membership": membership,
        "may_manage_team": membership is not None and may(membership.role, Action.MANAGE_TEAM),
        "may_add_cases": membership is not None and may(membership.role, Action.CHANGE_CASES),
        "may_check_status": membership is not None and may(membership.role, Action.CHECK_STATUS),
        "may_manage_messaging": membership is not None
        and may(membership.role, Action.MANAGE_MESSAGING),
        # A callable: the template asks (one query) only when it renders the header.
        "quiet_hours_notice": lambda: (
            membership is not None
            and _url_name(request) in QUIET_HOURS_PAGES
            and quiet_hours_off(membership.firm_id)
        ),
    }


# Pages that say so when the firm turned quiet hours off: where messages are seen going out.
QUIET_HOURS_PAGES = frozenset({"home", "outbox"})


def _url_name(request: HttpRequest) -> str:
    match = getattr(request, "resolver_match", None)
    return str(match.url_name or "") if match is not None else ""


def quiet_hours_off(firm_id: int) -> bool:
    """Whether the firm turned quiet hours off: its clients may be messaged at any hour."""
    from casewatch.notify.models import MessagingPolicy

    return MessagingPolicy.objects.filter(firm_id=firm_id, quiet_hours=False).exists()
