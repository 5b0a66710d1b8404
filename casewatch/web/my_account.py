"""My account: what every member sets for themselves, and what an admin sets for the firm.

One page, one form per subject (e-mail address, password, two-factor sign-in (its own
pages: casewatch.web.two_factor), language and time zone,
where the member is alerted besides the app, the firm's name and time zone); each
form posts its own `do` and only that form's change is made, in one transaction with
its audit entry. The audit entries name the member by id (audit.chain.staff_actor)
and never hold an e-mail address or a phone number.

Also here: the header's firm switcher, for a member of several firms.
"""

from __future__ import annotations

from typing import Any

import phonenumbers
from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model, update_session_auth_hash
from django.contrib.auth.forms import PasswordChangeForm
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import translation
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django_htmx.http import HttpResponseClientRedirect

from casewatch.accounts import two_factor
from casewatch.accounts.models import Firm, Membership
from casewatch.accounts.permissions import Action, may
from casewatch.audit.chain import record, staff_actor
from casewatch.notify.models import Channel, StaffContact
from casewatch.web.access import ACTIVE_FIRM, forget_membership, memberships_of, staff_view
from casewatch.web.account import remember_language
from casewatch.web.middleware import SUPPORTED
from casewatch.web.time_zones import ZoneSelect, is_zone, zone_choices

# Language choices of a member: the app's languages under their own names, or none
# (whatever the browser asks for).
BROWSER = ""


