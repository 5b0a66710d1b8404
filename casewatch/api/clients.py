"""The firm's clients: its own reference for each, their language, cases and consent.

Names, e-mails and phones are personal data: only write tokens see them, and only
write tokens may look a client up by name (a read token could otherwise learn who
the firm's clients are by asking). Consent is each channel's latest word.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db.models import QuerySet
from django.http import Http404, HttpRequest
from ninja import Field, Query, Router, Schema

from casewatch.accounts.models import ApiToken
from casewatch.api.auth import may_see_clients, token_of
from casewatch.api.cases import ERRORS, WITH_404, ProblemOut
from casewatch.api.pages import PageQuery, page_of
from casewatch.api.problems import Problem
from casewatch.cases.models import Case, Client
from casewatch.cases.name_index import clients_named
from casewatch.notify.consent import consented_channels
from casewatch.notify.models import CLIENT_CHANNELS

router = Router(tags=["clients"])


class ClientDetail(Schema):
    id: int
    reference: str = Field(description="the firm's own client id")
    language: str = Field(description="the language casewatch writes to them in")
    time_zone: str = Field(description="empty: the firm's")
    name: str | None = Field(None, description="write tokens only")
    email: str | None = Field(None, description="write tokens only")
    phone: str | None = Field(None, description="write tokens only")
    consent: dict[str, bool] = Field(description="per channel: whether they agreed to it")
    case_ids: list[int]
    created_at: datetime
    updated_at: datetime


class ClientPage(Schema):
    items: list[ClientDetail]
    next: str | None


class ClientQuery(PageQuery):
    reference: str | None = Field(None, max_length=100, description="the firm's client id")
    name: str | None = Field(None, max_length=200, description="write tokens only")


def _clients_out(clients: list[Client], token: ApiToken) -> list[dict[str, Any]]:
    personal = may_see_clients(token)
    consent = consented_channels(client.pk for client in clients)
    cases: dict[int, list[int]] = {client.pk: [] for client in clients}
    for client_id, case_id in (
        Case.objects.filter(client_id__in=list(cases)).order_by("pk").values_list("client_id", "pk")
    ):
        cases[client_id].append(case_id)
    return [
        {
            "id": client.pk,
            "reference": client.reference,
            "language": client.language or "en",
            "time_zone": client.time_zone,
            "name": client.name if personal else None,
            "email": client.email if personal else None,
            "phone": client.phone if personal else None,
            "consent": {str(c): str(c) in consent[client.pk] for c in CLIENT_CHANNELS},
            "case_ids": cases[client.pk],
            "created_at": client.created_at,
            "updated_at": client.updated_at,
        }
        for client in clients
    ]


@router.get(
    "/clients", response={200: ClientPage, **ERRORS, 400: ProblemOut}, url_name="api-clients"
)
def list_clients(request: HttpRequest, query: Query[ClientQuery]) -> dict[str, Any]:
    """The firm's clients, oldest first; by the firm's reference, or (write tokens) name."""
    token = token_of(request)
    rows: QuerySet[Client] | None = Client.objects.filter(firm_id=token.firm_id)
    kept: dict[str, str] = {}
    if query.reference:
        assert rows is not None
        rows = rows.filter(reference=query.reference.strip())
        kept["reference"] = query.reference.strip()
    if query.name:
        if not may_see_clients(token):
            raise Problem(403, "Looking clients up by name needs a write token.")
        named = clients_named(token.firm, query.name)
        rows = None if named is None or rows is None else rows.filter(pk__in=named)
        kept["name"] = query.name
    ordered = None if rows is None else rows.order_by("pk")
    items, following = page_of(request, ordered, kept, query.cursor, query.limit)
    return {"items": _clients_out(items, token), "next": following}


@router.get(
    "/clients/{int:client_id}", response={200: ClientDetail, **WITH_404}, url_name="api-client"
)
def get_client(request: HttpRequest, client_id: int) -> dict[str, Any]:
    """One client of the firm."""
    token = token_of(request)
    client = Client.objects.filter(firm_id=token.firm_id, pk=client_id).first()
    if client is None:
        raise Http404
    return _clients_out([client], token)[0]
