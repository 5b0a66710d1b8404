"""One-click unsubscribe from client e-mail (RFC 8058), at the link every client e-mail carries.

A POST to the link withdraws the client's consent for e-mail at once: the mail
provider's one-click button posts without a form, so this view takes no CSRF token
(the signed token is the proof). A GET only asks, in the client's language, so that
a link scanner opening the URL unsubscribes no one. A forged token gets the portal's
one "not found" page.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from casewatch.cases.models import Client
from casewatch.notify.consent import has_consent, record_consent
from casewatch.notify.messages import client_language
from casewatch.notify.unsubscribe import read_unsubscribe_token
from casewatch.portal.texts import texts_for
from casewatch.portal.views import not_found, protected

# This page posts back to itself, unlike the portal page, which has no form at all.
POLICY = (
    "default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)


@csrf_exempt
def unsubscribe(request: HttpRequest, token: str) -> HttpResponse:
    if request.method not in ("GET", "HEAD", "POST"):
        return protected(HttpResponseNotAllowed(("GET", "POST")))
    wanted = read_unsubscribe_token(token)
    client = (
        Client.objects.select_related("firm").filter(pk=wanted.client_id).first()
        if wanted is not None and wanted.channel == "email"
        else None
    )
    if client is None:
        return not_found(request)
    language = client_language(client.language or "")
    done = request.method == "POST"
    if done and has_consent(client, "email"):
        record_consent(
            client,
            "email",
            granted=False,
            at=timezone.now(),
            actor="client",
            method="unsubscribe_link",
            language=language,
        )
    texts = texts_for(language)
    context = {
        "t": texts,
        "lang": language,
        "direction": texts.direction,
        "done": done,
        "question": texts.say("unsubscribe_question", firm=client.firm.name),
    }
    response = protected(render(request, "portal/unsubscribe.html", context))
    response["Content-Security-Policy"] = POLICY
    response["Content-Language"] = language
    return response
