"""What django-axes asks of the app: how a login is named, and the page a locked-out
person sees (settings AXES_USERNAME_CALLABLE and AXES_LOCKOUT_CALLABLE); and the
backend that puts axes in front of every login from the web."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from axes.backends import AxesBackend
from axes.helpers import get_cool_off
from axes.models import AccessAttempt
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone


class LoginThrottle(AxesBackend):  # type: ignore[misc]
    """django-axes' backend, first in AUTHENTICATION_BACKENDS: refuses a locked-out login
    before any password is checked.

    A check made without a request is not a login from the web (Django's test client,
    a shell) and has no address to count failures against: axes would refuse it outright;
    here it passes on to the password check, uncounted.
    """

    def authenticate(
        self,
        request: HttpRequest | None,
        username: str | None = None,
        password: str | None = None,
        **kwargs: Any,
    ) -> None:
        if request is None:
            return None
        return super().authenticate(request, username, password, **kwargs)  # type: ignore[no-any-return]


def normalized(login: str) -> str:
    """A login as failures are counted: "Paula " and "paula" are one login."""
    return login.strip().casefold()


def login_name(request: HttpRequest, credentials: Mapping[str, Any] | None) -> str | None:
    """The login a failure counts against, from the form or from `authenticate()`."""
    typed = (credentials or {}).get("username")
    if typed is None and request is not None:
        typed = request.POST.get(getattr(settings, "AXES_USERNAME_FORM_FIELD", "username"))
    return normalized(typed) if isinstance(typed, str) else None


def retry_at(request: HttpRequest, credentials: Mapping[str, Any] | None) -> datetime:
    """When this login from this address may try again: the last failure plus the cool-off."""
    cool_off = get_cool_off(request) or settings.AXES_COOLOFF_TIME
    last = (
        AccessAttempt.objects.filter(
            username=login_name(request, credentials),
            ip_address=getattr(request, "axes_ip_address", None),
        )
        .order_by("-attempt_time")
        .values_list("attempt_time", flat=True)
        .first()
    )
    return (last or timezone.now()) + cool_off


def locked_out(
    request: HttpRequest,
    original_response: HttpResponse | None = None,
    credentials: Mapping[str, Any] | None = None,
) -> HttpResponse:
    """Say what happened and when to try again, in the visitor's language (429)."""
    context = {
        "retry_at": retry_at(request, credentials),
        "failure_limit": settings.AXES_FAILURE_LIMIT,
    }
    return render(request, "registration/locked_out.html", context, status=429)
