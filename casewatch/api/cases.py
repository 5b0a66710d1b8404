"""Cases, their status events and deadlines, as the firm's own systems read and write them.

Everything is found within the token's firm: another firm's case is a 404, exactly as
one that does not exist. Lists take the web app's filters (casewatch.cases.queries)
and are read a page at a time with an opaque `cursor`; each page gives the `next` URL.
Client names, e-mails and phones (and a case's notes) are in answers to write tokens
only, for now: a read token is for status, not for personal data.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from django.http import Http404, HttpRequest
from ninja import Field, Query, Router, Schema
from ninja.decorators import decorate_view
from ninja.params.functions import Header
from ninja.responses import Status

from casewatch.accounts.api_tokens import token_actor
from casewatch.accounts.models import ApiToken
from casewatch.api.auth import may_see_clients, token_of
from casewatch.api.idempotency import idempotent
from casewatch.api.pages import DEFAULT_LIMIT as DEFAULT_LIMIT  # for casewatch.api.exports
from casewatch.api.pages import MAX_LIMIT, PageQuery, page_of
from casewatch.api.problems import Problem
from casewatch.cases.editing import change_case
from casewatch.cases.intake import DuplicateCase, add_case
from casewatch.cases.models import Case, Deadline, StatusEvent
from casewatch.cases.queries import (
    ASSIGNABLE,
    RECEIPT_STATES,
    SORTS,
    STATES,
    clean_parameters,
    matching_cases,
    members,
    receipt_search,
)
from casewatch.cases.sheet import (
    RawRow,
    clean_form_type,
    clean_language,
    split_tags,
    validate_row,
)
from casewatch.core.receipts import InvalidReceipt, parse_receipt
from casewatch.core.statuses import CATEGORIES, URGENCIES
from casewatch.monitor.archiving import set_archived

router = Router(tags=["cases"])

# Documents the header casewatch.api.idempotency reads before the operation runs.
IDEMPOTENCY_KEY = Header(
    None,
    alias="Idempotency-Key",
    max_length=255,
    description="a repeat within 24 h with the same request gets the first answer again",
)

# --- Schemas ----------------------------------------------------------------------------


class ProblemOut(Schema):
    type: str
    title: str
    status: int
    detail: str
    errors: list[dict[str, Any]] | None = None


class ClientOut(Schema):
    id: int
    reference: str = Field(description="the firm's own client id")
    language: str
    name: str | None = Field(None, description="write tokens only")
    email: str | None = Field(None, description="write tokens only")
    phone: str | None = Field(None, description="write tokens only")


class CaseOut(Schema):
    id: int
    receipt_number: str | None = Field(description="null while the receipt is pending")
    form_type: str
    status: str
    category: str
    urgency: str
    title_en: str
    title_es: str
    status_since: datetime | None
    uscis_status_since: datetime | None
    archived_at: datetime | None
    attorney_id: int | None
    paralegal_id: int | None
    tags: list[str]
    notes: str | None = Field(None, description="write tokens only")
    client: ClientOut | None
    last_checked_at: datetime | None
    created_at: datetime
    updated_at: datetime


class CasePage(Schema):
    items: list[CaseOut]
    next: str | None = Field(description="the next page's URL; null on the last page")


class EventOut(Schema):
    id: int
    case_id: int
    receipt_number: str | None
    status: str
    previous_status: str
    category: str
    urgency: str
    title_en: str
    title_es: str
    description_en: str
    description_es: str
    uscis_date: datetime | None
    observed_at: datetime
    initial: bool
    recovered: bool


class EventPage(Schema):
    items: list[EventOut]
    next: str | None


class DeadlineOut(Schema):
    id: int
    case_id: int
    receipt_number: str | None
    kind: str
    due_on: date = Field(description="the date casewatch computed")
    firm_due_on: date | None = Field(description="the firm's own date, when it set one")
    effective_due_on: date
    completed_at: datetime | None
    created_at: datetime


class DeadlinePage(Schema):
    items: list[DeadlineOut]
    next: str | None


class CaseFilters(Schema):
    """The web app's case-list filters, with the same meanings."""

    q: str | None = Field(None, max_length=200, description="a receipt (or its start) or a name")
    category: str | None = Field(None, description="a status category")
    urgency: str | None = Field(None, description="action, progress, info or review")
    form: str | None = Field(None, max_length=200, description="a form type, like I-485")
    attorney: str | None = Field(None, max_length=20, description="a member's id, or none")
    tag: str | None = Field(None, max_length=200)
    receipt: str | None = Field(None, description="pending or known")
    state: str | None = Field(None, description="active (default), archived or all")
    sort: str | None = Field(None, description="recent, oldest, receipt, form, added, archived")
    cursor: str | None = Field(None, max_length=2000)
    limit: int = Field(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)


