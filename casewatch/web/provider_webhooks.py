"""The providers' webhooks: /webhooks/whatsapp and /webhooks/twilio (spec/cli.md).

Each request is verified before anything in it is read: Meta's X-Hub-Signature-256
over the raw body, Twilio's X-Twilio-Signature over the URL and form. A forgery gets
403 and one line on the "casewatch.security" log (never the body or a number).
What is verified goes to notify.receipts (delivery statuses) and notify.inbound
(client messages); the views only unpack the providers' envelopes.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from datetime import UTC, datetime
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods
from twilio.request_validator import RequestValidator  # type: ignore[import-untyped]

from casewatch import config
from casewatch.notify.inbound import handle_inbound
from casewatch.notify.models import Channel
from casewatch.notify.receipts import CALLBACK_KEY_PARAM, apply_receipt

log = logging.getLogger(__name__)
security = logging.getLogger("casewatch.security")

EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'

# The longest provider id and error code the database keeps (notify.models): a longer
# id is no real provider's and reads as missing; a longer code is cut.
ID_LIMIT = 128
CODE_LIMIT = 32


def _refuse(provider: str, reason: str, request: HttpRequest) -> HttpResponse:
    security.warning(
        "refused a %s webhook: %s (%s %s from %s)",
        provider,
        reason,
        request.method,
        request.path,
        request.META.get("REMOTE_ADDR", "?"),
    )
    return HttpResponse("Forbidden", status=403, content_type="text/plain")


def meta_signature_valid(app_secret: str, raw_body: bytes, header: str) -> bool:
    """Whether `header` is sha256=<HMAC-SHA256 of the raw body under the app secret>."""
    if not app_secret or not header:
        return False
    expected = "sha256=" + hmac.new(app_secret.encode(), raw_body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), header.strip().encode("utf-8", "replace"))


def _whatsapp_secrets() -> tuple[str, str] | None:
    try:
        settings = config.whatsapp_settings()
    except config.ConfigError:
        return None
    return settings.app_secret, settings.verify_token


@csrf_exempt
@require_http_methods(["GET", "POST"])
def whatsapp(request: HttpRequest) -> HttpResponse:
    """Meta's verification handshake (GET) and event notifications (POST)."""
    configured = _whatsapp_secrets()
    if configured is None or not all(configured):
        return _refuse("whatsapp", "no app secret or verify token is configured", request)
    app_secret, verify_token = configured
    if request.method == "GET":
        challenge = request.GET.get("hub.challenge", "")
        token = request.GET.get("hub.verify_token", "")
        if request.GET.get("hub.mode") != "subscribe" or not hmac.compare_digest(
            token.encode(), verify_token.encode()
        ):
            return _refuse("whatsapp", "wrong verify token or mode", request)
        return HttpResponse(challenge, content_type="text/plain")
    raw = request.body
    if not meta_signature_valid(app_secret, raw, request.headers.get("X-Hub-Signature-256", "")):
        return _refuse("whatsapp", "signature does not match", request)
    try:
        payload = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        # RecursionError: JSON nested thousands deep, which no real envelope is.
        log.warning("a signed WhatsApp webhook was not JSON")
        return HttpResponse("Bad request", status=400, content_type="text/plain")
    for value in _whatsapp_values(payload):
        for status in _list(value.get("statuses")):
            _whatsapp_status(status)
        for message in _list(value.get("messages")):
            _whatsapp_message(message)
    return HttpResponse(status=200)


def _text(value: Any, limit: int | None = None) -> str:
    """A provider's value as text the database can hold; "" when longer than `limit`.

    NUL characters are dropped: PostgreSQL refuses them even in a lookup, and a signed
    request carrying one must be ignored, not answered with a crash.
    """
    text = "" if value is None else str(value).replace("\x00", "")
    return "" if limit is not None and len(text) > limit else text


def _list(value: Any) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _whatsapp_values(payload: Any) -> list[dict[str, Any]]:
    """Every `value` of every change in the envelope, as Meta nests them."""
    if not isinstance(payload, dict):
        return []
    values = []
    for entry in _list(payload.get("entry")):
        for change in _list(entry.get("changes")):
            if change.get("field", "messages") == "messages" and isinstance(
                change.get("value"), dict
            ):
                values.append(change["value"])
    return values


def _timestamp(raw: Any) -> datetime | None:
    try:
        return datetime.fromtimestamp(int(raw), UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def _whatsapp_status(status: dict[str, Any]) -> None:
    errors = _list(status.get("errors"))
    code = _text(errors[0].get("code", ""))[:CODE_LIMIT] if errors else ""
    apply_receipt(
        Channel.WHATSAPP,
        _text(status.get("id", ""), ID_LIMIT),
        _text(status.get("status", "")),
        _timestamp(status.get("timestamp")),
        error_code=code,
        idempotency_key=_text(status.get("biz_opaque_callback_data") or "", ID_LIMIT),
    )


def _whatsapp_message(message: dict[str, Any]) -> None:
    sender, message_id = _text(message.get("from", "")), _text(message.get("id", ""), ID_LIMIT)
    if not sender or not message_id:
        return
    kind = message.get("type")
    body = ""
    if kind == "text" and isinstance(message.get("text"), dict):
        body = _text(message["text"].get("body", ""))
    elif kind == "button" and isinstance(message.get("button"), dict):
        body = _text(message["button"].get("text", ""))
    handle_inbound(
        Channel.WHATSAPP,
        "+" + sender.lstrip("+"),
        body,
        message_id,
        _timestamp(message.get("timestamp")) or timezone.now(),
    )


def _public_url(request: HttpRequest) -> str:
    """The URL Twilio requested, as Twilio saw it: behind a proxy, CASEWATCH_PUBLIC_URL's."""
    public = config.public_url()
    if public:
        return public + request.get_full_path_info()
    return request.build_absolute_uri()


@csrf_exempt
@require_http_methods(["GET", "POST"])
def twilio(request: HttpRequest) -> HttpResponse:
    """Twilio's status callbacks and incoming messages, answered with empty TwiML."""
    try:
        auth_token = config.twilio_settings().auth_token
    except config.ConfigError:
        auth_token = ""
    if not auth_token:
        return _refuse("twilio", "no auth token is configured", request)
    params = request.POST if request.method == "POST" else {}
    signature = request.headers.get("X-Twilio-Signature", "")
    if not signature or not RequestValidator(auth_token).validate(
        _public_url(request), params, signature
    ):
        return _refuse("twilio", "signature does not match", request)
    data = request.POST if request.method == "POST" else request.GET
    message_id = _text(data.get("MessageSid", "") or data.get("SmsSid", ""), ID_LIMIT)
    status = _text(data.get("MessageStatus", ""))
    sender = _text(data.get("From", ""))
    if message_id and status:
        apply_receipt(
            Channel.SMS,
            message_id,
            status,
            None,
            error_code=_text(data.get("ErrorCode", ""))[:CODE_LIMIT],
            idempotency_key=_text(request.GET.get(CALLBACK_KEY_PARAM, ""), ID_LIMIT),
        )
    elif message_id and sender and "Body" in data:
        handle_inbound(Channel.SMS, sender, _text(data["Body"]), message_id, timezone.now())
    return HttpResponse(EMPTY_TWIML, content_type="text/xml")
