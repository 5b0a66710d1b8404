"""`casewatch unlock LOGIN`: let a locked-out login try again now, and (with
--two-factor) let someone who lost their phone and their recovery codes set up again.

For whoever runs casewatch, not for the web: it needs the data directory. Both are
recorded in the audit chain under the keyed hash of the login, never the login itself.
"""

from __future__ import annotations

import argparse
from typing import Any

from casewatch.cli.bootstrap import prepare_django
from casewatch.config import ConfigError

ACTOR = "cli:unlock"


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "unlock",
        help="let a locked-out login in again; optionally reset its two-factor sign-in",
        description=(
            "Clear the failed logins that locked LOGIN out (too many wrong passwords), so "
            "it may try again at once. With --two-factor, also remove the person's "
            "authenticator app and recovery codes: at their next login an admin sets up "
            "a new app, anyone else signs in with the password alone."
        ),
    )
    parser.add_argument("login", help="the login as typed on the login page")
    parser.add_argument(
        "--two-factor",
        action="store_true",
        help="also remove the person's authenticator app and recovery codes",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    prepare_django()
    from axes.models import AccessAttempt
    from axes.utils import reset
    from django.contrib.auth import get_user_model
    from django.db import transaction
    from django.db.models import Sum
    from django_otp.plugins.otp_static.models import StaticDevice
    from django_otp.plugins.otp_totp.models import TOTPDevice

    from casewatch.accounts.signals import record_for_user, username_hash
    from casewatch.audit.chain import record
    from casewatch.web.lockout import normalized

    login = normalized(args.login)
    if not login:
        raise ConfigError("give the login to unlock")
    hashed = username_hash(login)
    with transaction.atomic():
        attempts = AccessAttempt.objects.filter(username=login)
        cleared = attempts.aggregate(failed=Sum("failures_since_start"))["failed"] or 0
        reset(username=login)
        record(
            "account.unlocked",
            object_type="login_attempt",
            object_id=hashed,
            actor=ACTOR,
            details={"username_hash": hashed, "failed_logins_cleared": cleared},
        )
    print(f"Unlocked: {cleared} failed login(s) cleared; the login may try again now.", flush=True)
    if not args.two_factor:
        return 0
    user = get_user_model().objects.filter(username__iexact=args.login.strip()).first()
    if user is None:
        raise ConfigError(f"no one logs in as {args.login.strip()!r}")
    with transaction.atomic():
        TOTPDevice.objects.filter(user_id=user.pk).delete()
        StaticDevice.objects.filter(user_id=user.pk).delete()
        record_for_user("account.two_factor_reset", user.pk, {"by": ACTOR})
    print(
        "Two-factor sign-in reset: an admin sets up a new authenticator app at next login.",
        flush=True,
    )
    return 0
