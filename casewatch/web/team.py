"""The Team page, where a firm's admins invite people, change roles and remove members."""

from __future__ import annotations

import logging
import smtplib

from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from casewatch.accounts import team
from casewatch.accounts.models import Invitation, Membership
from casewatch.accounts.permissions import Action
from casewatch.web.access import absolute_url, staff_view
from casewatch.web.forms import InviteForm, RoleForm

log = logging.getLogger(__name__)


@staff_view(Action.MANAGE_TEAM, change=Action.MANAGE_TEAM)
def team_page(request: HttpRequest, membership: Membership) -> HttpResponse:
    """Members and open invitations; a POST invites someone (or a member without a login)."""
    firm = membership.firm
    form = InviteForm(
        request.POST if request.method == "POST" else None,
        initial={"language": translation.get_language()},
    )
    if request.method == "POST" and form.is_valid():
        placeholder = None
        if request.POST.get("member"):
            placeholder = get_object_or_404(
                Membership.objects.select_related("user"), pk=request.POST["member"], firm=firm
            )
        try:
            invitation = team.invite(
                firm,
                form.cleaned_data["email"],
                form.cleaned_data["role"],
                invited_by=membership.user,
                language=form.cleaned_data["language"],
                member=placeholder,
            )
        except team.TeamError as problem:
            form.add_error("email", str(problem.message))
        else:
            _send(request, invitation)
            return redirect("team")
    members = (
        Membership.objects.filter(firm=firm)
        .select_related("user")
        .order_by("user__first_name", "user__last_name", "user__username")
    )
    invitations = Invitation.objects.filter(
        firm=firm, accepted_at__isnull=True, expires_at__gt=timezone.now()
    ).order_by("-created_at")
    return render(
        request,
        "team/team.html",
        {
            "firm": firm,
            "me": membership,
            "members": members,
            "invitations": invitations,
            "form": form,
            "role_form": RoleForm(),
            "invitation_days": settings.CASEWATCH_INVITATION_DAYS,
        },
    )


def _send(request: HttpRequest, invitation: Invitation) -> None:
    link = absolute_url(request, reverse("invitation", args=[team.link_token(invitation)]))
    try:
        team.send_invitation(invitation, link)
    except (OSError, smtplib.SMTPException) as exc:
        # The address is staff data, but it stays out of logs all the same.
        log.warning("invitation %s could not be sent: %s", invitation.pk, type(exc).__name__)
        messages.error(
            request,
            _(
                "The invitation to %(email)s could not be sent: the mail server did not "
                "take it. Try again in a while, or check the e-mail settings."
            )
            % {"email": invitation.email},
        )
        return
    messages.success(request, _("Invitation sent to %(email)s.") % {"email": invitation.email})


@staff_view(Action.MANAGE_TEAM, change=Action.MANAGE_TEAM)
def change_role(request: HttpRequest, membership: Membership, pk: int) -> HttpResponse:
    member = get_object_or_404(
        Membership.objects.select_related("user"), pk=pk, firm=membership.firm
    )
    form = RoleForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        try:
            team.change_role(member, form.cleaned_data["role"], actor=membership.user)
        except team.TeamError as problem:
            messages.error(request, str(problem.message))
        else:
            messages.success(
                request,
                _("%(name)s is now %(role)s.")
                % {"name": _display_name(member), "role": member.get_role_display()},
            )
    return redirect("team")


@staff_view(Action.MANAGE_TEAM, change=Action.MANAGE_TEAM)
def remove_member(request: HttpRequest, membership: Membership, pk: int) -> HttpResponse:
    """A GET asks for confirmation (pages work without JavaScript); a POST removes."""
    member = get_object_or_404(
        Membership.objects.select_related("user"), pk=pk, firm=membership.firm
    )
    if member.pk == membership.pk:
        messages.error(request, _("You cannot remove yourself. Ask another admin."))
        return redirect("team")
    if request.method != "POST":
        return render(
            request, "team/remove.html", {"member": member, "name": _display_name(member)}
        )
    try:
        team.remove(member, actor=membership.user)
    except team.TeamError as problem:
        messages.error(request, str(problem.message))
    else:
        messages.success(
            request, _("%(name)s was removed from the firm.") % {"name": _display_name(member)}
        )
    return redirect("team")


@staff_view(Action.MANAGE_TEAM, change=Action.MANAGE_TEAM)
def withdraw_invitation(request: HttpRequest, membership: Membership, pk: int) -> HttpResponse:
    invitation = get_object_or_404(
        Invitation, pk=pk, firm=membership.firm, accepted_at__isnull=True
    )
    if request.method == "POST":
        team.withdraw(invitation, actor=membership.user)
        messages.success(
            request, _("The invitation to %(email)s was withdrawn.") % {"email": invitation.email}
        )
    return redirect("team")


def _display_name(member: Membership) -> str:
    return member.user.get_full_name() or member.user.get_username()