class EventQuery(PageQuery):
    since: datetime | None = Field(None, description="only events casewatch saw at or after")


class DeadlineQuery(PageQuery):
    open: bool = Field(True, description="only deadlines not yet done")
    due_after: date | None = None
    due_before: date | None = None


class CaseIn(Schema):
    """One case, its fields named as the import's columns; judged by the import's rules."""

    receipt_number: str = Field("", max_length=60)
    form_type: str = Field("", max_length=40)
    client_name: str = Field("", max_length=300)
    client_id: str = Field("", max_length=200, description="the firm's own client id")
    client_email: str = Field("", max_length=320)
    client_phone: str = Field("", max_length=60)
    client_language: str = Field("", max_length=60)
    attorney_id: int | None = None
    paralegal_id: int | None = None
    tags: list[str] = Field(default_factory=list, max_length=50)
    notes: str = Field("", max_length=10_000)


class CasePatch(Schema):
    receipt_number: str | None = Field(None, max_length=60, description="only while pending")
    form_type: str | None = Field(None, max_length=40)
    attorney_id: int | None = None
    paralegal_id: int | None = None
    tags: list[str] | None = Field(None, max_length=50)
    client_language: str | None = Field(None, max_length=60, description="a code or a name")


# Which values an enumerated filter takes: anything else is a 422, not an empty list.
CHOICES: dict[str, tuple[str, ...]] = {
    "category": tuple(CATEGORIES),
    "urgency": URGENCIES,
    "receipt": tuple(RECEIPT_STATES),
    "state": tuple(STATES),
    "sort": tuple(SORTS),
}

ERRORS: dict[int | str, Any] = {401: ProblemOut, 403: ProblemOut, 422: ProblemOut, 429: ProblemOut}
WITH_404 = {**ERRORS, 404: ProblemOut}
POSTED = {**WITH_404, 400: ProblemOut, 409: ProblemOut}


def tags_cell(tags: list[str]) -> str:
    """A list of tags as the import's tags cell: a comma inside a tag cannot split it."""
    return ", ".join(tag.replace(",", " ") for tag in tags)


# --- Answers ------------------------------------------------------------------------------


def case_out(case: Case, token: ApiToken) -> dict[str, Any]:
    personal = may_see_clients(token)
    client = case.client
    return {
        "id": case.pk,
        "receipt_number": case.receipt_number,
        "form_type": case.form_type,
        "status": case.status,
        "category": case.category,
        "urgency": case.urgency,
        "title_en": case.title_en,
        "title_es": case.title_es,
        "status_since": case.status_since,
        "uscis_status_since": case.uscis_status_since,
        "archived_at": case.archived_at,
        "attorney_id": case.attorney_id,
        "paralegal_id": case.paralegal_id,
        "tags": [str(tag) for tag in case.tags],
        "notes": case.notes if personal else None,
        "client": None
        if client is None
        else {
            "id": client.pk,
            "reference": client.reference,
            "language": client.language or "en",
            "name": client.name if personal else None,
            "email": client.email if personal else None,
            "phone": client.phone if personal else None,
        },
        "last_checked_at": case.last_checked_at,
        "created_at": case.created_at,
        "updated_at": case.updated_at,
    }


