"""The gate every staff page passes: logged in, a member of a firm, allowed by role.

A view says which action it performs when it only looks (GET, HEAD) and which when it
changes something (any other method); `casewatch.accounts.permissions` says which
roles may. A view receives the member's `Membership` and finds objects only within
`membership.firm`, so another firm's object is a 404, never a 403.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import update_wrapper
from typing import Concatenate, ParamSpec

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed

from casewatch.accounts.models import Membership
from casewatch.accounts.permissions import READS, Action, may
from casewatch.accounts.two_factor import Step, step_needed

P = ParamSpec("P")
StaffView = Callable[Concatenate[HttpRequest, Membership, P], HttpResponse]
View = Callable[Concatenate[HttpRequest, P], HttpResponse]

SAFE_METHODS = ("GET", "HEAD")
_CACHE = "_casewatch_membership"
_ALL = "_casewatch_memberships"
# The firm a member of several firms chose in the header (its pk), kept in the session.
ACTIVE_FIRM = "casewatch_firm"


def memberships_of(request: HttpRequest) -> list[Membership]:
    """Every firm the signed-in user belongs to, oldest membership first; read once."""
    if hasattr(request, _ALL):
        cached: list[Membership] = getattr(request, _ALL)
        return cached
    memberships: list[Membership] = []
    if request.user.is_authenticated:
        memberships = list(
            Membership.objects.filter(user_id=request.user.pk)
            .select_related("firm", "user")
            .order_by("pk")
        )
    setattr(request, _ALL, memberships)
    return memberships


def membership_of(request: HttpRequest) -> Membership | None:
    """The signed-in user's place in the firm they work in now, read once per request.

    That is the firm chosen in the header (ACTIVE_FIRM in the session) while the user
    still belongs to it, else their first firm.
    """
    if hasattr(request, _CACHE):
        cached: Membership | None = getattr(request, _CACHE)
        return cached
    memberships = memberships_of(request)
    session = getattr(request, "session", None)
    chosen = session.get(ACTIVE_FIRM) if memberships and session is not None else None
    membership = next((m for m in memberships if m.firm_id == chosen), None)
    if membership is None and memberships:
        membership = memberships[0]
    setattr(request, _CACHE, membership)
    return membership


def forget_membership(request: HttpRequest) -> None:
    """Read the member's firm afresh (after a switch, or a change to their settings)."""
    for name in (_CACHE, _ALL):
        if hasattr(request, name):
            delattr(request, name)


def staff_view(
    action: Action, *, change: Action | None = None, during_sign_in: bool = False
) -> Callable[[StaffView[P]], View[P]]:
    """Let a request through only for a member whose role allows what it is doing.

    `action` is needed to look; `change` to send anything but GET or HEAD (no
    `change`: such a request is refused with 405). A session that has not finished
    two-factor sign-in is sent to finish it first (its code, or an admin's set-up);
    only the set-up page itself is `during_sign_in`.
    """
    if change is not None and change in READS:
        raise ValueError(f"{change} only looks; it cannot allow a change")

    def decorate(view: StaffView[P]) -> View[P]:
        def gate(request: HttpRequest, /, *args: P.args, **kwargs: P.kwargs) -> HttpResponse:
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path(), settings.LOGIN_URL)
            step = step_needed(request)
            if step is not None and not (during_sign_in and step is Step.SET_UP):
                return redirect_to_step(request, step)
            membership = membership_of(request)
            if membership is None:
                raise Http404("no firm")
            if request.method in SAFE_METHODS:
                needed = action
            elif change is None:
                return HttpResponseNotAllowed(SAFE_METHODS)
            else:
                needed = change
            if not may(membership.role, needed):
                raise PermissionDenied(needed.value)
            return view(request, membership, *args, **kwargs)

        update_wrapper(gate, view)
        gate.staff_action = action  # type: ignore[attr-defined]
        gate.staff_change = change  # type: ignore[attr-defined]
        return gate

    return decorate


# Where each unfinished sign-in step is done (casewatch.web.two_factor).
STEP_PAGES = {Step.ENTER_CODE: "two-factor-code", Step.SET_UP: "two-factor-set-up"}


def redirect_to_step(request: HttpRequest, step: Step) -> HttpResponse:
    """To the page that finishes sign-in, and back here afterwards."""
    return redirect_to_login(request.get_full_path(), STEP_PAGES[step])


def absolute_url(request: HttpRequest, path: str) -> str:
    """A link for an e-mail: under CASEWATCH_PUBLIC_URL when set, else where the request came."""
    base: str | None = settings.CASEWATCH_PUBLIC_URL
    if base:
        return base + path
    return request.build_absolute_uri(path)
