"""CSV exports of the firm's cases and status events, for the systems firms use.

`GET /exports/cases.csv` is the whole case list `GET /cases` would page through, with
the same filters and order, as one streamed file; `GET /exports/events.csv` is every
status change casewatch saw in a window (`since` inclusive, `until` exclusive), oldest
first, for a case-management system that pulls them on a schedule. The files' columns
are casewatch.cases.exports's, also what the staff app downloads. A read token gets
them without the personal columns (clients' names, e-mails, phones, case notes): they
are left out, not sent empty. Each export is audited ("cases.exported",
"events.exported") with what was asked for, never with what was sent.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.http import HttpRequest
from django.http.response import HttpResponseBase
from django.utils import timezone
from ninja import Field, Query, Router, Schema
from pydantic.json_schema import SkipJsonSchema

from casewatch.accounts.api_tokens import token_actor
from casewatch.accounts.models import ApiToken
from casewatch.api.auth import may_see_clients, token_of
from casewatch.api.cases import DEFAULT_LIMIT, ERRORS, CaseFilters, checked_filters
from casewatch.api.problems import Problem
from casewatch.audit.chain import record as audit
from casewatch.cases.exports import (
    audit_details,
    case_lines,
    csv_response,
    event_lines,
    file_name,
    firm_events,
)
from casewatch.cases.queries import matching_cases

router = Router(tags=["exports"])


class CaseExportFilters(CaseFilters):
    """The case list's filters; the file is the whole list, so there is no page to choose."""

    cursor: SkipJsonSchema[str | None] = None
    limit: SkipJsonSchema[int] = DEFAULT_LIMIT


class EventWindow(Schema):
    since: datetime | None = Field(
        None,
        description="only changes casewatch saw at or after this time (no offset: UTC); "
        "left out: from the first",
    )
    until: datetime | None = Field(
        None,
        description="only changes casewatch saw before this time (no offset: UTC); "
        "left out: up to now",
    )


def _csv(description: str) -> dict[str, Any]:
    """The operation's 200 answer in the schema: a CSV file, not JSON."""
    return {
        "responses": {
            200: {
                "description": description,
                "content": {"text/csv": {"schema": {"type": "string"}}},
            }
        }
    }


def _site(request: HttpRequest) -> str:
    """Where staff open case pages: CASEWATCH_PUBLIC_URL when set (as the staff app's
    links), else the address this request came to."""
    base: str | None = settings.CASEWATCH_PUBLIC_URL
    return base or request.build_absolute_uri("/").rstrip("/")


def _audited(action: str, token: ApiToken, details: dict[str, Any]) -> None:
    audit(
        action,
        object_type="firm",
        object_id=token.firm_id,
        firm_id=token.firm_id,
        actor=token_actor(token),
        details=details,
    )


@router.get(
    "/exports/cases.csv",
    response=ERRORS,
    openapi_extra=_csv("One row per case; see docs/api.md for the columns."),
    url_name="api-export-cases",
)
def export_cases(request: HttpRequest, filters: Query[CaseExportFilters]) -> HttpResponseBase:
    """The firm's cases as CSV: the filters and order of `GET /cases`, every match, streamed.

    Active cases unless `state` says otherwise. A read token's file has no client names,
    e-mails, phones or notes: those columns are left out.
    """
    token = token_of(request)
    parameters = checked_filters(filters, token)
    personal = may_see_clients(token)
    cases = matching_cases(token.firm, parameters)
    _audited("cases.exported", token, audit_details(personal=personal, filters=parameters))
    lines = case_lines(cases, personal=personal, site=_site(request))
    return csv_response(lines, file_name(token.firm.slug, "cases", timezone.now()))


def _utc(value: datetime | None, name: str) -> datetime | None:
    """A time of the query in UTC; one without an offset is taken as UTC."""
    if value is None:
        return None
    try:
        return value.replace(tzinfo=value.tzinfo or UTC).astimezone(UTC)
    except OverflowError:
        raise Problem(
            422,
            "This time cannot be read in UTC.",
            errors=[{"field": name, "in": "query", "message": "a time between years 1 and 9999"}],
        ) from None


@router.get(
    "/exports/events.csv",
    response=ERRORS,
    openapi_extra=_csv("One row per status change, oldest first; see docs/api.md."),
    url_name="api-export-events",
)
def export_events(request: HttpRequest, window: Query[EventWindow]) -> HttpResponseBase:
    """The firm's status changes as CSV, those casewatch saw from `since` (inclusive) to
    `until` (exclusive), oldest first, streamed. Pull [last until, now) on a schedule
    and no change is missed or sent twice; each row's `id` identifies the change."""
    token = token_of(request)
    since, until = _utc(window.since, "since"), _utc(window.until, "until")
    if since is not None and until is not None and until <= since:
        raise Problem(
            422,
            "The window is empty: `until` must be after `since`.",
            errors=[{"field": "until", "in": "query", "message": "must be after since"}],
        )
    personal = may_see_clients(token)
    _audited("events.exported", token, audit_details(personal=personal, since=since, until=until))
    lines = event_lines(
        firm_events(token.firm_id, since, until), personal=personal, site=_site(request)
    )
    return csv_response(lines, file_name(token.firm.slug, "events", timezone.now()))
