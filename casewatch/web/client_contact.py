"""A client's contact and consent page: their channels in the order they chose, what they
agreed to on each (the consent ledger, newest first), and their private portal links.

Consent is recorded through `casewatch.notify.consent.record_consent`, which appends to
the ledger and the audit chain in one transaction; nothing here edits an entry. The
opt-in wording offered for the client to agree to is data
(notify/data/consent_wording.toml): it names the firm and says what the client will
receive, in the client's language. Front desk may look, not record; another firm's
client is a 404.
"""

from __future__ import annotations

import tomllib
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.models import User
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.functional import Promise
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from casewatch.accounts.models import Membership
from casewatch.accounts.permissions import Action, may
from casewatch.audit.chain import record, staff_actor
from casewatch.cases.models import Case, Client
from casewatch.notify.consent import record_consent
from casewatch.notify.messages import CLIENT_LANGUAGES, client_language
from casewatch.notify.models import CLIENT_CHANNELS, Channel, ConsentRecord, ContactPlan, PortalLink
from casewatch.notify.portal_links import issue_link, live_links, revoke_link
from casewatch.web.access import absolute_url, staff_view
from casewatch.web.access_log import records_access
from casewatch.web.case_page import CLIENT_LANGUAGES as LANGUAGE_NAMES

# How staff may record that a client agreed or withdrew.
METHODS: Mapping[str, Promise] = {
    "form": gettext_lazy("Signed form"),
    "verbal": gettext_lazy("Said so in person or by phone"),
    "email": gettext_lazy("By e-mail"),
    "portal": gettext_lazy("In the client portal"),
}
# How other ledger entries came to be, for the history.
OTHER_METHODS: Mapping[str, Promise] = {
    "reply": gettext_lazy("Replied to a message (STOP or START)"),
    "import": gettext_lazy("Import"),
}
ACTORS: Mapping[str, Promise] = {
    "client": gettext_lazy("The client"),
    "import": gettext_lazy("Import"),
    "demo": gettext_lazy("Demo data"),
    "system": gettext_lazy("casewatch"),
}
MOVES = ("up", "down", "add", "remove")
# Which of the client's personal details each channel needs.
CHANNEL_ADDRESS: Mapping[str, str] = {"whatsapp": "phone", "sms": "phone", "email": "email"}
WORDING_MAX = 2000


# --- The opt-in wording --------------------------------------------------------------


class WordingError(Exception):
    """consent_wording.toml breaks its own rules; the message says where."""


@cache
def _wordings() -> Mapping[str, Mapping[str, Any]]:
    """Every client language's opt-in wording, checked: {firm} and {channel} in each text,
    a name for each client channel."""
    raw = tomllib.loads(
        resources.files("casewatch.notify").joinpath("data/consent_wording.toml").read_text("utf-8")
    )
    for code in CLIENT_LANGUAGES:
        table = raw.get(code)
        if not isinstance(table, dict):
            raise WordingError(f"consent_wording.toml: no [{code}]")
        text = table.get("text", "")
        if not isinstance(text, str) or "{firm}" not in text or "{channel}" not in text:
            raise WordingError(
                f"consent_wording.toml [{code}] text: must name {{firm}} and {{channel}}"
            )
        names = table.get("channels", {})
        missing = [c for c in CLIENT_CHANNELS if not names.get(c)]
        if missing:
            raise WordingError(f"consent_wording.toml [{code}.channels]: missing {missing}")
    return raw


def opt_in_wording(firm_name: str, channel: str, language: str) -> str:
    """The standard words a client agrees to for messages on `channel`, in `language`."""
    table = _wordings()[client_language(language)]
    return str(table["text"]).format(firm=firm_name, channel=table["channels"][channel])


# --- The order of a client's channels ------------------------------------------------


def channel_order(client: Client) -> tuple[list[str], bool]:
    """The client's channels in their order, and whether the client (or staff) chose it.

    Without a contact plan the order is casewatch's default (WhatsApp, SMS, e-mail).
    """
    plan = ContactPlan.objects.filter(client=client).first()
    if plan is None:
        return list(CLIENT_CHANNELS), False
    order: list[str] = []
    for channel in plan.channels if isinstance(plan.channels, list) else []:
        if channel in CLIENT_CHANNELS and channel not in order:
            order.append(channel)
    return order, True


def reordered(order: list[str], channel: str, move: str) -> list[str]:
    """`order` with `channel` moved up or down one place, added at the end, or taken out."""
    result = [c for c in order if c != channel]
    if move == "add":
        return [*result, channel] if channel in CLIENT_CHANNELS else list(order)
    if move == "remove" or channel not in order:
        return result
    place = order.index(channel) + (-1 if move == "up" else 1)
    result.insert(min(max(place, 0), len(result)), channel)
    return result