def event_out(event: StatusEvent) -> dict[str, Any]:
    return {
        "id": event.pk,
        "case_id": event.case_id,
        "receipt_number": event.case.receipt_number,
        **{
            name: getattr(event, name)
            for name in (
                "status",
                "previous_status",
                "category",
                "urgency",
                "title_en",
                "title_es",
                "description_en",
                "description_es",
                "uscis_date",
                "observed_at",
                "initial",
                "recovered",
            )
        },
    }


def deadline_out(deadline: Deadline) -> dict[str, Any]:
    return {
        "id": deadline.pk,
        "case_id": deadline.case_id,
        "receipt_number": deadline.case.receipt_number,
        "kind": deadline.kind,
        "due_on": deadline.due_on,
        "firm_due_on": deadline.firm_due_on,
        "effective_due_on": deadline.effective_due_on,
        "completed_at": deadline.completed_at,
        "created_at": deadline.created_at,
    }


# --- Filters ------------------------------------------------------------------------------


def checked_filters(filters: CaseFilters, token: ApiToken) -> dict[str, str]:
    """The filters as the case list reads them; a 422 for an unknown value, and a 403 for
    a read token searching by name (it would learn who the firm's clients are)."""
    errors = [
        {"field": name, "in": "query", "message": f"one of: {', '.join(allowed)}"}
        for name, allowed in CHOICES.items()
        if getattr(filters, name) not in (None, "", *allowed)
    ]
    if errors:
        raise Problem(422, "Some filters have values casewatch does not know.", errors=errors)
    parameters = clean_parameters({k: v for k, v in filters.dict().items() if isinstance(v, str)})
    searched = parameters.get("q", "")
    if searched and receipt_search(searched) is None and not may_see_clients(token):
        raise Problem(
            403, "A read token searches by receipt; searching by name needs a write token."
        )
    return parameters


def _case_of(token: ApiToken, pk: int) -> Case:
    case = Case.objects.select_related("client").filter(firm_id=token.firm_id, pk=pk).first()
    if case is None:
        raise Http404
    return case


# --- Operations ---------------------------------------------------------------------------


@router.get("/cases", response={200: CasePage, **ERRORS, 400: ProblemOut}, url_name="api-cases")
def list_cases(request: HttpRequest, filters: Query[CaseFilters]) -> dict[str, Any]:
    """The firm's cases, filtered and sorted as in the web app's case list, a page at a time.

    Every sort is read from the last case's place in it, not by an offset: a case added,
    archived or removed while you follow `next` moves no other case, so each case that
    matches throughout and keeps its place is read exactly once. A case whose sort
    column changes meanwhile moves with it and may be read twice or not at all in this
    walk: its status (sorts `recent`, `oldest`, `form`), its archiving (`archived`), its
    receipt given while pending (`receipt`). `added` never moves.
    """
    # Keyset on every sort, on the sort's own columns (casewatch.api.pages), rather than
    # offsets for the sorts on mutable, nullable columns (status_since, archived_at,
    # receipt_number): with an offset, a case changing status also shifted every case
    # between its old and new place by one, so other cases were repeated or skipped;
    # with keyset only the case that moved is affected. NULLs keep each database's own
    # place (PostgreSQL last ascending, SQLite first), so the order is the web app's.
    token = token_of(request)
    parameters = checked_filters(filters, token)
    found = matching_cases(token.firm, parameters)
    rows = None if found is None else found.select_related("client")
    items, following = page_of(request, rows, parameters, filters.cursor, filters.limit)
    return {"items": [case_out(case, token) for case in items], "next": following}


def _member_errors(token: ApiToken, chosen: dict[str, int | None]) -> list[dict[str, str]]:
    """Attorneys and paralegals must be members of the firm in a role that may be named."""
    errors = []
    for name, roles in ASSIGNABLE.items():
        pk = chosen.get(f"{name}_id")
        if pk is not None and not members(token.firm, roles).filter(pk=pk).exists():
            errors.append(
                {
                    "field": f"{name}_id",
                    "in": "body",
                    "message": f"not a member of the firm who may be named {name}",
                }
            )
    return errors


