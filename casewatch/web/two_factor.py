"""Two-factor sign-in pages: the code after the password, setting up an authenticator
app, recovery codes, and turning it off (casewatch.accounts.two_factor does the work).

Pages that show a secret (the app's key, recovery codes) are never cached. The QR code
is an SVG drawn here on the server: the page needs no script, and the key never leaves
casewatch for a QR service.
"""

from __future__ import annotations

from base64 import b32encode

import segno
from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render, resolve_url
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.cache import never_cache
from django_otp.plugins.otp_totp.models import TOTPDevice

from casewatch.accounts import two_factor
from casewatch.accounts.models import Membership
from casewatch.accounts.permissions import Action
from casewatch.web.access import redirect_to_step, staff_view


class CodeForm(forms.Form):
    """One box for a 6-digit code from the app, or a recovery code."""

    code = forms.CharField(label=gettext_lazy("Code"), max_length=32)

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.fields["code"].widget.attrs.update(
            {"autocomplete": "one-time-code", "autofocus": True, "spellcheck": "false"}
        )


def _next(request: HttpRequest) -> str:
    """Where to go once signed in: the page first asked for, if it is one of ours."""
    target = request.POST.get("next") or request.GET.get("next") or ""
    if url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return resolve_url(settings.LOGIN_REDIRECT_URL)


@never_cache
def enter_code(request: HttpRequest) -> HttpResponse:
    """The second sign-in step: a code from the app (or a recovery code)."""
    if not request.user.is_authenticated:
        return redirect_to_login(_next(request), settings.LOGIN_URL)
    step = two_factor.step_needed(request)
    if step is two_factor.Step.SET_UP:
        return redirect_to_step(request, step)
    if step is None:
        return redirect(_next(request))
    form = CodeForm(request.POST if request.method == "POST" else None)
    if form.is_valid():
        if two_factor.check_code(request, form.cleaned_data["code"]):
            return redirect(_next(request))
        form.add_error(
            "code",
            _(
                "That code did not work. Use the newest code your app shows (check that your "
                "phone's clock is right), or one of your recovery codes. After several wrong "
                "codes, wait a few seconds before trying again."
            ),
        )
    context = {"form": form, "next": _next(request)}
    return render(
        request, "accounts/two_factor_code.html", context, status=400 if form.errors else 200
    )


class ConfirmForm(forms.Form):
    code = forms.CharField(label=gettext_lazy("The 6-digit code your app shows now"), max_length=16)

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.fields["code"].widget.attrs.update(
            {"autocomplete": "one-time-code", "inputmode": "numeric", "spellcheck": "false"}
        )


def qr_svg(text: str) -> SafeString:
    """The QR code of `text` as an inline SVG (segno writes only the SVG elements)."""
    code = segno.make(text, error="m")
    svg: str = code.svg_inline(
        scale=5, dark="#000", light="#fff", title=_("QR code for your authenticator app")
    )
    return mark_safe(svg)  # noqa: S308 - made here from our own text, no markup from outside


def spaced(secret: str) -> str:
    """The key in groups of four, as authenticator apps accept it typed by hand."""
    return " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))


@never_cache
@staff_view(Action.OWN_SETTINGS, change=Action.OWN_SETTINGS, during_sign_in=True)
def set_up(request: HttpRequest, membership: Membership) -> HttpResponse:
    """Connect an authenticator app: scan, confirm with a code, keep the recovery codes."""
    user = membership.user
    if two_factor.uses_two_factor(user.pk):
        return redirect(resolve_url("my-account") + "#two-factor")
    device = two_factor.start_set_up(user)
    form = ConfirmForm(request.POST if request.method == "POST" else None)
    if form.is_valid():
        codes = two_factor.finish_set_up(request, device, form.cleaned_data["code"])
        if codes is not None:
            return _recovery_codes_page(request, codes, first_time=True)
        form.add_error(
            "code",
            _(
                "That code did not match. Type the code the app shows now; if it changes "
                "while you type, use the new one."
            ),
        )
    return render(
        request,
        "accounts/two_factor_set_up.html",
        {
            "form": form,
            "required": two_factor.must_use_two_factor(user.pk),
            "qr": qr_svg(_config_url(device)),
            "secret": spaced(b32encode(device.bin_key).decode()),
            "next": _next(request),
        },
        status=400 if form.errors else 200,
    )


def _config_url(device: TOTPDevice) -> str:
    url: str = device.config_url
    return url


def _recovery_codes_page(
    request: HttpRequest, codes: list[str], *, first_time: bool, then: str | None = None
) -> HttpResponse:
    context = {"codes": codes, "first_time": first_time, "next": then or _next(request)}
    return render(request, "accounts/recovery_codes.html", context)


@never_cache
@staff_view(Action.OWN_SETTINGS, change=Action.OWN_SETTINGS)
def recovery_codes(request: HttpRequest, membership: Membership) -> HttpResponse:
    """New recovery codes (POST), shown once; the old ones stop working."""
    if request.method != "POST" or not two_factor.uses_two_factor(membership.user_id):
        return redirect(resolve_url("my-account") + "#two-factor")
    codes = two_factor.new_recovery_codes(request, membership.user)
    then = resolve_url("my-account") + "#two-factor"
    return _recovery_codes_page(request, codes, first_time=False, then=then)


@staff_view(Action.OWN_SETTINGS, change=Action.OWN_SETTINGS)
def turn_off(request: HttpRequest, membership: Membership) -> HttpResponse:
    """Stop asking for a code at sign-in (POST); admins cannot."""
    back = redirect(resolve_url("my-account") + "#two-factor")
    if request.method != "POST":
        return back
    try:
        two_factor.turn_off(request, membership.user)
    except two_factor.AdminsKeepTwoFactor:
        messages.error(request, _("Admins must use two-factor sign-in; it stays on."))
        return back
    messages.success(request, _("Two-factor sign-in is off. Only your password is asked for."))
    return back