# --- The page ------------------------------------------------------------------------


@dataclass
class ChannelView:
    """One channel on the page: its place, the client's current word and its history."""

    code: str
    label: str
    position: int | None
    address_on_file: bool
    history: list[dict[str, Any]] = field(default_factory=list)
    wording: str = ""
    errors: list[str] = field(default_factory=list)

    @property
    def current(self) -> dict[str, Any] | None:
        return self.history[0] if self.history else None


def _client_of(membership: Membership, pk: int) -> Client:
    return get_object_or_404(Client, pk=pk, firm=membership.firm)


def contact_url(client: Client) -> str:
    return reverse("client-contact", args=[client.pk])


def _actor_names(entries: list[ConsentRecord]) -> dict[str, str]:
    ids = {
        int(e.actor[5:]) for e in entries if e.actor.startswith("user:") and e.actor[5:].isdigit()
    }
    return {
        f"user:{user.pk}": user.get_full_name() or user.get_username()
        for user in User.objects.filter(pk__in=ids)
    }


def _history(client: Client) -> dict[str, list[dict[str, Any]]]:
    entries = list(ConsentRecord.objects.filter(client=client).order_by("-recorded_at", "-pk"))
    names = _actor_names(entries)
    by_channel: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for entry in entries:
        by_channel[entry.channel].append(
            {
                "granted": entry.granted,
                "at": entry.recorded_at,
                "who": names.get(entry.actor) or ACTORS.get(entry.actor, entry.actor),
                "how": METHODS.get(entry.method) or OTHER_METHODS.get(entry.method, entry.method),
                "wording": entry.wording,
                "language": LANGUAGE_NAMES.get(entry.language, entry.language),
                "language_code": entry.language,
            }
        )
    return by_channel


def _page(
    request: HttpRequest,
    membership: Membership,
    client: Client,
    *,
    new_link: str = "",
    rejected: Mapping[str, Any] | None = None,
    status: int = 200,
) -> HttpResponse:
    order, chosen = channel_order(client)
    history = _history(client)
    asked = request.GET.get("wording", "")
    wording_language = (
        asked if asked in CLIENT_LANGUAGES else client_language(client.language or "")
    )
    firm_name = membership.firm.name
    channels = []
    for code in [*order, *(c for c in CLIENT_CHANNELS if c not in order)]:
        view = ChannelView(
            code=code,
            label=str(Channel(code).label),
            position=order.index(code) + 1 if code in order else None,
            address_on_file=bool(client.personal.get(CHANNEL_ADDRESS[code])),
            history=history.get(code, []),
            wording=opt_in_wording(firm_name, code, wording_language),
        )
        if rejected and rejected.get("channel") == code:
            view.wording = str(rejected.get("wording", view.wording))
            view.errors = list(rejected.get("errors", []))
        channels.append(view)
    cases = Case.objects.filter(firm=membership.firm, client=client).order_by("-pk")[:20]
    response = render(
        request,
        "clients/contact.html",
        {
            "client": client,
            "client_language": LANGUAGE_NAMES.get(client.language or "en", client.language),
            "cases": cases,
            "channels": channels,
            "ordered": order,
            "chosen_order": chosen,
            "methods": list(METHODS.items()),
            "languages": [(code, LANGUAGE_NAMES[code]) for code in CLIENT_LANGUAGES],
            "wording_language": wording_language,
            "may_manage_consent": may(membership.role, Action.MANAGE_CONSENT),
            "may_issue_links": may(membership.role, Action.ISSUE_PORTAL_LINK),
            "links": list(live_links(client, at=timezone.now())),
            "new_link": new_link,
            "wording_max": WORDING_MAX,
        },
        status=status,
    )
    if new_link:
        response["Cache-Control"] = "no-store"  # the page holds the link's secret
    return response


@staff_view(Action.VIEW_CASES)
@records_access("client")
def client_contact(request: HttpRequest, membership: Membership, pk: int) -> HttpResponse:
    return _page(request, membership, _client_of(membership, pk))


# --- Recording consent -----------------------------------------------------------------