@router.post("/cases", response={201: CaseOut, **POSTED}, url_name="api-cases")
@decorate_view(idempotent)
def create_case(
    request: HttpRequest, case: CaseIn, idempotency_key: str | None = IDEMPOTENCY_KEY
) -> Status[dict[str, Any]]:
    """Add one case by the rules of the web form and `casewatch import`.

    A bad optional field is refused with the import's own message (422); a receipt
    the firm already tracks is a 409; the receipt may be left out while pending, if
    the client's name or id is given.
    """
    token = token_of(request)
    values = {
        "receipt_number": case.receipt_number.strip(),
        "form_type": case.form_type.strip(),
        "client_name": case.client_name.strip(),
        "client_id": case.client_id.strip(),
        "client_email": case.client_email.strip(),
        "client_phone": case.client_phone.strip(),
        "client_language": case.client_language.strip(),
        "tags": tags_cell(case.tags),
        "notes": case.notes.strip(),
    }
    errors: list[dict[str, str]] = []
    row = validate_row(RawRow(1, values), receipt_required=False)
    if row.rejected:
        errors.extend(
            {"field": e.column or "receipt_number", "in": "body", "message": e.message}
            for e in row.errors
        )
        row = validate_row(RawRow(1, {**values, "receipt_number": ""}), receipt_required=False)
    for error in row.errors:
        column = error.column or ""
        kept = row.receipt_number if column == "receipt_number" else getattr(row, column, "")
        if not kept and column:
            errors.append({"field": column, "in": "body", "message": error.message})
    errors.extend(
        _member_errors(token, {"attorney_id": case.attorney_id, "paralegal_id": case.paralegal_id})
    )
    if not errors and not (row.receipt_number or row.client_name or row.client_id):
        errors.append(
            {
                "field": "receipt_number",
                "in": "body",
                "message": "give the receipt number or, while it is pending, "
                "the client's name or client id",
            }
        )
    if errors:
        raise Problem(422, "The case was not added.", errors=errors)
    try:
        added = add_case(
            token.firm,
            row,
            attorney=None if case.attorney_id is None else members_by_pk(token, case.attorney_id),
            paralegal=None
            if case.paralegal_id is None
            else members_by_pk(token, case.paralegal_id),
            actor=token_actor(token),
        )
    except DuplicateCase as duplicate:
        raise Problem(
            409,
            f"{duplicate.case.receipt_number} is already case {duplicate.case.pk} of the firm.",
        ) from None
    return Status(201, case_out(_case_of(token, added.pk), token))


def members_by_pk(token: ApiToken, pk: int) -> Any:
    return members(token.firm, tuple({r for roles in ASSIGNABLE.values() for r in roles})).get(
        pk=pk
    )


@router.get("/cases/{int:case_id}", response={200: CaseOut, **WITH_404}, url_name="api-case")
def get_case(request: HttpRequest, case_id: int) -> dict[str, Any]:
    """One case of the firm."""
    token = token_of(request)
    return case_out(_case_of(token, case_id), token)


