"""Who works at a firm: inviting people by e-mail, changing roles, removing members.

An invitation link carries the invitation's id signed with the site's secret key, so
it cannot be made up or altered; whether it may still be used (not yet accepted,
not withdrawn, not expired) is read from the database each time.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.core import signing
from django.core.mail import send_mail
from django.db import transaction
from django.template.loader import render_to_string
from django.utils import timezone, translation
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

from casewatch.accounts.models import Firm, Invitation, Membership, Role
from casewatch.audit.chain import record, staff_actor

INVITATION_SALT = "casewatch.accounts.invitation"


class TeamError(Exception):
    """A change to the team that the firm's rules refuse; the message says why, to staff."""

    def __init__(self, message: str | Promise) -> None:
        super().__init__(str(message))
        self.message = message


class LinkProblem(Exception):
    """Why an invitation link cannot be used: `reason` is forged, expired, used or withdrawn."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def invite(
    firm: Firm,
    email: str,
    role: str,
    *,
    invited_by: User,
    language: str = "",
    member: Membership | None = None,
    now: datetime | None = None,
) -> Invitation:
    """Create an invitation, replacing any earlier one to the same address at this firm."""
    if role not in Role.values:
        raise TeamError(_("Choose one of the roles."))
    email = email.strip().lower()
    now = now or timezone.now()
    user_model = get_user_model()
    taken = user_model.objects.filter(email__iexact=email, is_active=True)
    if member is not None:
        taken = taken.exclude(pk=member.user_id)
    if taken.exists():
        raise TeamError(_("Someone already logs in with this e-mail address."))
    if member is not None and (member.firm_id != firm.pk or member.user.is_active):
        raise TeamError(_("This member can log in already."))
    with transaction.atomic():
        Invitation.objects.filter(firm=firm, email=email, accepted_at__isnull=True).delete()
        if member is not None:
            Invitation.objects.filter(member=member, accepted_at__isnull=True).delete()
        invitation = Invitation.objects.create(
            firm=firm,
            email=email,
            role=role,
            language=language,
            member=member,
            invited_by=invited_by,
            expires_at=now + timedelta(days=settings.CASEWATCH_INVITATION_DAYS),
        )
        record(
            "member.invited",
            object_type="invitation",
            object_id=invitation.pk,
            firm_id=firm.pk,
            actor=staff_actor(invited_by.pk),
            details={"role": role, "member": member.pk if member else None},
            at=now,
        )
    return invitation


def link_token(invitation: Invitation) -> str:
    return signing.dumps(invitation.pk, salt=INVITATION_SALT)


def invitation_for(token: str, *, now: datetime | None = None) -> Invitation:
    """The invitation a link stands for, if it can still be used; LinkProblem otherwise."""
    try:
        pk = signing.loads(token, salt=INVITATION_SALT)
    except signing.BadSignature as exc:
        raise LinkProblem("forged") from exc
    invitation = (
        Invitation.objects.select_related("firm", "member__user", "invited_by")
        .filter(pk=pk)
        .first()
    )
    if invitation is None:
        raise LinkProblem("withdrawn")
    if invitation.accepted_at is not None:
        raise LinkProblem("used")
    if invitation.expires_at <= (now or timezone.now()):
        raise LinkProblem("expired")
    return invitation


def send_invitation(invitation: Invitation, link: str) -> None:
    """E-mail the link, in the language the inviter chose for the invitee, its expiry on
    the firm's clock (not the inviter's)."""
    language = invitation.language or settings.LANGUAGE_CODE
    with translation.override(language), timezone.override(invitation.firm.time_zone or None):
        context = {"invitation": invitation, "link": link, "role": invitation.get_role_display()}
        subject = render_to_string("accounts/invitation_subject.txt", context)
        body = render_to_string("accounts/invitation_email.txt", context)
    send_mail(" ".join(subject.split()), body, None, [invitation.email])
    # Created is not sent: the mail server may refuse it, and the inviter then sees why.
    record(
        "member.invitation_sent",
        object_type="invitation",
        object_id=invitation.pk,
        firm_id=invitation.firm_id,
        actor=staff_actor(invitation.invited_by_id) if invitation.invited_by_id else "system",
        details={"language": language},
    )


def accept(
    invitation: Invitation, *, password: str, name: str, now: datetime | None = None
) -> User:
    """Turn an invitation into a member who can log in with the e-mail address and password."""
    now = now or timezone.now()
    user_model = get_user_model()
    with transaction.atomic():
        fresh = Invitation.objects.select_for_update().get(pk=invitation.pk)
        if fresh.accepted_at is not None:
            raise LinkProblem("used")
        membership = invitation.member
        returning = None if membership else _returning_user(invitation)
        if returning is not None:
            membership = Membership.objects.filter(
                firm_id=invitation.firm_id, user=returning
            ).first()
        user: User
        if membership is not None:
            user = membership.user
        elif returning is not None:
            user = returning
        else:
            user = user_model(email=invitation.email)
        user.username = _free_username(invitation.email, user)
        user.email = invitation.email
        first, _space, last = name.strip().partition(" ")
        if first:
            user.first_name, user.last_name = first[:150], last[:150]
        user.set_password(password)
        user.is_active = True
        user.save()
        if membership is None:
            membership = Membership(firm=invitation.firm, user=user)
        membership.role = invitation.role
        membership.language = invitation.language
        membership.save()
        fresh.accepted_at = now
        fresh.save(update_fields=["accepted_at"])
        record(
            "member.joined",
            object_type="membership",
            object_id=membership.pk,
            firm_id=invitation.firm_id,
            actor=staff_actor(user.pk),
            details={"invitation": invitation.pk, "role": invitation.role},
            at=now,
        )
    return user


def _returning_user(invitation: Invitation) -> User | None:
    """Someone who cannot log in (a former member, an imported name) with this address.

    Only someone who belongs to no other firm: coming back must never open another
    firm's cases to them.
    """
    candidates = get_user_model().objects.filter(email__iexact=invitation.email, is_active=False)
    for candidate in candidates.order_by("pk"):
        firms = set(Membership.objects.filter(user=candidate).values_list("firm_id", flat=True))
        if firms <= {invitation.firm_id}:
            return candidate
    return None


def _free_username(email: str, user: User) -> str:
    """The e-mail address is the login, unless another account already uses it as one."""
    user_model = get_user_model()
    candidate, n = email, 1
    while user_model.objects.filter(username__iexact=candidate).exclude(pk=user.pk).exists():
        n += 1
        candidate = f"{email}.{n}"
    return candidate


def withdraw(invitation: Invitation, *, actor: User) -> None:
    with transaction.atomic():
        record(
            "member.invitation_withdrawn",
            object_type="invitation",
            object_id=invitation.pk,
            firm_id=invitation.firm_id,
            actor=staff_actor(actor.pk),
        )
        invitation.delete()


def change_role(membership: Membership, role: str, *, actor: User) -> None:
    if role not in Role.values:
        raise TeamError(_("Choose one of the roles."))
    with transaction.atomic():
        if membership.role == Role.ADMIN and role != Role.ADMIN:
            _keep_an_admin(membership)
        before = membership.role
        membership.role = role
        membership.save(update_fields=["role"])
        record(
            "member.role_changed",
            object_type="membership",
            object_id=membership.pk,
            firm_id=membership.firm_id,
            actor=staff_actor(actor.pk),
            details={"from": before, "to": role, "user": membership.user_id},
        )


def remove(membership: Membership, *, actor: User) -> None:
    """Take someone off the firm; without another firm they can no longer log in.

    Cases assigned to them keep the assignment, so nothing is silently reassigned.
    """
    with transaction.atomic():
        if membership.role == Role.ADMIN:
            _keep_an_admin(membership)
        user = membership.user
        record(
            "member.removed",
            object_type="membership",
            object_id=membership.pk,
            firm_id=membership.firm_id,
            actor=staff_actor(actor.pk),
            details={"role": membership.role, "user": membership.user_id},
        )
        membership.delete()
        if not Membership.objects.filter(user=user).exists():
            user.is_active = False
            user.save(update_fields=["is_active"])


def _keep_an_admin(leaving: Membership) -> None:
    others = Membership.objects.select_for_update().filter(
        firm_id=leaving.firm_id, role=Role.ADMIN, user__is_active=True
    )
    if not others.exclude(pk=leaving.pk).exists():
        raise TeamError(_("A firm needs at least one admin. Make someone else admin first."))
