"""Bearer-token authentication: the token names the firm, its scope what it may do.

Checked in this order, so that a refusal tells no more than it must: a live token
(else 401), the rate limit (429 with Retry-After), the scope (a read token sending
anything but GET or HEAD: 403). No session and no CSRF: the token is the credential.
"""

from __future__ import annotations

from django.http import HttpRequest
from ninja.security import HttpBearer

from casewatch.accounts.api_tokens import find_token, note_use
from casewatch.accounts.models import ApiToken, Scope
from casewatch.api.limits import seconds_to_wait
from casewatch.api.problems import Problem

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class TokenAuth(HttpBearer):
    def authenticate(self, request: HttpRequest, token: str) -> ApiToken | None:
        found = find_token(token.strip())
        if found is None:
            return None
        wait = seconds_to_wait(found)
        if wait is not None:
            raise Problem(
                429,
                f"This token made more requests this minute than allowed; retry in {wait} s.",
                headers={"Retry-After": str(wait)},
            )
        note_use(found, method=request.method or "", path=request.path)
        if request.method not in SAFE_METHODS and found.scope != Scope.WRITE:
            raise Problem(403, "A read token can only look; this needs a write token.")
        return found


def token_of(request: HttpRequest) -> ApiToken:
    """The token the request was authenticated with (set by ninja after TokenAuth)."""
    token = getattr(request, "auth", None)
    assert isinstance(token, ApiToken)
    return token


def may_see_clients(token: ApiToken) -> bool:
    """Clients' names, e-mails and phones (and case notes) only to write tokens, for now."""
    return token.scope == Scope.WRITE
