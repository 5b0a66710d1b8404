"""Loaded by pytest before Django reads its settings (`-p tests.environment` in pyproject).

Tests never write into a developer's ./var, and never reach a real USCIS account.
"""

import atexit
import os
import shutil
import tempfile
from typing import Any

# A fresh data folder for each test process, never one set in the shell: with xdist
# each worker holds its own uploads, keys and kept mail, as it holds its own database.
_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "main")
os.environ["CASEWATCH_DATA_DIR"] = tempfile.mkdtemp(prefix=f"casewatch-test-{_WORKER}-")
atexit.register(shutil.rmtree, os.environ["CASEWATCH_DATA_DIR"], True)
for _name in list(os.environ):
    if _name.startswith("CASEWATCH_USCIS_"):
        del os.environ[_name]


def totp_code(device: Any) -> str:
    """The code an authenticator app holding `device`'s key shows now.

    A code is good once: if this person already signed in with this 30-second code (one
    test signing them in twice), the next one is used, as the app would show a moment
    later; a third sign-in in the same half-minute starts the device's count afresh.
    """
    import time

    from django_otp.oath import TOTP

    device.refresh_from_db()
    now = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    now.time = time.time()
    later = device.last_t + 1 - now.t()
    if later > device.tolerance:
        type(device).objects.filter(pk=device.pk).update(last_t=-1)
        later = 0
    code = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    code.time = time.time() + max(later, 0) * device.step
    return f"{code.token():0{device.digits}d}"


def authenticator_app(user: Any) -> Any:
    """The person's confirmed authenticator app, set up for them if they have none."""
    from django_otp.plugins.otp_totp.models import TOTPDevice

    from casewatch.accounts.two_factor import APP_DEVICE

    device = TOTPDevice.objects.filter(user_id=user.pk, confirmed=True).first()
    return device or TOTPDevice.objects.create(user=user, name=APP_DEVICE, confirmed=True)


def sign_in(client: Any, user: Any) -> None:
    """Log `user` in on the test client and finish two-factor sign-in as they would.

    Admins (who must use two-factor sign-in) get an authenticator app if they have none;
    anyone with one types its current code on the code page. Others are simply logged in.
    """
    from casewatch.accounts.two_factor import must_use_two_factor, uses_two_factor

    client.force_login(user)
    if not (uses_two_factor(user.pk) or must_use_two_factor(user.pk)):
        return
    device = authenticator_app(user)
    answer = client.post("/login/code/", {"code": totp_code(device)})
    assert answer.status_code == 302, f"two-factor sign-in refused: {answer.status_code}"


def log_in(client: Any, username: str, password: str) -> Any:
    """The login form filled in as a person would, then their app's code when asked.

    Admins get an authenticator app first if they have none. Returns the last page,
    redirects followed.
    """
    from urllib.parse import parse_qs, urlsplit

    from django.contrib.auth import get_user_model

    from casewatch.accounts.two_factor import must_use_two_factor, uses_two_factor

    user = get_user_model().objects.filter(username=username.strip()).first()
    if user is not None and (uses_two_factor(user.pk) or must_use_two_factor(user.pk)):
        authenticator_app(user)
    page = client.post("/login/", {"username": username, "password": password}, follow=True)
    chain = page.redirect_chain
    if user is None or not chain or not chain[-1][0].startswith("/login/code/"):
        return page
    target = parse_qs(urlsplit(chain[-1][0]).query).get("next", ["/"])[0]
    code = totp_code(authenticator_app(user))
    return client.post("/login/code/", {"code": code, "next": target}, follow=True)
