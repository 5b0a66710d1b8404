"""API tokens on the Team page: a firm's admins issue, see and revoke the keys its other
systems (a case-management system, a script) use for the REST API (docs/api.md).

A new token's secret is in the answer to the POST that made it and nowhere else: not
in the session, not behind a redirect, not in any cache (`no-store`). Only its hash is
kept, so the page cannot show it again; a lost secret means a new token. A reload of
that answer sends the form again: casewatch.web.once makes it make nothing.
"""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from casewatch.accounts.api_tokens import IssuedToken, create_token, revoke_token
from casewatch.accounts.models import ApiToken, Membership, Scope
from casewatch.accounts.permissions import Action
from casewatch.audit.chain import staff_actor
from casewatch.web.access import staff_view
from casewatch.web.once import OnceForm, first_sending


class TokenForm(OnceForm):
    name = forms.CharField(
        label=gettext_lazy("What it is for"),
        max_length=100,
        help_text=gettext_lazy("For example: Docketwise sync. Shown in the list, not a secret."),
    )
    scope = forms.ChoiceField(
        label=gettext_lazy("Access"),
        choices=Scope.choices,
        initial=Scope.READ,
        widget=forms.RadioSelect,
        help_text=gettext_lazy(
            "Read only: look at cases, status changes and deadlines. Read and write: also "
            "add and change cases, and see clients' names, e-mails and phones."
        ),
    )


# A reload of the page that showed a new token sends its form again: nothing is made.
ALREADY_SENT = gettext_lazy(
    "This form was already sent: its token was made, and its secret shown once. If the "
    "secret was not kept, revoke that token and make another."
)


def tokens_of(membership: Membership) -> QuerySet[ApiToken]:
    """The firm's tokens, live ones first, newest first within each."""
    return (
        ApiToken.objects.filter(firm=membership.firm)
        .select_related("created_by")
        .order_by("revoked_at", "-created_at", "-pk")
    )


def _page(
    request: HttpRequest,
    membership: Membership,
    form: TokenForm,
    issued: IssuedToken | None = None,
) -> HttpResponse:
    response = render(
        request,
        "team/api_tokens.html",
        {"firm": membership.firm, "tokens": tokens_of(membership), "form": form, "issued": issued},
    )
    if issued is not None:
        response["Cache-Control"] = "no-store"  # the page holds the token's secret
    return response


@staff_view(Action.MANAGE_API_TOKENS, change=Action.MANAGE_API_TOKENS)
def api_tokens(request: HttpRequest, membership: Membership) -> HttpResponse:
    """The firm's tokens; a POST issues one and shows its secret, this once."""
    if request.method != "POST":
        return _page(request, membership, TokenForm())
    form = TokenForm(request.POST)
    if not form.is_valid():
        return _page(request, membership, form)
    if not first_sending(request, form):
        messages.info(request, ALREADY_SENT)
        return redirect("team-api-tokens")
    issued = create_token(
        membership.firm,
        form.cleaned_data["scope"],
        name=form.cleaned_data["name"].strip(),
        created_by=membership.user,
        actor=staff_actor(request.user.pk),
    )
    return _page(request, membership, TokenForm(), issued)


@staff_view(Action.MANAGE_API_TOKENS, change=Action.MANAGE_API_TOKENS)
def revoke(request: HttpRequest, membership: Membership, pk: int) -> HttpResponse:
    """A GET asks for confirmation (pages work without JavaScript); a POST revokes."""
    token = get_object_or_404(ApiToken, pk=pk, firm=membership.firm)
    if request.method != "POST":
        return render(request, "team/api_token_revoke.html", {"token": token})
    if token.revoked_at is None:
        revoke_token(token, actor=staff_actor(request.user.pk))
        messages.success(
            request,
            _("The token “%(name)s” was revoked: the API refuses it from now on.")
            % {"name": token.name or token.pk},
        )
    return redirect("team-api-tokens")
