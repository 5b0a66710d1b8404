"""Messaging settings: a firm admin's quiet hours, follow-ups and routing rules.

The firm's MessagingPolicy is made with the model's defaults the first time the page
is opened. Routing rules are checked by the router's own parser
(casewatch.notify.rules.build_rule) before they are saved, so the page never stores a
rule the router would narrow or drop. The defaults from notify/data/routing.toml are
shown beside the firm's own rules, read-only, so an admin sees what happens to the
changes no rule of theirs matches. Every change is audited by member id, with rule
fields and policy values only: no names, phones or e-mail addresses.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import time
from typing import Any

from django import forms
from django.contrib import messages
from django.db import transaction
from django.db.models import Max
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from casewatch.accounts.models import Membership, Role
from casewatch.accounts.permissions import Action
from casewatch.audit.chain import record, staff_actor
from casewatch.core.statuses import CATEGORIES, URGENCIES
from casewatch.notify.models import STAFF_CHANNELS, Channel, MessageKind, MessagingPolicy
from casewatch.notify.models import RoutingRule as RoutingRuleRow
from casewatch.notify.rules import (
    RESPONSIBLE_ATTORNEY,
    RESPONSIBLE_PARALEGAL,
    RULE_KINDS,
    Rule,
    StaffRef,
    build_rule,
    defaults,
    firm_rule,
)
from casewatch.web.access import staff_view
from casewatch.web.labels import CATEGORY_LABELS, URGENCY_LABELS

# How many people an escalation names, in order, at least (more when a rule has more).
ESCALATION_LEVELS = 3
# The case's own people, as rules.py names them, before the roles and members.
CASE_PEOPLE: tuple[tuple[str, Any], ...] = (
    (RESPONSIBLE_ATTORNEY, gettext_lazy("The case's responsible attorney")),
    (RESPONSIBLE_PARALEGAL, gettext_lazy("The case's responsible paralegal")),
)
# Message kinds a rule may be written for, status changes first.
KIND_ORDER = (
    MessageKind.STATUS_CHANGE,
    MessageKind.USCIS_OUTAGE,
    MessageKind.USCIS_RECOVERED,
    MessageKind.RECEIPT_PENDING,
    MessageKind.CARD_DELIVERY_CHECK,
)
assert set(KIND_ORDER) == set(RULE_KINDS)


# --- the policy ---------------------------------------------------------------------


class PolicyForm(forms.Form):
    """Quiet hours, escalation, the card-delivery check, two channels, the digest hour."""

    prefix = "policy"
    quiet_hours = forms.BooleanField(
        label=gettext_lazy("Hold client messages during quiet hours"), required=False
    )
    quiet_from = forms.TimeField(
        label=gettext_lazy("Quiet hours from"),
        widget=forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
    )
    quiet_until = forms.TimeField(
        label=gettext_lazy("Quiet hours until"),
        widget=forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
    )
    escalate_after_hours = forms.IntegerField(
        label=gettext_lazy("Escalate an unacknowledged action change after (hours)"),
        min_value=0,
        max_value=720,
    )
    card_delivery_days = forms.IntegerField(
        label=gettext_lazy("Ask staff to confirm a mailed card arrived after (days)"),
        min_value=0,
        max_value=365,
    )
    action_on_two_channels = forms.BooleanField(
        label=gettext_lazy("Send action changes to clients on two channels"), required=False
    )
    digest_hour = forms.IntegerField(
        label=gettext_lazy("Hour of the daily digest (0–23)"), min_value=0, max_value=23
    )

    def __init__(self, policy: MessagingPolicy, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name in self.fields:
            self.fields[name].initial = getattr(policy, name)
        self.fields["quiet_hours"].help_text = _(
            "Client messages are held until the end of quiet hours in the client's time zone "
            "(the firm's when the client has none). Staff alerts are never held."
        )
        self.fields["escalate_after_hours"].help_text = _("0 turns escalation off.")
        self.fields["card_delivery_days"].help_text = _("0 turns the check off.")
        self.fields["digest_hour"].help_text = _("In each member's own time zone.")

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        start, end = cleaned.get("quiet_from"), cleaned.get("quiet_until")
        if cleaned.get("quiet_hours") and start is not None and start == end:
            self.add_error(
                "quiet_until",
                _("Quiet hours must end at another time than they start; %(time)s was given twice.")
                % {"time": start.strftime("%H:%M")},
            )
        return cleaned


def policy_of(firm_id: int) -> MessagingPolicy:
    """The firm's policy, made with the defaults when it has none yet."""
    policy, _created = MessagingPolicy.objects.get_or_create(firm_id=firm_id)
    return policy


