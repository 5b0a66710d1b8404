"""Getting in and feeling at home: log in, accept an invitation, reset a password, language."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login as auth_login
from django.contrib.auth import views as auth_views
from django.contrib.auth.views import redirect_to_login
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.urls import reverse, reverse_lazy
from django.utils import translation
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST

from casewatch.accounts import team
from casewatch.accounts.models import Membership
from casewatch.accounts.permissions import Action, may
from casewatch.accounts.signals import record_for_user
from casewatch.accounts.two_factor import step_needed
from casewatch.web.access import STEP_PAGES, absolute_url, membership_of
from casewatch.web.forms import AcceptInvitationForm
from casewatch.web.middleware import SUPPORTED

# What a person who opened a bad invitation link is told, by reason.
LINK_PROBLEMS = {
    "forged": (
        400,
        gettext_lazy(
            "This invitation link is not valid. Copy the whole link from the e-mail, "
            "or ask your firm's admin for a new invitation."
        ),
    ),
    "expired": (
        410,
        gettext_lazy("This invitation has expired. Ask your firm's admin for a new one."),
    ),
    "used": (
        410,
        gettext_lazy("This invitation was used already. Log in with your e-mail address."),
    ),
    "withdrawn": (
        410,
        gettext_lazy(
            "This invitation was withdrawn or replaced by a newer one. "
            "Use the latest e-mail, or ask your firm's admin."
        ),
    ),
}


def remember_language(response: HttpResponse, code: str) -> None:
    """Keep the choice in Django's language cookie too, so the login page speaks it."""
    response.set_cookie(
        settings.LANGUAGE_COOKIE_NAME,
        code,
        max_age=settings.LANGUAGE_COOKIE_AGE,
        path=settings.LANGUAGE_COOKIE_PATH,
        domain=settings.LANGUAGE_COOKIE_DOMAIN,
        secure=settings.LANGUAGE_COOKIE_SECURE,
        httponly=settings.LANGUAGE_COOKIE_HTTPONLY,
        samesite=settings.LANGUAGE_COOKIE_SAMESITE,
    )


class LoginView(auth_views.LoginView):
    """Django's login, which also switches to the language the member chose, and goes on
    to the two-factor step (its code, or an admin's set-up) when one is still to do."""

    def form_valid(self, form: Any) -> HttpResponse:
        response = super().form_valid(form)
        step = step_needed(self.request)
        if step is not None:
            response = redirect_to_login(self.get_success_url(), STEP_PAGES[step])
        membership = Membership.objects.filter(user_id=form.get_user().pk).order_by("pk").first()
        if membership is not None and membership.language in SUPPORTED:
            remember_language(response, membership.language)
        return response


class PasswordResetView(auth_views.PasswordResetView):
    """Django's password reset; the e-mailed link points at CASEWATCH_PUBLIC_URL when set."""

    email_template_name = "registration/password_reset_email.txt"
    subject_template_name = "registration/password_reset_subject.txt"
    success_url = reverse_lazy("password_reset_done")

    def form_valid(self, form: Any) -> HttpResponse:
        self.extra_email_context = {"base_url": absolute_url(self.request, "/").rstrip("/")}
        return super().form_valid(form)


class PasswordResetConfirmView(auth_views.PasswordResetConfirmView):
    """Django's "choose a new password" page; the new password and its audit entry are
    saved in one transaction."""

    def form_valid(self, form: Any) -> HttpResponse:
        with transaction.atomic():
            response = super().form_valid(form)
            record_for_user("account.password_reset", form.user.pk)
        return response


@require_POST
def switch_language(request: HttpRequest) -> HttpResponse:
    """The header's language buttons: remembered for the member, and in a cookie for anyone."""
    code = request.POST.get("language", "")
    if code not in SUPPORTED:
        return HttpResponseBadRequest(_("Unknown language."))
    membership = membership_of(request)
    if membership is not None and may(membership.role, Action.OWN_SETTINGS):
        membership.language = code
        membership.save(update_fields=["language"])
    target = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        target = reverse("home")
    translation.activate(code)
    response = redirect(target)
    remember_language(response, code)
    return response


def accept_invitation(request: HttpRequest, token: str) -> HttpResponse:
    """The page an invitation e-mail links to: choose a password, and you are in."""
    try:
        invitation = team.invitation_for(token)
    except team.LinkProblem as problem:
        return _refused(request, problem)
    if invitation.language in SUPPORTED and not request.COOKIES.get(settings.LANGUAGE_COOKIE_NAME):
        translation.activate(invitation.language)
        request.LANGUAGE_CODE = invitation.language
    form = AcceptInvitationForm(invitation, request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        try:
            user = team.accept(
                invitation,
                password=form.cleaned_data["new_password1"],
                name=form.cleaned_data["name"],
            )
        except team.LinkProblem as problem:
            return _refused(request, problem)
        auth_login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        messages.success(
            request, _("Welcome to %(firm)s on casewatch.") % {"firm": invitation.firm.name}
        )
        response = redirect("home")
        if invitation.language in SUPPORTED:
            remember_language(response, invitation.language)
        return response
    return render(request, "accounts/accept.html", {"invitation": invitation, "form": form})


def _refused(request: HttpRequest, problem: team.LinkProblem) -> HttpResponse:
    status, message = LINK_PROBLEMS[problem.reason]
    context = {"message": message}
    return render(request, "accounts/invitation_problem.html", context, status=status)