class EmailForm(forms.Form):
    """The address password-reset links go to; no two people may share one."""

    email = forms.EmailField(label=gettext_lazy("E-mail address"), max_length=254)

    def __init__(self, user: User, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.user = user
        self.fields["email"].initial = user.email
        self.fields["email"].widget.attrs["autocomplete"] = "email"

    def clean_email(self) -> str:
        email: str = get_user_model().objects.normalize_email(self.cleaned_data["email"].strip())
        others = get_user_model().objects.filter(email__iexact=email).exclude(pk=self.user.pk)
        if others.exists():
            raise forms.ValidationError(
                _("Another account uses this e-mail address. Use an address of your own.")
            )
        return email


class PreferencesForm(forms.Form):
    """How the app speaks to this member and which clock it shows them."""

    language = forms.ChoiceField(label=gettext_lazy("Language"), required=False)
    time_zone = forms.ChoiceField(
        label=gettext_lazy("Time zone"), required=False, widget=ZoneSelect
    )

    def __init__(self, membership: Membership, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        language_field = self.fields["language"]
        assert isinstance(language_field, forms.ChoiceField)
        language_field.choices = [
            (BROWSER, _("Whatever my browser asks for")),
            *settings.LANGUAGES,
        ]
        zone_field = self.fields["time_zone"]
        assert isinstance(zone_field, forms.ChoiceField)
        zone_field.choices = [
            ("", _("The firm's: %(zone)s") % {"zone": membership.firm.time_zone}),
            *zone_choices(),
        ]
        zone_field.help_text = _("Every date and time casewatch shows you is in this zone.")
        self.fields["language"].initial = membership.language
        self.fields["time_zone"].initial = membership.time_zone


# The channels a member may add to in-app alerts, which they always get.
ALERT_CHANNELS = (Channel.EMAIL, Channel.SMS)


def e164(text: str) -> str:
    """The number in E.164 (+12025550142); a number without a country code is taken as US.

    Raises ValidationError saying what is wrong with the number as typed.
    """
    try:
        number = phonenumbers.parse(text, "US")
    except phonenumbers.NumberParseException as exc:
        raise forms.ValidationError(
            _(
                "%(phone)s is not a phone number: write it with its country code, "
                "like +1 202 555 0142."
            )
            % {"phone": text}
        ) from exc
    if not phonenumbers.is_valid_number(number):
        raise forms.ValidationError(
            _(
                "%(phone)s is not a number that can receive text messages; "
                "check its digits and country code."
            )
            % {"phone": text}
        )
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


class StaffContactForm(forms.Form):
    """Where the member is alerted besides the app: e-mail, SMS (to this phone), or neither."""

    prefix = "contact"
    phone = forms.CharField(
        label=gettext_lazy("Mobile phone for SMS alerts"), max_length=40, required=False
    )
    channels = forms.MultipleChoiceField(
        label=gettext_lazy("Besides the app, alert me by"),
        required=False,
        widget=forms.CheckboxSelectMultiple,
    )

    def __init__(self, membership: Membership, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        channels_field = self.fields["channels"]
        assert isinstance(channels_field, forms.MultipleChoiceField)
        channels_field.choices = [(c.value, c.label) for c in ALERT_CHANNELS]
        channels_field.help_text = _(
            "SMS is sent only for changes that need action now, and only to the phone above."
        )
        self.fields["phone"].widget.attrs.update({"autocomplete": "tel", "inputmode": "tel"})
        contact = StaffContact.objects.filter(membership=membership).first()
        chose = list(contact.channels) if contact is not None else []
        self.fields["phone"].initial = contact.phone if contact is not None else ""
        # A member who never chose gets e-mail (casewatch/notify/route.py).
        self.fields["channels"].initial = (
            [c for c in chose if c in ALERT_CHANNELS] if chose else [Channel.EMAIL.value]
        )

    def clean_phone(self) -> str:
        text: str = self.cleaned_data["phone"].strip()
        return e164(text) if text else ""

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if (
            Channel.SMS in cleaned.get("channels", [])
            and "phone" in cleaned
            and not cleaned["phone"]
        ):
            self.add_error("phone", _("Give a mobile phone number to get alerts by SMS."))
        return cleaned


class FirmForm(forms.Form):
    """What an admin sets for the whole firm (fields prefixed: the page has two zone selects)."""

    prefix = "firm"
    name = forms.CharField(label=gettext_lazy("Firm name"), max_length=200)
    time_zone = forms.ChoiceField(label=gettext_lazy("The firm's time zone"), widget=ZoneSelect)

    def __init__(self, firm: Firm, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        zone_field = self.fields["time_zone"]
        assert isinstance(zone_field, forms.ChoiceField)
        zone_field.choices = zone_choices()
        zone_field.help_text = _(
            "Dates are shown in this zone to every member who has not chosen their own."
        )
        self.fields["name"].initial = firm.name
        self.fields["time_zone"].initial = firm.time_zone

    def clean_name(self) -> str:
        name: str = " ".join(self.cleaned_data["name"].split())
        if not name:
            raise forms.ValidationError(_("Give the firm a name."))
        return name


@staff_view(Action.OWN_SETTINGS, change=Action.OWN_SETTINGS)
def my_account(request: HttpRequest, membership: Membership) -> HttpResponse:
    """The page, or (POST) one of its forms: `do` says which."""
    user = membership.user
    may_manage_firm = may(membership.role, Action.MANAGE_TEAM)
    posted = request.POST if request.method == "POST" else None
    do = request.POST.get("do", "") if posted is not None else ""
    email_form = EmailForm(user, posted if do == "email" else None)
    password_form = PasswordChangeForm(user, posted if do == "password" else None)
    preferences_form = PreferencesForm(membership, posted if do == "preferences" else None)
    contact_form = StaffContactForm(membership, posted if do == "contact" else None)
    firm_form = FirmForm(membership.firm, posted if do == "firm" else None)
    if posted is not None:
        if do == "firm" and not may_manage_firm:
            raise PermissionDenied(Action.MANAGE_TEAM.value)
        if do == "contact" and contact_form.is_valid():
            _save_contact(membership, contact_form.cleaned_data)
            messages.success(request, _("Where you are alerted is saved."))
            return _back()
        saved = _save(
            request, membership, do, email_form, password_form, preferences_form, firm_form
        )
        if saved is not None:
            return saved
    return render(
        request,
        "accounts/my_account.html",
        {
            "me": membership,
            "firm": membership.firm,
            "email_form": email_form,
            "password_form": password_form,
            "preferences_form": preferences_form,
            "contact_form": contact_form,
            "firm_form": firm_form if may_manage_firm else None,
            "memberships": memberships_of(request),
            "two_factor_on": two_factor.uses_two_factor(user.pk),
            "two_factor_required": two_factor.must_use_two_factor(user.pk),
            "recovery_codes_left": two_factor.recovery_codes_left(user.pk),
        },
        status=400 if posted is not None else 200,
    )


def _save(
    request: HttpRequest,
    membership: Membership,
    do: str,
    email_form: EmailForm,
    password_form: PasswordChangeForm,
    preferences_form: PreferencesForm,
    firm_form: FirmForm,
) -> HttpResponse | None:
    """Make the posted form's change; None when the page must show the form's errors."""
    if do == "email" and email_form.is_valid():
        _save_email(membership, email_form.cleaned_data["email"])
        messages.success(
            request,
            _("Your e-mail address is saved. A forgotten password can now be reset by e-mail."),
        )
        return _back()
    if do == "password" and password_form.is_valid():
        with transaction.atomic():
            password_form.save()
            record(
                "account.password_changed",
                object_type="user",
                object_id=membership.user_id,
                firm_id=membership.firm_id,
                actor=staff_actor(membership.user_id),
            )
        # Changing the password ends other sessions; this one stays logged in.
        update_session_auth_hash(request, password_form.user)
        messages.success(request, _("Your password is changed."))
        return _back()
    if do == "preferences" and preferences_form.is_valid():
        language = preferences_form.cleaned_data["language"]
        zone = preferences_form.cleaned_data["time_zone"]
        _save_preferences(membership, language, zone)
        forget_membership(request)
        response = _back()
        if language in SUPPORTED:
            translation.activate(language)
            remember_language(response, language)
        else:
            response.delete_cookie(settings.LANGUAGE_COOKIE_NAME)
        messages.success(request, _("Your language and time zone are saved."))
        return response
    if do == "firm" and firm_form.is_valid():
        return _save_firm(request, membership, firm_form)
    return None


def _back() -> HttpResponse:
    return redirect("my-account")


def _save_email(membership: Membership, email: str) -> None:
    user = membership.user
    with transaction.atomic():
        had_email = bool(user.email)
        user.email = email
        user.save(update_fields=["email"])
        record(
            "account.email_changed",
            object_type="user",
            object_id=user.pk,
            firm_id=membership.firm_id,
            actor=staff_actor(user.pk),
            details={"had_email": had_email},
        )


def _save_preferences(membership: Membership, language: str, zone: str) -> None:
    """A person's language and clock are theirs: the same in each of their firms."""
    with transaction.atomic():
        for member in Membership.objects.select_for_update().filter(user_id=membership.user_id):
            changed: dict[str, dict[str, str]] = {}
            if member.language != language:
                changed["language"] = {"from": member.language, "to": language}
            if member.time_zone != zone:
                changed["time_zone"] = {"from": member.time_zone, "to": zone}
            if not changed:
                continue
            member.language, member.time_zone = language, zone
            member.save(update_fields=["language", "time_zone"])
            record(
                "member.preferences_changed",
                object_type="membership",
                object_id=member.pk,
                firm_id=member.firm_id,
                actor=staff_actor(membership.user_id),
                details=changed,
            )


def _save_contact(membership: Membership, cleaned: dict[str, Any]) -> None:
    """Phone and channels; the audit says what changed, never the number itself.

    The channels are stored with in-app first, so "nothing besides the app" is a choice
    the router honours rather than "never chose" (which means e-mail too).
    """
    phone: str = cleaned["phone"]
    channels = [Channel.IN_APP.value, *(c for c in ALERT_CHANNELS if c in cleaned["channels"])]
    with transaction.atomic():
        contact, created = StaffContact.objects.select_for_update().get_or_create(
            membership=membership
        )
        before = list(contact.channels)
        phone_changed = contact.phone != phone
        if not created and not phone_changed and before == channels:
            return
        contact.phone, contact.channels = phone, channels
        contact.save()
        record(
            "member.contact_changed",
            object_type="membership",
            object_id=membership.pk,
            firm_id=membership.firm_id,
            actor=staff_actor(membership.user_id),
            details={
                "channels": {"from": before, "to": channels},
                "phone_changed": phone_changed,
                "has_phone": bool(phone),
            },
        )


def _save_firm(request: HttpRequest, membership: Membership, form: FirmForm) -> HttpResponse:
    name, zone = form.cleaned_data["name"], form.cleaned_data["time_zone"]
    assert is_zone(zone)
    with transaction.atomic():
        firm = Firm.objects.select_for_update().get(pk=membership.firm_id)
        changed: dict[str, dict[str, str]] = {}
        if firm.name != name:
            changed["name"] = {"from": firm.name, "to": name}
        if firm.time_zone != zone:
            changed["time_zone"] = {"from": firm.time_zone, "to": zone}
        if changed:
            firm.name, firm.time_zone = name, zone
            firm.save(update_fields=["name", "time_zone"])
            record(
                "firm.settings_changed",
                object_type="firm",
                object_id=firm.pk,
                firm_id=firm.pk,
                actor=staff_actor(membership.user_id),
                details=changed,
            )
    messages.success(request, _("The firm's name and time zone are saved."))
    return _back()


@staff_view(Action.VIEW_CASES, change=Action.OWN_SETTINGS)
def switch_firm(request: HttpRequest, membership: Membership) -> HttpResponse:
    """The header's firm switcher: work in another of one's own firms (any other is a 404).

    Lands on the dashboard: the page one came from belongs to the firm one left.
    """
    if request.method != "POST":
        return redirect("home")
    chosen = request.POST.get("firm", "")
    target = next(
        (m for m in memberships_of(request) if chosen.isdigit() and m.firm_id == int(chosen)),
        None,
    )
    if target is None:
        raise Http404("not a firm of yours")
    request.session[ACTIVE_FIRM] = target.firm_id
    forget_membership(request)
    if target.firm_id != membership.firm_id:
        messages.success(request, _("You are now working in %(firm)s.") % {"firm": target.firm})
    response: HttpResponse
    if getattr(request, "htmx", False):
        response = HttpResponseClientRedirect(reverse("home"))
    else:
        response = redirect("home")
    if target.language in SUPPORTED:
        remember_language(response, target.language)
    return response