def _policy_value(value: object) -> object:
    return value.strftime("%H:%M") if isinstance(value, time) else value


def save_policy(membership: Membership, cleaned: dict[str, Any]) -> dict[str, Any]:
    """Store the posted policy; the audit entry lists each changed setting, from and to."""
    with transaction.atomic():
        policy = MessagingPolicy.objects.select_for_update().get(firm_id=membership.firm_id)
        changed: dict[str, Any] = {}
        for name, value in cleaned.items():
            if getattr(policy, name) != value:
                changed[name] = {
                    "from": _policy_value(getattr(policy, name)),
                    "to": _policy_value(value),
                }
                setattr(policy, name, value)
        if changed:
            policy.save()
            record(
                "messaging_policy.changed",
                object_type="messaging_policy",
                object_id=policy.pk,
                firm_id=membership.firm_id,
                actor=staff_actor(membership.user_id),
                details=changed,
            )
    return changed


# --- a rule -------------------------------------------------------------------------


def staff_choices(firm_id: int) -> list[tuple[str, str]]:
    """Whom a rule may name: the case's own people, each role, each member of this firm."""
    members = (
        Membership.objects.filter(firm_id=firm_id, user__is_active=True)
        .select_related("user")
        .order_by("user__first_name", "user__last_name", "user__username")
    )
    return [
        *((token, str(label)) for token, label in CASE_PEOPLE),
        *((role.value, _("Every member who is: %(role)s") % {"role": role.label}) for role in Role),
        *(
            (
                str(m.pk),
                f"{m.user.get_full_name() or m.user.get_username()} ({m.get_role_display()})",
            )
            for m in members
        ),
    ]


def _ref(value: str) -> StaffRef:
    return int(value) if value.isdigit() else value