class ConsentForm(forms.Form):
    channel = forms.ChoiceField(choices=[(c, c) for c in CLIENT_CHANNELS])
    granted = forms.TypedChoiceField(
        choices=[("1", "1"), ("0", "0")], coerce=lambda value: value == "1"
    )
    method = forms.ChoiceField(choices=[(m, m) for m in METHODS])
    wording = forms.CharField(required=False, max_length=WORDING_MAX)
    language = forms.ChoiceField(required=False, choices=[(c, c) for c in CLIENT_LANGUAGES])

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("granted") and not str(data.get("wording", "")).strip():
            self.add_error(
                "wording", _("Write the words the client agreed to: the ledger keeps them.")
            )
        return data


FIELD_NAMES: Mapping[str, Promise] = {
    "channel": gettext_lazy("Channel"),
    "granted": gettext_lazy("Given or withdrawn"),
    "method": gettext_lazy("How"),
    "wording": gettext_lazy("Wording shown to the client"),
    "language": gettext_lazy("Language"),
}


@staff_view(Action.VIEW_CASES, change=Action.MANAGE_CONSENT)
def record_client_consent(request: HttpRequest, membership: Membership, pk: int) -> HttpResponse:
    """Append the client's word on one channel to the ledger (a POST from the page)."""
    client = _client_of(membership, pk)
    if request.method != "POST":
        return redirect(contact_url(client))
    form = ConsentForm(request.POST)
    if not form.is_valid():
        errors = [
            f"{FIELD_NAMES.get(name, name)}: {' '.join(str(e) for e in problems)}"
            for name, problems in form.errors.items()
        ]
        messages.error(request, _("Nothing was recorded: correct the form below."))
        rejected = {
            "channel": request.POST.get("channel", ""),
            "wording": request.POST.get("wording", "")[:WORDING_MAX],
            "errors": errors,
        }
        return _page(request, membership, client, rejected=rejected, status=400)
    data = form.cleaned_data
    granted = bool(data["granted"])
    record_consent(
        client,
        data["channel"],
        granted=granted,
        at=timezone.now(),
        actor=staff_actor(membership.user_id),
        method=data["method"],
        wording=data["wording"].strip(),
        language=data["language"] or client_language(client.language or ""),
    )
    label = Channel(data["channel"]).label
    if granted:
        messages.success(request, _("Consent on %(channel)s recorded.") % {"channel": label})
    else:
        messages.success(
            request,
            _("Withdrawal on %(channel)s recorded: nothing more goes to the client there.")
            % {"channel": label},
        )
    return redirect(f"{contact_url(client)}#channel-{data['channel']}")


@staff_view(Action.VIEW_CASES, change=Action.MANAGE_CONSENT)
def reorder_channels(request: HttpRequest, membership: Membership, pk: int) -> HttpResponse:
    """Move one channel up or down the client's order, add it to it, or take it out."""
    client = _client_of(membership, pk)
    channel, move = request.POST.get("channel", ""), request.POST.get("move", "")
    if request.method != "POST" or channel not in CLIENT_CHANNELS or move not in MOVES:
        return redirect(contact_url(client))
    order, _chosen = channel_order(client)
    new_order = reordered(order, channel, move)
    if new_order != order or not _chosen:
        with transaction.atomic():
            ContactPlan.objects.update_or_create(client=client, defaults={"channels": new_order})
            record(
                "contact_plan.changed",
                actor=staff_actor(membership.user_id),
                object_type="client",
                object_id=client.pk,
                firm_id=client.firm_id,
                details={"channels": new_order},
            )
        messages.success(request, _("The client's order of channels is saved."))
    return redirect(f"{contact_url(client)}#channels")


# --- Portal links ----------------------------------------------------------------------


@staff_view(Action.VIEW_CASES, change=Action.ISSUE_PORTAL_LINK)
def create_portal_link(request: HttpRequest, membership: Membership, pk: int) -> HttpResponse:
    """A new private link for the client, shown in this answer and never again."""
    client = _client_of(membership, pk)
    if request.method != "POST":
        return redirect(contact_url(client))
    _link, token = issue_link(client, by_user_id=membership.user_id, at=timezone.now())
    url = absolute_url(request, reverse("portal", args=[token]))
    return _page(request, membership, client, new_link=url)


@staff_view(Action.VIEW_CASES, change=Action.ISSUE_PORTAL_LINK)
def revoke_portal_link(request: HttpRequest, membership: Membership, pk: int) -> HttpResponse:
    link = get_object_or_404(
        PortalLink.objects.select_related("client"), pk=pk, firm=membership.firm
    )
    if request.method == "POST" and revoke_link(
        link, by_user_id=membership.user_id, at=timezone.now()
    ):
        messages.success(request, _("The link is revoked: it no longer opens the portal."))
    return redirect(f"{contact_url(link.client)}#portal")
