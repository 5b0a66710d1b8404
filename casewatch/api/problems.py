"""Errors as RFC 9457 problem details: one body shape for every refusal the API makes.

`type` is a stable URI per kind of problem (a relative reference, resolved against the
API's address), `title` its short name, `detail` this occurrence; validation problems
add `errors`, one entry per field.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.http import Http404, HttpRequest, HttpResponse
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError

CONTENT_TYPE = "application/problem+json"
TYPE_BASE = "/api/v1/problems/"

log = logging.getLogger(__name__)

# The problems the API knows, by HTTP status: (type slug, title).
KINDS: Mapping[int, tuple[str, str]] = {
    400: ("bad-request", "Bad request"),
    401: ("unauthorized", "A valid API token is needed"),
    403: ("forbidden", "The token's scope does not allow this"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    409: ("conflict", "Conflict"),
    413: ("too-large", "Content too large"),
    422: ("invalid", "The request is not valid"),
    429: ("rate-limited", "Too many requests"),
    500: ("server-error", "Server error"),
}


class Problem(Exception):
    """Raised anywhere in an operation to answer with a problem body."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        errors: Sequence[Mapping[str, Any]] = (),
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.errors = list(errors)
        self.headers = dict(headers or {})


def problem_body(status: int, detail: str, errors: Sequence[Mapping[str, Any]] = ()) -> bytes:
    slug, title = KINDS.get(status, KINDS[400] if status < 500 else KINDS[500])
    body: dict[str, Any] = {
        "type": TYPE_BASE + slug,
        "title": title,
        "status": status,
        "detail": detail,
    }
    if errors:
        body["errors"] = list(errors)
    return json.dumps(body, ensure_ascii=False, default=str).encode("utf-8")


def problem_response(
    status: int,
    detail: str,
    *,
    errors: Sequence[Mapping[str, Any]] = (),
    headers: Mapping[str, str] | None = None,
) -> HttpResponse:
    response = HttpResponse(
        problem_body(status, detail, errors), status=status, content_type=CONTENT_TYPE
    )
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def _field_errors(exc: ValidationError) -> list[dict[str, Any]]:
    """Pydantic's errors as `{"field", "in", "message"}`: where and what, never the value."""
    found = []
    for error in exc.errors:
        location = [str(part) for part in error.get("loc", ())]
        where = location[0] if location else "body"
        field = ".".join(location[1:]) or where
        found.append({"field": field, "in": where, "message": str(error.get("msg", "invalid"))})
    return found


def install(api: NinjaAPI) -> None:
    """Make every error the API answers a problem body."""

    @api.exception_handler(Problem)
    def on_problem(request: HttpRequest, exc: Problem) -> HttpResponse:
        return problem_response(exc.status, exc.detail, errors=exc.errors, headers=exc.headers)

    @api.exception_handler(ValidationError)
    def on_invalid(request: HttpRequest, exc: ValidationError) -> HttpResponse:
        return problem_response(
            422, "Some fields are missing or not valid.", errors=_field_errors(exc)
        )

    @api.exception_handler(AuthenticationError)
    def on_unauthenticated(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
        return problem_response(
            401,
            "Send a live token as 'Authorization: Bearer TOKEN'.",
            headers={"WWW-Authenticate": 'Bearer realm="casewatch"'},
        )

    @api.exception_handler(Http404)
    def on_not_found(request: HttpRequest, exc: Http404) -> HttpResponse:
        return problem_response(404, "No such object of this firm.")

    @api.exception_handler(HttpError)
    def on_http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
        return problem_response(exc.status_code, str(exc))

    @api.exception_handler(RequestDataTooBig)
    @api.exception_handler(TooManyFieldsSent)
    @api.exception_handler(TooManyFilesSent)
    def on_too_large(request: HttpRequest, exc: Exception) -> HttpResponse:
        return problem_response(
            413,
            f"The request body is larger than the {settings.DATA_UPLOAD_MAX_MEMORY_SIZE:,} "
            "bytes casewatch reads at once; nothing was changed. Send fewer items per "
            "request, or upload a spreadsheet to POST /api/v1/cases/import.",
        )

    @api.exception_handler(Exception)
    def on_unexpected(request: HttpRequest, exc: Exception) -> HttpResponse:
        log.exception("API error on %s %s", request.method, request.path)
        return problem_response(500, "Something went wrong on casewatch's side.")