class RuleForm(forms.Form):
    """One routing rule as the page edits it; `rule()` is what the router will read."""

    kind = forms.ChoiceField(label=gettext_lazy("What happened"))
    category = forms.ChoiceField(label=gettext_lazy("Category"), required=False)
    urgency = forms.ChoiceField(label=gettext_lazy("Urgency"), required=False)
    staff = forms.MultipleChoiceField(
        label=gettext_lazy("Staff alerted at once"),
        required=False,
        widget=forms.CheckboxSelectMultiple,
    )
    staff_channels = forms.MultipleChoiceField(
        label=gettext_lazy("Staff are alerted by"),
        required=False,
        widget=forms.CheckboxSelectMultiple,
    )
    tell_client = forms.BooleanField(label=gettext_lazy("Tell the client"), required=False)

    def __init__(self, firm_id: int, row: RoutingRuleRow | None, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        people = staff_choices(firm_id)
        self._choice("kind").choices = [(k.value, k.label) for k in KIND_ORDER]
        self._choice("category").choices = [
            ("", _("Any category")),
            *((c, str(CATEGORY_LABELS.get(c, c))) for c in CATEGORIES),
        ]
        self._choice("urgency").choices = [
            ("", _("Any urgency")),
            *((u, str(URGENCY_LABELS.get(u, u))) for u in URGENCIES),
        ]
        self._choice("staff").choices = people
        self._choice("staff_channels").choices = [(c, Channel(c).label) for c in STAFF_CHANNELS]
        self.fields["category"].help_text = _("Only for status changes.")
        self.fields["staff_channels"].help_text = _(
            "Everyone alerted always gets the alert in the app. SMS reaches only members who "
            "gave a phone and chose SMS in My account; webhook goes to the firm's endpoints."
        )
        self.fields["tell_client"].help_text = _(
            "Only for status changes: in the client's language, on the first channel they "
            "consented to."
        )
        escalate_to = list(row.escalate_to) if row is not None else []
        self.levels = max(ESCALATION_LEVELS, len(escalate_to))
        for level in range(1, self.levels + 1):
            field = forms.ChoiceField(
                label=_("If nobody acknowledges: level %(n)s") % {"n": level},
                required=False,
                choices=[("", _("Nobody")), *people],
            )
            self.fields[f"escalate_{level}"] = field
        self.fields[f"escalate_{1}"].help_text = _(
            "For action changes nobody acknowledged: each level hears one escalation period "
            "after the one before."
        )
        if row is not None:
            self.fields["kind"].initial = row.kind or MessageKind.STATUS_CHANGE
            self.fields["category"].initial = row.category
            self.fields["urgency"].initial = row.urgency
            self.fields["staff"].initial = [str(r) for r in row.staff]
            self.fields["staff_channels"].initial = list(row.staff_channels)
            self.fields["tell_client"].initial = row.tell_client
            for level, ref in enumerate(escalate_to, start=1):
                self.fields[f"escalate_{level}"].initial = str(ref)
        else:
            self.fields["kind"].initial = MessageKind.STATUS_CHANGE
            self.fields["staff_channels"].initial = [Channel.IN_APP.value]

    def _choice(self, name: str) -> forms.ChoiceField:
        field = self.fields[name]
        assert isinstance(field, forms.ChoiceField)
        return field

    def escalation_fields(self) -> list[forms.BoundField]:
        return [self[f"escalate_{level}"] for level in range(1, self.levels + 1)]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        kind = cleaned.get("kind")
        if kind and kind != MessageKind.STATUS_CHANGE:
            for name in ("category", "urgency"):
                if cleaned.get(name):
                    self.add_error(
                        name,
                        _("Only status changes have a category and an urgency; choose “any”."),
                    )
            if cleaned.get("tell_client"):
                self.add_error(
                    "tell_client", _("Only status changes are told to clients; leave this off.")
                )
        levels = [cleaned.get(f"escalate_{n}", "") for n in range(1, self.levels + 1)]
        chosen = [value for value in levels if value]
        if any(not value for value in levels[: len(chosen)]) and chosen:
            first_gap = levels.index("") + 1
            self.add_error(
                f"escalate_{first_gap}",
                _("Fill the escalation levels in order: level %(n)s is empty.") % {"n": first_gap},
            )
        if len(set(chosen)) != len(chosen):
            self.add_error(
                f"escalate_{1}", _("Each person or role may be named once in the escalation.")
            )
        if not self.errors:
            # The router's own parser has the last word: whatever it would leave out is an
            # error here, so a saved rule always does exactly what the form says.
            _rule, problems = build_rule("this rule", self.fields_for_router(cleaned))
            for problem in problems:
                self.add_error(None, problem.message)
        return cleaned

    def fields_for_router(self, cleaned: dict[str, Any]) -> dict[str, object]:
        """The rule's fields exactly as they are stored and as rules.py reads them."""
        return {
            "kind": cleaned["kind"],
            "category": cleaned.get("category") or "",
            "urgency": cleaned.get("urgency") or "",
            "staff": [_ref(v) for v in cleaned.get("staff", [])],
            "staff_channels": [c for c in STAFF_CHANNELS if c in cleaned.get("staff_channels", [])],
            "tell_client": bool(cleaned.get("tell_client")),
            "escalate_to": [
                _ref(cleaned[f"escalate_{n}"])
                for n in range(1, self.levels + 1)
                if cleaned.get(f"escalate_{n}")
            ],
        }


def rule_details(row: RoutingRuleRow) -> dict[str, Any]:
    """A rule for the audit: codes, roles and member ids, never a person's name."""
    return {
        "position": row.position,
        "kind": row.kind,
        "category": row.category,
        "urgency": row.urgency,
        "staff": list(row.staff),
        "staff_channels": list(row.staff_channels),
        "tell_client": row.tell_client,
        "escalate_to": list(row.escalate_to),
    }


def _audit_rule(action: str, membership: Membership, row_id: int, details: dict[str, Any]) -> None:
    record(
        f"routing_rule.{action}",
        object_type="routing_rule",
        object_id=row_id,
        firm_id=membership.firm_id,
        actor=staff_actor(membership.user_id),
        details=details,
    )


def save_rule(membership: Membership, form: RuleForm, row: RoutingRuleRow | None) -> RoutingRuleRow:
    """Create or change a rule from a valid form; a new rule goes after the firm's others."""
    fields = form.fields_for_router(form.cleaned_data)
    with transaction.atomic():
        if row is None:
            last = RoutingRuleRow.objects.filter(firm_id=membership.firm_id).aggregate(
                last=Max("position")
            )["last"]
            row = RoutingRuleRow(firm_id=membership.firm_id, position=(last or 0) + 1)
            before = None
        else:
            row = RoutingRuleRow.objects.select_for_update().get(pk=row.pk)
            before = rule_details(row)
        for name, value in fields.items():
            setattr(row, name, value)
        row.save()
        after = rule_details(row)
        if before is None:
            _audit_rule("created", membership, row.pk, after)
        elif before != after:
            _audit_rule("changed", membership, row.pk, {"from": before, "to": after})
    return row


def move_rule(membership: Membership, row_id: int, up: bool) -> bool:
    """Swap a rule with the one before (or after) it; False when it is already at the end."""
    with transaction.atomic():
        rows = list(
            RoutingRuleRow.objects.select_for_update()
            .filter(firm_id=membership.firm_id)
            .order_by("position", "pk")
        )
        at = next(n for n, r in enumerate(rows) if r.pk == row_id)
        other = at - 1 if up else at + 1
        if not 0 <= other < len(rows):
            return False
        rows[at], rows[other] = rows[other], rows[at]
        for position, row in enumerate(rows, start=1):
            if row.position != position:
                row.position = position
                row.save(update_fields=["position"])
        _audit_rule(
            "moved", membership, row_id, {"direction": "up" if up else "down", "to": other + 1}
        )
    return True


def delete_rule(membership: Membership, row: RoutingRuleRow) -> None:
    with transaction.atomic():
        details = rule_details(row)
        row_id = row.pk
        row.delete()
        _audit_rule("deleted", membership, row_id, details)


# --- how rules read on the page -------------------------------------------------------


@dataclass(frozen=True)
class RuleLine:
    """A rule in words, for the tables."""

    pk: int | None
    origin: str
    kind: str
    category: str
    urgency: str
    staff: list[str]
    staff_channels: list[str]
    tell_client: bool
    escalate_to: list[str]
    records_only: bool


def _names(refs: Iterable[StaffRef], people: dict[str, str]) -> list[str]:
    return [people.get(str(ref), _("a former member (%(id)s)") % {"id": ref}) for ref in refs]


def rule_line(rule: Rule, people: dict[str, str], pk: int | None = None) -> RuleLine:
    return RuleLine(
        pk=pk,
        origin=rule.origin,
        kind=str(MessageKind(rule.kind).label) if rule.kind else _("Nothing (the rule is broken)"),
        category=str(CATEGORY_LABELS.get(rule.category, rule.category)) if rule.category else "",
        urgency=str(URGENCY_LABELS.get(rule.urgency, rule.urgency)) if rule.urgency else "",
        staff=_names(rule.staff, people),
        staff_channels=[str(Channel(c).label) for c in rule.staff_channels],
        tell_client=rule.tell_client,
        escalate_to=_names(rule.escalate_to, people),
        records_only=rule.records_only,
    )


def firm_lines(rows: Sequence[RoutingRuleRow], people: dict[str, str]) -> list[RuleLine]:
    return [rule_line(firm_rule(row), people, row.pk) for row in rows]


# --- views --------------------------------------------------------------------------


def _rows(membership: Membership) -> list[RoutingRuleRow]:
    return list(
        RoutingRuleRow.objects.filter(firm_id=membership.firm_id).order_by("position", "pk")
    )


@staff_view(Action.MANAGE_MESSAGING, change=Action.MANAGE_MESSAGING)
def messaging_settings(request: HttpRequest, membership: Membership) -> HttpResponse:
    """The page: the policy form, the firm's rules, the defaults; a POST saves the policy."""
    policy = policy_of(membership.firm_id)
    posted = request.POST if request.method == "POST" else None
    form = PolicyForm(policy, posted)
    if posted is not None and form.is_valid():
        changed = save_policy(membership, form.cleaned_data)
        if changed:
            messages.success(request, _("The firm's messaging settings are saved."))
        return redirect("messaging-settings")
    people = dict(staff_choices(membership.firm_id))
    return render(
        request,
        "messaging/settings.html",
        {
            "firm": membership.firm,
            "form": form,
            "policy": policy,
            "rules": firm_lines(_rows(membership), people),
            "defaults": [rule_line(rule, people) for rule in defaults().rules],
            "when_nobody": _names(defaults().when_nobody, people),
        },
        status=400 if posted is not None else 200,
    )


def _rule_page(
    request: HttpRequest, membership: Membership, row: RoutingRuleRow | None
) -> HttpResponse:
    posted = request.POST if request.method == "POST" else None
    form = RuleForm(membership.firm_id, row, posted)
    if posted is not None and form.is_valid():
        saved = save_rule(membership, form, row)
        if row is None:
            messages.success(request, _("The rule is added at the end of the firm's rules."))
        else:
            messages.success(request, _("The rule is saved."))
        return redirect(f"{_settings_url()}#rule-{saved.pk}")
    return render(
        request,
        "messaging/rule.html",
        {"firm": membership.firm, "form": form, "row": row},
        status=400 if posted is not None else 200,
    )


def _settings_url() -> str:
    return reverse("messaging-settings")


@staff_view(Action.MANAGE_MESSAGING, change=Action.MANAGE_MESSAGING)
def add_rule(request: HttpRequest, membership: Membership) -> HttpResponse:
    """A new rule of the firm's, tried after its others and before the defaults."""
    return _rule_page(request, membership, None)


@staff_view(Action.MANAGE_MESSAGING, change=Action.MANAGE_MESSAGING)
def edit_rule(request: HttpRequest, membership: Membership, pk: int) -> HttpResponse:
    """One of the firm's rules (another firm's is a 404)."""
    row = get_object_or_404(RoutingRuleRow, pk=pk, firm_id=membership.firm_id)
    return _rule_page(request, membership, row)


@staff_view(Action.MANAGE_MESSAGING, change=Action.MANAGE_MESSAGING)
def delete_rule_view(request: HttpRequest, membership: Membership, pk: int) -> HttpResponse:
    """GET asks to confirm; POST deletes the rule (another firm's is a 404)."""
    row = get_object_or_404(RoutingRuleRow, pk=pk, firm_id=membership.firm_id)
    if request.method == "POST":
        delete_rule(membership, row)
        messages.success(request, _("The rule is deleted."))
        return redirect("messaging-settings")
    people = dict(staff_choices(membership.firm_id))
    return render(
        request,
        "messaging/delete.html",
        {"firm": membership.firm, "rule": firm_lines([row], people)[0]},
    )


@staff_view(Action.MANAGE_MESSAGING, change=Action.MANAGE_MESSAGING)
def move_rule_view(request: HttpRequest, membership: Membership, pk: int) -> HttpResponse:
    """POST `direction=up|down`: the rule is tried earlier or later than its neighbour."""
    row = get_object_or_404(RoutingRuleRow, pk=pk, firm_id=membership.firm_id)
    if request.method != "POST":
        return redirect("messaging-settings")
    direction = request.POST.get("direction", "")
    if direction not in ("up", "down"):
        messages.error(request, _("Say whether the rule moves up or down."))
    else:
        move_rule(membership, row.pk, up=direction == "up")
    return redirect(f"{_settings_url()}#rule-{row.pk}")
