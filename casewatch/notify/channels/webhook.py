"""Outbound webhooks: a signed JSON POST to a URL of the firm's own systems.

What a firm's endpoint receives (one POST per notification)::

    POST <the endpoint's URL>
    Content-Type: application/json
    User-Agent: casewatch-webhooks/1
    X-Casewatch-Event: status_change
    X-Casewatch-Delivery: <notification id, stable across retries>
    Idempotency-Key: <the same>
    X-Casewatch-Signature: t=<Unix seconds>,v1=<64 hex digits>

    {"id": "…", "event": "status_change", "created_at": "2026-03-02T15:00:00Z", …}

Verifying it: take `t` and `v1` from X-Casewatch-Signature, compute
HMAC-SHA256 with the endpoint's secret over the bytes `t` + "." + the raw
request body, compare the hex digest with `v1` in constant time, and refuse a
`t` more than five minutes from your clock (a replay). For example, with the
secret `example-secret`, `t=1767225600` and the body
`{"event":"status_change","id":"example"}`, v1 is
`ded258c5f62de5c81cfb6b2007512b555696f175af10084cec4279ff2643c926`. A retry carries the same
body and delivery id with a new `t`; drop deliveries whose id you have seen.

Answers: 2xx is delivered; 410 Gone means the endpoint was removed (casewatch
disables it); any other 3xx or 4xx is a refusal and is not retried (redirects
are not followed); 429, 5xx, timeouts and refused connections are retried with
back-off. Five deliveries in a row failed for good also disable the endpoint
(notify/dispatch.py). The firm-facing version of this is docs/api.md, Webhooks.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any

import httpx

from casewatch.notify.channels.base import Outgoing, SendResult, Transport
from casewatch.notify.channels.errors import retry_after_seconds, scrub, unreachable

SIGNATURE_HEADER = "X-Casewatch-Signature"
EVENT_HEADER = "X-Casewatch-Event"
DELIVERY_HEADER = "X-Casewatch-Delivery"
IDEMPOTENCY_HEADER = "Idempotency-Key"
USER_AGENT = "casewatch-webhooks/1"
# A receiver should refuse signatures older (or newer) than this.
TOLERANCE_SECONDS = 300


def webhook_body(payload: Any) -> bytes:
    """The exact bytes sent and signed: compact JSON, keys sorted, UTF-8."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode()


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The X-Casewatch-Signature value for `body` sent at `timestamp` (Unix seconds)."""
    signed = str(timestamp).encode("ascii") + b"." + body
    digest = hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify(
    secret: str, header: str, body: bytes, *, now: float, tolerance: float = TOLERANCE_SECONDS
) -> bool:
    """What a receiver does: the signature matches and its time is within the tolerance."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    stamp, given = fields.get("t", ""), fields.get("v1", "")
    if not stamp.isdigit() or abs(now - int(stamp)) > tolerance:
        return False
    expected = signature(secret, int(stamp), body).rpartition("v1=")[2]
    return hmac.compare_digest(expected, given)


class WebhookTransport(Transport):
    """Signed POSTs to any endpoint; one HTTP client kept between sends."""

    channel = "webhook"

    def __init__(
        self,
        *,
        timeout: float = 15.0,
        http: httpx.Client | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._http = http or httpx.Client(
            timeout=timeout, follow_redirects=False, headers={"User-Agent": USER_AGENT}
        )
        self._clock = clock

    def send(self, outgoing: Outgoing) -> SendResult:
        if not outgoing.signing_secret:
            return SendResult(
                outcome="permanent",
                error_code="no_secret",
                detail="the endpoint has no signing secret; nothing is sent unsigned",
            )
        body = webhook_body(outgoing.payload)
        headers = {
            "Content-Type": "application/json",
            EVENT_HEADER: outgoing.event_type,
            DELIVERY_HEADER: outgoing.idempotency_key,
            IDEMPOTENCY_HEADER: outgoing.idempotency_key,
            SIGNATURE_HEADER: signature(outgoing.signing_secret, int(self._clock()), body),
            **outgoing.extra_headers,
        }
        try:
            answer = self._http.post(outgoing.address, content=body, headers=headers)
        except httpx.TimeoutException as exc:
            return unreachable(f"no answer in time: {type(exc).__name__}", code="timeout")
        except httpx.HTTPError as exc:
            return unreachable(f"{type(exc).__name__}: {exc}", address=outgoing.address)
        status = answer.status_code
        if answer.is_success:
            return SendResult(outcome="sent", http_status=status)
        detail = scrub(f"{status} {answer.reason_phrase}: {answer.text[:200]}", outgoing.address)
        if status == 429 or status >= 500:
            return SendResult(
                outcome="transient",
                http_status=status,
                error_code=str(status),
                detail=detail,
                retry_after=retry_after_seconds(answer.headers.get("Retry-After")),
            )
        if status == 410:
            detail = f"410 Gone: the endpoint was removed. {detail}"
        return SendResult(
            outcome="permanent", http_status=status, error_code=str(status), detail=detail
        )

    def close(self) -> None:
        self._http.close()


__all__ = [
    "DELIVERY_HEADER",
    "EVENT_HEADER",
    "IDEMPOTENCY_HEADER",
    "SIGNATURE_HEADER",
    "WebhookTransport",
    "signature",
    "verify",
    "webhook_body",
]
