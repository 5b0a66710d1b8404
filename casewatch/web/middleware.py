"""Per-request rules of the staff app: sessions end when unused; each member's language
and time zone; an expired session seen by htmx sends the whole page to the login."""

from __future__ import annotations

import time
from collections.abc import Callable

from django.conf import settings
from django.contrib.auth import SESSION_KEY
from django.http import HttpRequest, HttpResponse
from django.shortcuts import resolve_url
from django.utils import timezone, translation
from django_htmx.http import HttpResponseClientRedirect

from casewatch.web.access import STEP_PAGES, membership_of
from casewatch.web.time_zones import member_zone

Handler = Callable[[HttpRequest], HttpResponse]

# How often a used session's expiry is pushed back: at most one session write a minute.
KEEP_ALIVE_SECONDS = 60
SEEN_KEY = "casewatch_seen"
SUPPORTED = frozenset(code for code, _name in settings.LANGUAGES)


def idle_sessions(get_response: Handler) -> Handler:
    """A staff session ends SESSION_COOKIE_AGE after it was last used, not after login.

    Django's SESSION_SAVE_EVERY_REQUEST would do the same with a database write on every
    page view; here the session is touched (and its expiry renewed) once a minute at most.
    """

    def middleware(request: HttpRequest) -> HttpResponse:
        session = request.session
        if SESSION_KEY in session:
            now = int(time.time())
            if now - int(session.get(SEEN_KEY, 0)) >= KEEP_ALIVE_SECONDS:
                session[SEEN_KEY] = now
        return get_response(request)

    return middleware


def member_language(get_response: Handler) -> Handler:
    """Speak the language a member chose, on every page; without a choice, the browser's.

    Runs after Django's LocaleMiddleware (which reads the cookie and Accept-Language)
    and after authentication, and overrides its choice for a member who made one.
    """

    def middleware(request: HttpRequest) -> HttpResponse:
        membership = membership_of(request) if request.user.is_authenticated else None
        if membership is not None and membership.language in SUPPORTED:
            translation.activate(membership.language)
            request.LANGUAGE_CODE = membership.language
        return get_response(request)

    return middleware


def member_time_zone(get_response: Handler) -> Handler:
    """Show every date and time in the member's zone (their own, else their firm's).

    Runs after authentication. Django converts aware datetimes to the active zone when a
    template shows them, and `timezone.localdate()` ("today", "overdue") follows it too.
    The zone is let go after the response, so that the next request on this thread (an
    anonymous one) is back on UTC.
    """

    def middleware(request: HttpRequest) -> HttpResponse:
        membership = membership_of(request) if request.user.is_authenticated else None
        if membership is None:
            return get_response(request)
        timezone.activate(member_zone(membership))
        try:
            return get_response(request)
        finally:
            timezone.deactivate()

    return middleware


def sign_in_pages() -> tuple[str, ...]:
    """The login form and the two-factor steps after it."""
    return (
        resolve_url(settings.LOGIN_URL),
        *(resolve_url(name) for name in STEP_PAGES.values()),
    )


def htmx_login(get_response: Handler) -> Handler:
    """A live part of a page asked for after the session ended (or before sign-in was
    finished): reload the whole page on the login form or the two-factor step rather
    than put that form inside the part."""

    def middleware(request: HttpRequest) -> HttpResponse:
        response = get_response(request)
        if (
            getattr(request, "htmx", False)
            and response.status_code == 302
            and response.get("Location", "").startswith(sign_in_pages())
        ):
            return HttpResponseClientRedirect(response["Location"])
        return response

    return middleware
