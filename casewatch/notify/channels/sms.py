"""Twilio SMS: one form POST per message, with a StatusCallback for delivery receipts.

`POST {base}/2010-04-01/Accounts/{AccountSid}/Messages.json`, HTTP Basic auth
(AccountSid, AuthToken), form fields To, From (or MessagingServiceSid when the
configured sender is one, "MG…"), Body (at most 1,600 characters) and
StatusCallback. The answer's `sid` is kept: every callback names it. The
dispatcher puts the notification's idempotency key in the StatusCallback URL, so
a callback identifies its notification even when the SID was never recorded.
"""

from __future__ import annotations

import httpx

from casewatch.config import TwilioSettings
from casewatch.notify.channels.base import Outgoing, SendResult, Transport
from casewatch.notify.channels.errors import refusal, retry_after_seconds, scrub, unreachable

API_VERSION = "2010-04-01"
MAX_BODY = 1600


def sms_body(text: str) -> str:
    """The text as Twilio takes it: at most 1,600 characters, cut with an ellipsis."""
    text = text.strip()
    return text if len(text) <= MAX_BODY else text[: MAX_BODY - 1].rstrip() + "…"


class SmsTransport(Transport):
    """One Twilio account and sender; one HTTP client kept between sends."""

    channel = "sms"

    def __init__(
        self,
        *,
        base_url: str | None,
        account_sid: str,
        auth_token: str,
        sender: str,
        timeout: float = 15.0,
        http: httpx.Client | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/") if base_url else None
        self.account_sid = account_sid
        self.sender = sender
        self._http = http or httpx.Client(timeout=timeout, follow_redirects=False)
        self._http.auth = httpx.BasicAuth(account_sid, auth_token)

    @classmethod
    def from_settings(cls, settings: TwilioSettings, *, timeout: float) -> SmsTransport:
        return cls(
            base_url=settings.base_url,
            account_sid=settings.account_sid,
            auth_token=settings.auth_token,
            sender=settings.sender,
            timeout=timeout,
        )

    @property
    def url(self) -> str:
        return f"{self.base_url}/{API_VERSION}/Accounts/{self.account_sid}/Messages.json"

    def form(self, outgoing: Outgoing) -> dict[str, str]:
        fields = {"To": outgoing.address, "Body": sms_body(outgoing.rendered.text)}
        if self.sender.startswith("MG"):
            fields["MessagingServiceSid"] = self.sender
        else:
            fields["From"] = self.sender
        if outgoing.status_callback_url:
            fields["StatusCallback"] = outgoing.status_callback_url
        return fields

    def send(self, outgoing: Outgoing) -> SendResult:
        if self.base_url is None:
            return unreachable(
                "the built-in Twilio fake's address is not known yet (CASEWATCH_TWILIO_BASE_URL)",
                code="not_configured",
            )
        try:
            answer = self._http.post(self.url, data=self.form(outgoing))
        except httpx.TimeoutException as exc:
            return unreachable(f"no answer in time: {type(exc).__name__}", code="timeout")
        except httpx.HTTPError as exc:
            return unreachable(f"{type(exc).__name__}: {exc}", address=outgoing.address)
        try:
            payload = answer.json()
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            payload = {}
        if answer.is_success:
            sid = str(payload.get("sid") or "")
            return SendResult(
                outcome="sent",
                provider_message_id=sid,
                http_status=answer.status_code,
                detail=str(payload.get("status") or "")
                if sid
                else "accepted, but the answer carried no message SID",
            )
        return refusal(
            self.channel,
            code=payload.get("code"),
            status=answer.status_code,
            detail=str(payload.get("message") or scrub(answer.text) or answer.reason_phrase),
            retry_after=retry_after_seconds(answer.headers.get("Retry-After")),
            address=outgoing.address,
        )

    def close(self) -> None:
        self._http.close()


__all__ = ["SmsTransport", "sms_body"]
