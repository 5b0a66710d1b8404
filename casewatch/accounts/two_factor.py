"""Two-factor sign-in: a TOTP authenticator app, and one-time recovery codes.

django-otp keeps the devices (a `TOTPDevice` for the app, a `StaticDevice` holding the
recovery codes) and marks a session verified (`django_otp.login`). This module says
who needs what, and records every change and every wrong code in the audit chain,
naming people by id only. Admins must use two-factor sign-in; anyone else may.
"""

from __future__ import annotations

import enum
import re

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import transaction
from django.http import HttpRequest
from django_otp import login as otp_login
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from casewatch.accounts.models import Membership, Role
from casewatch.accounts.signals import record_for_user, remote_address

RECOVERY_CODE_COUNT = 10
# The device names django-otp stores; a person has at most one of each.
APP_DEVICE = "authenticator app"
RECOVERY_DEVICE = "recovery codes"
_NOT_CODE = re.compile(r"[\s-]+")


class Step(enum.Enum):
    """What a signed-in person must still do before any staff page opens."""

    ENTER_CODE = "enter_code"  # has an authenticator app; this session has not used it
    SET_UP = "set_up"  # an admin without one


class AdminsKeepTwoFactor(Exception):
    """An admin tried to turn two-factor sign-in off."""


def must_use_two_factor(user_pk: int) -> bool:
    """Admins must: they can change every setting and see every client of their firm."""
    admin: bool = Membership.objects.filter(user_id=user_pk, role=Role.ADMIN).exists()
    return admin


def app_device(user_pk: int, *, confirmed: bool = True) -> TOTPDevice | None:
    """The person's authenticator app (confirmed), or the one being set up (unconfirmed)."""
    return TOTPDevice.objects.filter(user_id=user_pk, confirmed=confirmed).order_by("pk").first()


def uses_two_factor(user_pk: int) -> bool:
    """Whether the person confirmed an authenticator app (and so is asked for its code)."""
    uses: bool = TOTPDevice.objects.filter(user_id=user_pk, confirmed=True).exists()
    return uses


_STEP_CACHE = "_casewatch_two_factor_step"


def step_needed(request: HttpRequest) -> Step | None:
    """What this signed-in session must still do, or None; read once per request."""
    if hasattr(request, _STEP_CACHE):
        cached: Step | None = getattr(request, _STEP_CACHE)
        return cached
    user = request.user
    step: Step | None = None
    if user.is_authenticated and not _verified(request):
        if uses_two_factor(user.pk):
            step = Step.ENTER_CODE
        elif must_use_two_factor(user.pk):
            step = Step.SET_UP
    setattr(request, _STEP_CACHE, step)
    return step


def forget_step(request: HttpRequest) -> None:
    if hasattr(request, _STEP_CACHE):
        delattr(request, _STEP_CACHE)


def _verified(request: HttpRequest) -> bool:
    is_verified = getattr(request.user, "is_verified", None)
    return bool(is_verified()) if callable(is_verified) else False


def start_set_up(user: AbstractBaseUser) -> TOTPDevice:
    """The unconfirmed app device being set up: the same secret until it is confirmed."""
    device = app_device(user.pk, confirmed=False)
    if device is None:
        device = TOTPDevice.objects.create(user=user, name=APP_DEVICE, confirmed=False)
    return device


def finish_set_up(request: HttpRequest, device: TOTPDevice, code: str) -> list[str] | None:
    """Confirm the app with a code it shows; the new recovery codes, or None if wrong.

    The session counts as verified from here on: the person just proved they hold the app.
    """
    if device.confirmed or not device.verify_token(_digits(code)):
        return None
    with transaction.atomic():
        TOTPDevice.objects.filter(user_id=device.user_id).exclude(pk=device.pk).delete()
        device.confirmed = True
        device.save(update_fields=["confirmed"])
        codes = _new_recovery_codes(device.user)
        record_for_user(
            "account.two_factor_set_up",
            device.user_id,
            {"remote_addr": remote_address(request), "recovery_codes": len(codes)},
        )
    otp_login(request, device)
    forget_step(request)
    return codes


def new_recovery_codes(request: HttpRequest, user: AbstractBaseUser) -> list[str]:
    """Replace the recovery codes; the old ones stop working at once."""
    with transaction.atomic():
        codes = _new_recovery_codes(user)
        record_for_user(
            "account.recovery_codes_regenerated",
            user.pk,
            {"remote_addr": remote_address(request), "recovery_codes": len(codes)},
        )
    return codes


def _new_recovery_codes(user: AbstractBaseUser) -> list[str]:
    device, _ = StaticDevice.objects.get_or_create(
        user=user, name=RECOVERY_DEVICE, defaults={"confirmed": True}
    )
    device.token_set.all().delete()
    codes = [StaticToken.random_token() for _ in range(RECOVERY_CODE_COUNT)]
    StaticToken.objects.bulk_create(StaticToken(device=device, token=c) for c in codes)
    return [shown(code) for code in codes]


def shown(code: str) -> str:
    """A recovery code as shown to people: two groups of four, easier to copy."""
    return f"{code[:4]}-{code[4:]}"


def recovery_codes_left(user_pk: int) -> int:
    left: int = StaticToken.objects.filter(device__user_id=user_pk).count()
    return left


def turn_off(request: HttpRequest, user: AbstractBaseUser) -> None:
    """Remove the app and the recovery codes; refused for an admin."""
    if must_use_two_factor(user.pk):
        raise AdminsKeepTwoFactor
    with transaction.atomic():
        TOTPDevice.objects.filter(user_id=user.pk).delete()
        StaticDevice.objects.filter(user_id=user.pk).delete()
        record_for_user("account.two_factor_turned_off", user.pk, _where(request))
    forget_step(request)


def check_code(request: HttpRequest, code: str) -> bool:
    """The second sign-in step: a code from the app, or one of the recovery codes.

    A recovery code works once. A wrong code is recorded; django-otp makes each wrong
    code wait longer before the next one is even checked.
    """
    user = request.user
    if isinstance(user, AnonymousUser):
        return False
    app = app_device(user.pk)
    digits = _digits(code)
    if app is not None and digits.isdigit() and app.verify_token(digits):
        otp_login(request, app)
        forget_step(request)
        return True
    recovery = StaticDevice.objects.filter(user_id=user.pk, name=RECOVERY_DEVICE).first()
    typed = _NOT_CODE.sub("", code).lower()
    if recovery is not None and typed and not typed.isdigit() and recovery.verify_token(typed):
        otp_login(request, recovery)
        forget_step(request)
        record_for_user(
            "account.recovery_code_used",
            user.pk,
            {**_where(request), "recovery_codes_left": recovery_codes_left(user.pk)},
        )
        return True
    record_for_user("account.two_factor_failed", user.pk, _where(request))
    return False


def _digits(code: str) -> str:
    return _NOT_CODE.sub("", code)


def _where(request: HttpRequest) -> dict[str, str | None]:
    return {"remote_addr": remote_address(request)}
