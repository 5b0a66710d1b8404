"""Forms of the staff app; every label and message is marked for translation."""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib.auth.forms import SetPasswordForm
from django.contrib.auth.models import User
from django.utils.translation import gettext_lazy as _

from casewatch.accounts.models import Invitation, Role

LANGUAGE_CHOICES = list(settings.LANGUAGES)


class InviteForm(forms.Form):
    email = forms.EmailField(label=_("E-mail address"))
    role = forms.ChoiceField(label=_("Role"), choices=Role.choices, initial=Role.PARALEGAL)
    language = forms.ChoiceField(
        label=_("Language of the invitation"),
        choices=LANGUAGE_CHOICES,
        help_text=_("They can change it later."),
    )


class RoleForm(forms.Form):
    role = forms.ChoiceField(label=_("Role"), choices=Role.choices)


class AcceptInvitationForm(SetPasswordForm):  # type: ignore[type-arg]
    """A name and a password for the person an invitation is for; the e-mail is the login."""

    name = forms.CharField(label=_("Your name"), max_length=300, required=False)
    field_order = ("name", "new_password1", "new_password2")

    def __init__(self, invitation: Invitation, *args: Any, **kwargs: Any) -> None:
        member_user = invitation.member.user if invitation.member else None
        user = member_user or User(username=invitation.email, email=invitation.email)
        super().__init__(user, *args, **kwargs)
        self.fields["name"].widget.attrs["autocomplete"] = "name"
        if member_user is not None:
            self.fields["name"].initial = member_user.get_full_name()
