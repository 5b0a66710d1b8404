"""URL routes: the staff app, portal, API and webhooks mount here as they land."""

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import path

from casewatch.config import BUILTIN_SANDBOX_PREFIX, uscis_settings


def home(request: HttpRequest) -> HttpResponse:
    sandbox_url = None
    if uscis_settings().uses_builtin_sandbox:
        sandbox_url = request.build_absolute_uri(BUILTIN_SANDBOX_PREFIX)
    return render(request, "home.html", {"sandbox_url": sandbox_url})


def health(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"ok": True})


urlpatterns = [path("", home, name="home"), path("health", health, name="health")]
