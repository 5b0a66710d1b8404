"""The client portal's one page, at /portal/<secret>/, and its one "not found".

A wrong, expired or revoked link gets the same plain 404 page, in every client language,
with the same headers, so nothing tells a guesser that a client exists. The secret is in
the address, so no page lets it leak: no referrer, not cached, not indexed, not framed,
no script and no form (the language switcher is a set of plain links). The language a
client picks is remembered in this browser's session, for this link only; their
language at the firm stays as the firm recorded it.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import render
from django.utils import timezone

from casewatch.audit import access
from casewatch.notify.messages import CLIENT_LANGUAGES, client_language
from casewatch.notify.models import PortalLink
from casewatch.notify.portal_links import record_visit, verify_link
from casewatch.portal.page import portal_page
from casewatch.portal.texts import texts_for

SESSION_KEY = "casewatch_portal_language"
LANGUAGE_PARAMETER = "lang"
# The page loads its stylesheet and nothing else.
POLICY = (
    "default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)


def protected(response: HttpResponse) -> HttpResponse:
    """Headers for a page whose address is a secret."""
    response["Referrer-Policy"] = "no-referrer"
    response["X-Robots-Tag"] = "noindex, nofollow"
    response["Cache-Control"] = "private, no-store"
    response["Content-Security-Policy"] = POLICY
    response["X-Frame-Options"] = "DENY"
    return response


def not_found(request: HttpRequest) -> HttpResponse:
    """The one answer to any link that does not open a portal, in every client language."""
    notices = [texts_for(code) for code in CLIENT_LANGUAGES]
    context = {"notices": notices, "lang": "en", "direction": "ltr"}
    return protected(render(request, "portal/not_found.html", context, status=404))


def chosen_language(request: HttpRequest, link: PortalLink) -> str:
    """The language the client picked on this link in this browser, else their own."""
    picked: dict[str, str] = dict(request.session.get(SESSION_KEY) or {})
    asked = request.GET.get(LANGUAGE_PARAMETER, "")
    if asked in CLIENT_LANGUAGES and picked.get(str(link.pk)) != asked:
        picked[str(link.pk)] = asked
        request.session[SESSION_KEY] = picked
    remembered = picked.get(str(link.pk), "")
    if remembered in CLIENT_LANGUAGES:
        return remembered
    return client_language(link.client.language or "")


def portal(request: HttpRequest, token: str) -> HttpResponse:
    """A client's cases in plain words; every opening is counted for the firm."""
    if request.method not in ("GET", "HEAD"):
        return protected(HttpResponseNotAllowed(("GET", "HEAD")))
    now = timezone.now()
    link = verify_link(token, at=now)
    if link is None:
        return not_found(request)
    language = chosen_language(request, link)
    if request.method == "GET":  # a HEAD (a link checker, a preview) is not a client reading
        record_visit(link, at=now)
        access.record(
            firm_id=link.client.firm_id,
            actor=f"portal-link:{link.pk}",
            page="portal",
            object_type="client",
            object_id=link.client_id,
            address=request.META.get("REMOTE_ADDR"),
            at=now,
        )
    page = portal_page(link, language, now)
    context = {"page": page, "t": page.texts, "lang": language, "direction": page.texts.direction}
    response = render(request, "portal/page.html", context)
    response["Content-Language"] = language
    return protected(response)
