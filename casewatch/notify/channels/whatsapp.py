"""WhatsApp Cloud API: template messages (free text only inside the 24-hour window).

`POST {base}/{version}/{phone_number_id}/messages` with a Bearer token. Case
updates are templates: the template's name, its translation's language code and
its body parameters in order. The answer's `messages[0].id` (the wamid) is kept:
every status callback names it. The notification's idempotency key travels as
`biz_opaque_callback_data`, which Meta repeats in each status callback, so a
callback can be tied to its notification even when the dispatcher died before it
recorded the wamid. Errors are read with data/provider_errors.toml.
"""

from __future__ import annotations

from typing import Any

import httpx

from casewatch.config import WhatsAppSettings
from casewatch.notify.channels.base import Outgoing, SendResult, Transport
from casewatch.notify.channels.errors import refusal, retry_after_seconds, scrub, unreachable

# Meta's limits: free text up to 4,096 characters; opaque callback data up to 512.
MAX_TEXT = 4096
MAX_OPAQUE = 512


def wa_recipient(address: str) -> str:
    """The `to` Meta expects: the phone number's digits with country code, no `+`."""
    return "".join(ch for ch in address if ch.isdigit())


def message_body(outgoing: Outgoing) -> dict[str, Any] | None:
    """The JSON body of the send, or None when the message cannot go on WhatsApp now.

    Free text is used only when the 24-hour window is open and there is text;
    otherwise the rendered template, if the message has one.
    """
    rendered = outgoing.rendered
    body: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": wa_recipient(outgoing.address),
    }
    if outgoing.free_text_allowed and rendered.text:
        body["type"] = "text"
        body["text"] = {"body": rendered.text[:MAX_TEXT], "preview_url": False}
    elif rendered.template:
        template: dict[str, Any] = {
            "name": rendered.template,
            "language": {"code": rendered.template_language or outgoing.language},
        }
        if rendered.template_params:
            template["components"] = [
                {
                    "type": "body",
                    "parameters": [
                        {"type": "text", "text": _parameter(value)}
                        for value in rendered.template_params
                    ],
                }
            ]
        body["type"] = "template"
        body["template"] = template
    else:
        return None
    if outgoing.idempotency_key:
        body["biz_opaque_callback_data"] = outgoing.idempotency_key[:MAX_OPAQUE]
    return body


def _parameter(value: str) -> str:
    """Meta refuses body parameters with new lines, tabs or more than four spaces in a row."""
    return " ".join(str(value).split()) or "-"


class WhatsAppTransport(Transport):
    """One Cloud API phone number; one HTTP client kept between sends."""

    channel = "whatsapp"

    def __init__(
        self,
        *,
        base_url: str | None,
        api_version: str,
        token: str,
        phone_number_id: str,
        timeout: float = 15.0,
        http: httpx.Client | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/") if base_url else None
        self.api_version = api_version
        self.phone_number_id = phone_number_id
        self._http = http or httpx.Client(timeout=timeout, follow_redirects=False)
        self._http.headers["Authorization"] = f"Bearer {token}"

    @classmethod
    def from_settings(cls, settings: WhatsAppSettings, *, timeout: float) -> WhatsAppTransport:
        return cls(
            base_url=settings.base_url,
            api_version=settings.api_version,
            token=settings.token,
            phone_number_id=settings.phone_number_id,
            timeout=timeout,
        )

    @property
    def url(self) -> str:
        return f"{self.base_url}/{self.api_version}/{self.phone_number_id}/messages"

    def send(self, outgoing: Outgoing) -> SendResult:
        if self.base_url is None:
            return unreachable(
                "the built-in WhatsApp fake's address is not known yet "
                "(CASEWATCH_WHATSAPP_BASE_URL)",
                code="not_configured",
            )
        body = message_body(outgoing)
        if body is None:
            # Outside the window only a template may go; without one, the client must hear
            # on another channel.
            return SendResult(
                outcome="permanent",
                error_code="no_template",
                detail="no WhatsApp template for this message and the 24-hour window is closed",
                fall_back=True,
            )
        try:
            answer = self._http.post(self.url, json=body)
        except httpx.TimeoutException as exc:
            return unreachable(f"no answer in time: {type(exc).__name__}", code="timeout")
        except httpx.HTTPError as exc:
            return unreachable(f"{type(exc).__name__}: {exc}", address=outgoing.address)
        return self._result(answer, outgoing.address)

    def _result(self, answer: httpx.Response, address: str) -> SendResult:
        try:
            payload = answer.json()
        except ValueError:
            payload = None
        if answer.is_success:
            wamid = ""
            if isinstance(payload, dict):
                messages = payload.get("messages") or [{}]
                if isinstance(messages, list) and isinstance(messages[0], dict):
                    wamid = str(messages[0].get("id") or "")
            return SendResult(
                outcome="sent",
                provider_message_id=wamid,
                http_status=answer.status_code,
                detail="" if wamid else "accepted, but the answer carried no message id",
            )
        error = payload.get("error") if isinstance(payload, dict) else None
        if not isinstance(error, dict):
            return refusal(
                self.channel,
                code=None,
                status=answer.status_code,
                detail=scrub(answer.text, address) or answer.reason_phrase,
                retry_after=retry_after_seconds(answer.headers.get("Retry-After")),
                address=address,
            )
        details = error.get("error_data", {})
        extra = details.get("details", "") if isinstance(details, dict) else ""
        return refusal(
            self.channel,
            code=error.get("code"),
            status=answer.status_code,
            detail=f"{error.get('message', '')} {extra}".strip(),
            retry_after=retry_after_seconds(answer.headers.get("Retry-After")),
            address=address,
            force_transient=error.get("is_transient") is True,
        )

    def close(self) -> None:
        self._http.close()


__all__ = ["WhatsAppTransport", "message_body", "wa_recipient"]
