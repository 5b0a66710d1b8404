"""`Idempotency-Key` on POST: a repeat gets the first answer instead of a second effect.

Kept per token for 24 hours: the key, a hash of the request (method, path, body) and the
response's status and body. The same key with the same request replays the response
(header `Idempotent-Replayed: true`); with a different request it is a 409 problem.
Answers that did not run the operation (401, 403, 429, server errors) are not kept, so
the client may simply retry them. A replay is answered before the rate limit is counted.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.utils import timezone

from casewatch.accounts.api_tokens import find_token
from casewatch.api.models import IdempotentResponse
from casewatch.api.problems import problem_response

HEADER = "Idempotency-Key"
KEPT_FOR = timedelta(hours=24)
MAX_KEY_LENGTH = 255
NOT_KEPT = frozenset({401, 403, 429})

Run = Callable[..., HttpResponseBase]


def _request_hash(request: HttpRequest) -> str:
    digest = hashlib.sha256()
    for part in ((request.method or "").encode(), request.get_full_path().encode()):
        digest.update(len(part).to_bytes(8, "big") + part)
    for part in _body_parts(request):
        digest.update(len(part).to_bytes(8, "big") + part)
    return digest.hexdigest()


def _body_parts(request: HttpRequest) -> Iterator[bytes]:
    """The body as bytes; an upload by its fields and files' contents instead.

    An uploaded spreadsheet may be larger than Django keeps in memory as the raw body
    (reading `request.body` would refuse it): its fields and files are hashed as the
    upload handlers stored them, which says the same about the request.
    """
    if request.content_type != "multipart/form-data":
        yield request.body
        return
    for name in sorted(request.POST):
        for value in request.POST.getlist(name):
            yield f"field:{name}={value}".encode()
    for name in sorted(request.FILES):
        for upload in request.FILES.getlist(name):
            yield f"file:{name}={upload.name}".encode()
            content = hashlib.sha256()
            for chunk in upload.chunks():
                content.update(chunk)
            upload.seek(0)
            yield content.digest()


def _bearer(request: HttpRequest) -> str:
    scheme, _, secret = request.headers.get("Authorization", "").partition(" ")
    return secret.strip() if scheme.lower() == "bearer" else ""


def idempotent(run: Run) -> Run:
    """Wrap an operation's run (ninja's decorate_view) with the key's replay and record."""

    @functools.wraps(run)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        key = request.headers.get(HEADER, "")
        if not key:
            return run(request, *args, **kwargs)
        if len(key) > MAX_KEY_LENGTH or not key.isprintable():
            return problem_response(400, f"{HEADER} must be at most 255 printable characters.")
        token = find_token(_bearer(request))
        if token is None:
            return run(request, *args, **kwargs)  # answered 401 by the authentication
        now = timezone.now()
        fingerprint = _request_hash(request)
        IdempotentResponse.objects.filter(created_at__lt=now - KEPT_FOR).delete()
        kept = IdempotentResponse.objects.filter(token=token, key=key).first()
        if kept is not None:
            if kept.request_hash != fingerprint:
                return problem_response(
                    409, f"This {HEADER} was used for a different request in the last 24 hours."
                )
            replay = HttpResponse(
                kept.body.encode("utf-8"),
                status=kept.status,
                content_type=_content_type(kept.status),
            )
            replay["Idempotent-Replayed"] = "true"
            return replay
        response = run(request, *args, **kwargs)
        if response.status_code < 500 and response.status_code not in NOT_KEPT:
            assert isinstance(response, HttpResponse)
            try:
                with transaction.atomic():
                    IdempotentResponse.objects.create(
                        token=token,
                        key=key,
                        request_hash=fingerprint,
                        status=response.status_code,
                        body=response.content.decode("utf-8"),
                        created_at=now,
                    )
            except IntegrityError:  # the same key answered a moment ago by another request
                pass
        return response

    return wrapper


def _content_type(status: int) -> str:
    return "application/json" if status < 400 else "application/problem+json"