@router.patch("/cases/{int:case_id}", response={200: CaseOut, **POSTED}, url_name="api-case")
def update_case(request: HttpRequest, case_id: int, patch: CasePatch) -> dict[str, Any]:
    """Change a case's form, tags, attorney, paralegal or client's language, or give its
    pending receipt; judged field by field, saved and audited as the web form's edit."""
    token = token_of(request)
    case = _case_of(token, case_id)
    given = patch.dict(exclude_unset=True)
    errors = _member_errors(token, given)
    data: dict[str, Any] = {}
    if given.get("receipt_number"):
        try:
            receipt = parse_receipt(given["receipt_number"]).number
        except InvalidReceipt as exc:
            errors.append({"field": "receipt_number", "in": "body", "message": str(exc)})
        else:
            if receipt != case.receipt_number:
                if not case.receipt_pending:
                    raise Problem(409, "The case has its receipt number; it cannot be changed.")
                if Case.objects.filter(firm_id=token.firm_id, receipt_number=receipt).exists():
                    raise Problem(409, f"{receipt} is already a case of the firm.")
                data["receipt_number"] = receipt
    for name, clean in (("form_type", clean_form_type), ("client_language", clean_language)):
        if given.get(name) is not None:
            value, problem = clean(given[name]) if given[name].strip() else ("", None)
            if problem and not value:
                errors.append({"field": name, "in": "body", "message": str(problem)})
            else:  # a kept value with a warning ("names more than one language"): the first
                data[name] = value
    if given.get("tags") is not None:
        data["tags"] = split_tags(tags_cell(given["tags"]))
    for name in ("attorney", "paralegal"):
        if f"{name}_id" in given:
            data[name] = given[f"{name}_id"]
    if errors:
        raise Problem(422, "The case was not changed.", errors=errors)
    change_case(case, data, actor=token_actor(token))
    return case_out(case, token)


@router.post(
    "/cases/{int:case_id}/archive", response={200: CaseOut, **POSTED}, url_name="api-case-archive"
)
@decorate_view(idempotent)
def archive_case(
    request: HttpRequest, case_id: int, idempotency_key: str | None = IDEMPOTENCY_KEY
) -> dict[str, Any]:
    """Archive a case: casewatch keeps asking USCIS until its status is final, as for a
    case archived in the web app. Archiving twice changes nothing."""
    token = token_of(request)
    case = _case_of(token, case_id)
    set_archived(case, True, actor=token_actor(token))
    return case_out(case, token)


@router.get(
    "/cases/{int:case_id}/events",
    response={200: EventPage, **WITH_404, 400: ProblemOut},
    url_name="api-case-events",
)
def case_events(request: HttpRequest, case_id: int, page: Query[PageQuery]) -> dict[str, Any]:
    """A case's status changes, oldest first."""
    token = token_of(request)
    case = _case_of(token, case_id)
    rows = (
        StatusEvent.objects.filter(case=case).select_related("case").order_by("observed_at", "pk")
    )
    items, following = page_of(request, rows, {}, page.cursor, page.limit)
    return {"items": [event_out(event) for event in items], "next": following}


@router.get("/events", response={200: EventPage, **ERRORS, 400: ProblemOut}, url_name="api-events")
def firm_events(request: HttpRequest, page: Query[EventQuery]) -> dict[str, Any]:
    """Every status change of the firm's cases, oldest first; `since` for today's changes."""
    token = token_of(request)
    rows = StatusEvent.objects.filter(firm_id=token.firm_id)
    query: dict[str, str] = {}
    if page.since is not None:
        rows = rows.filter(observed_at__gte=page.since)
        query["since"] = page.since.isoformat()
    rows = rows.select_related("case").order_by("observed_at", "pk")
    items, following = page_of(request, rows, query, page.cursor, page.limit)
    return {"items": [event_out(event) for event in items], "next": following}


@router.get(
    "/deadlines", response={200: DeadlinePage, **ERRORS, 400: ProblemOut}, url_name="api-deadlines"
)
def deadlines(request: HttpRequest, page: Query[DeadlineQuery]) -> dict[str, Any]:
    """The firm's deadlines by date (the firm's own date where it set one)."""
    token = token_of(request)
    rows = Deadline.objects.filter(firm_id=token.firm_id)
    query: dict[str, str] = {"open": str(page.open).lower()}
    if page.open:
        rows = rows.filter(completed_at__isnull=True)
    for name, lookup in (("due_after", "due_on__gte"), ("due_before", "due_on__lte")):
        value = getattr(page, name)
        if value is not None:
            rows = rows.filter(**{lookup: value})
            query[name] = value.isoformat()
    rows = rows.select_related("case").order_by("due_on", "pk")
    items, following = page_of(request, rows, query, page.cursor, page.limit)
    return {"items": [deadline_out(deadline) for deadline in items], "next": following}
