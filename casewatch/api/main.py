"""The API at /api/v1/: one NinjaAPI, bearer tokens, problem details, docs served locally.

The browsable docs are django-ninja's Swagger UI with the files the ninja package ships
(served by WhiteNoise from its static folder, "ninja" being an installed app): nothing
is fetched from a CDN.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.http.response import HttpResponseBase
from django.urls import URLPattern
from django.views.decorators.csrf import csrf_exempt
from ninja import NinjaAPI, Swagger
from ninja.openapi.schema import OpenAPISchema

from casewatch.api import (
    cases,
    clients,
    exports,
    imports,
    notifications,
    problems,
    status_checks,
)
from casewatch.api.auth import TokenAuth


class CasewatchAPI(NinjaAPI):
    """NinjaAPI whose schema says what is sent: errors as application/problem+json."""

    def get_openapi_schema(
        self, *, path_prefix: str | None = None, path_params: dict[str, Any] | None = None
    ) -> OpenAPISchema:
        schema = super().get_openapi_schema(path_prefix=path_prefix, path_params=path_params)
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                for status, response in operation.get("responses", {}).items():
                    content = response.get("content", {})
                    if int(status) >= 400 and "application/json" in content:
                        content[problems.CONTENT_TYPE] = content.pop("application/json")
        return schema


api = CasewatchAPI(
    title="casewatch API",
    version="1",
    description="Cases, status events and deadlines of one firm. See docs/api.md.",
    auth=TokenAuth(),
    urls_namespace="api",
    docs=Swagger(),
    docs_url="/docs",
    openapi_url="/openapi.json",
)
api.add_router("/", cases.router)
api.add_router("/", imports.router)
api.add_router("/", notifications.router)
api.add_router("/", clients.router)
api.add_router("/", exports.router)
api.add_router("/", status_checks.router)
problems.install(api)

View = Callable[..., HttpResponseBase]


def _method_problem(view: View) -> View:
    """ninja answers a method a path does not take with plain text: make it a problem."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        response = view(request, *args, **kwargs)
        if isinstance(response, HttpResponseNotAllowed):
            return problems.problem_response(
                405,
                f"{request.method} is not an operation of this address.",
                headers={"Allow": response["Allow"]},
            )
        return response

    return wrapper


def urls() -> tuple[list[Any], str, str]:
    """The API's URL patterns, for casewatch.urls, every answer a problem when refused."""
    patterns, app_name, namespace = api.urls
    for pattern in patterns:
        if isinstance(pattern, URLPattern):
            pattern.callback = _method_problem(pattern.callback)
    return patterns, app_name, namespace


@csrf_exempt
def not_found(request: HttpRequest, rest: str) -> HttpResponse:
    """Any other address under /api/v1/, whatever the method: a problem body, not the staff
    app's 404 page (nor its CSRF refusal: the API has no session to protect)."""
    return problems.problem_response(404, "No such address in the API; see /api/v1/docs.")
