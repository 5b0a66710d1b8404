"""Per-request rules of the staff app: sessions end when unused; each member's language."""

from __future__ import annotations

import time
from collections.abc import Callable

from django.conf import settings
from django.contrib.auth import SESSION_KEY
from django.http import HttpRequest, HttpResponse
from django.utils import translation

from casewatch.web.access import membership_of

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
