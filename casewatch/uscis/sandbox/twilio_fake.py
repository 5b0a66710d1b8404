"""A stand-in for Twilio's Messages API, on its wire format (spec/channels.md).

POST /2010-04-01/Accounts/{AccountSid}/Messages.json with HTTP Basic auth and the
form fields To, From or MessagingServiceSid, Body and StatusCallback answers as
Twilio does (201 and the message resource, or Twilio's error JSON), then POSTs
form-encoded status callbacks (`sent`, then `delivered`, or `undelivered`/`failed`
with an ErrorCode) to the request's StatusCallback, signed with X-Twilio-Signature
exactly as Twilio signs them (the twilio library computes it).

Recipients whose digits end as data/provider_faults.toml lists get that fault.
POST /_fake/inbound {"from": "+15550100123", "text": "BAJA"} makes the fake deliver
an inbound SMS to `inbound_url`, as Twilio does for a number's incoming messages.
Inspection and control as in the WhatsApp fake: /_fake/messages, /_fake/callbacks,
/_fake/faults, /_fake/reset.
"""

from __future__ import annotations

import base64
import hmac
import re
import secrets
import threading
import time
from collections import deque
from collections.abc import Mapping
from email.utils import format_datetime
from typing import Any
from urllib.parse import urlencode

from twilio.request_validator import RequestValidator  # type: ignore[import-untyped]
from werkzeug.exceptions import HTTPException, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from casewatch.core.clock import Clock, SystemClock
from casewatch.uscis.sandbox.provider_fakes import (
    MAX_RECORDS,
    RETRY_DELAYS,
    CallbackSender,
    NumberFault,
    ProviderFake,
    RuntimeFaults,
    fault_for_code,
    fault_for_number,
    json_response,
    plan_callbacks,
    read_json,
    utc_iso,
)

SIGNATURE_HEADER = "X-Twilio-Signature"
API_VERSION = "2010-04-01"
MAX_BODY = 1600
_E164 = re.compile(r"\+[1-9]\d{6,14}")
# The GSM 03.38 basic character set and its extension (each extension character costs two).
GSM_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM_EXTENSION = "^{}\\[~]|€\f"


def twilio_signature(auth_token: str, url: str, params: Mapping[str, str]) -> str:
    """The X-Twilio-Signature Twilio sends with a form POST of `params` to `url`."""
    return str(RequestValidator(auth_token).compute_signature(url, dict(params)))


def segments(body: str) -> int:
    """How many SMS segments Twilio bills `body` as: GSM-7 160/153, else UCS-2 70/67."""
    if all(ch in GSM_BASIC or ch in GSM_EXTENSION for ch in body):
        units = sum(2 if ch in GSM_EXTENSION else 1 for ch in body)
        single, multi = 160, 153
    else:
        units = sum(2 if ord(ch) > 0xFFFF else 1 for ch in body)
        single, multi = 70, 67
    return 1 if units <= single else -(-units // multi)


def _sid(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


def _error(status: int, code: int, message: str) -> Response:
    return json_response(
        status,
        {
            "code": code,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        },
    )


class SendRefused(Exception):
    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class TwilioFake(ProviderFake):
    """Twilio's Messages resource and its webhooks, as a WSGI application."""

    provider = "twilio"

    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: str,
        sender: str,
        inbound_url: str | None = None,
        messaging_service_sid: str | None = None,
        clock: Clock | None = None,
        callback_delay: float = 1.0,
        duplicate_callbacks: bool = False,
        out_of_order_callbacks: bool = False,
        retry_delays: tuple[float, ...] = RETRY_DELAYS,
    ) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.sender_number = sender
        self.inbound_url = inbound_url
        self.messaging_service_sid = messaging_service_sid
        self.clock: Clock = clock or SystemClock()
        self.callback_delay = callback_delay
        self.faults = RuntimeFaults(
            duplicate_callbacks=duplicate_callbacks, out_of_order=out_of_order_callbacks
        )
        self.sender = CallbackSender("twilio-fake", "TwilioProxy/1.1", retry_delays=retry_delays)
        self._lock = threading.Lock()
        self._received: deque[dict[str, Any]] = deque(maxlen=MAX_RECORDS)
        # Each accepted message's resource and when (time.monotonic()) it reaches each status.
        self._messages: dict[str, tuple[dict[str, Any], list[tuple[float, str, str]]]] = {}
        base = f"/{API_VERSION}/Accounts/<account>"
        self._routes = Map(
            [
                Rule("/", endpoint="about", methods=["GET"]),
                Rule(f"{base}/Messages.json", endpoint="send", methods=["POST"]),
                Rule(f"{base}/Messages/<message_sid>.json", endpoint="fetch", methods=["GET"]),
                Rule("/_fake/messages", endpoint="messages", methods=["GET"]),
                Rule("/_fake/callbacks", endpoint="callbacks", methods=["GET"]),
                Rule("/_fake/faults", endpoint="faults", methods=["GET", "POST"]),
                Rule("/_fake/inbound", endpoint="inbound", methods=["POST"]),
                Rule("/_fake/reset", endpoint="reset", methods=["POST"]),
            ]
        )

    def stop(self) -> None:
        self.sender.stop()

    # -- WSGI ------------------------------------------------------------
    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        try:
            endpoint, args = self._routes.bind_to_environ(environ).match()
            response: Response = getattr(self, f"on_{endpoint}")(request, **args)
        except NotFound:
            response = _error(404, 20404, "The requested resource was not found")
        except HTTPException as exc:
            code = exc.code or 400
            response = _error(code, 20000 + code, exc.description or "Bad request")
        return response(environ, start_response)

    # -- the Messages API ------------------------------------------------
    def on_about(self, request: Request) -> Response:
        return json_response(
            200,
            {
                "service": "casewatch Twilio Messages API fake",
                "account_sid": self.account_sid,
                "from": self.sender_number,
                "inbound_url": self.inbound_url,
                "faults": self.faults.describe(),
            },
        )

    def _authenticated(self, request: Request, account: str) -> bool:
        header = request.headers.get("Authorization", "")
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(encoded).decode("utf-8").partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        return (
            hmac.compare_digest(user.encode(), self.account_sid.encode())
            and hmac.compare_digest(password.encode(), self.auth_token.encode())
            and account == self.account_sid
        )

    def on_send(self, request: Request, account: str) -> Response:
        form = request.form
        fields = {key: form.get(key, "") for key in form}
        entry: dict[str, Any] = {
            "received_at": utc_iso(self.clock.now()),
            "form": fields,
            "idempotency": {
                "headers": {k: v for k, v in request.headers.items() if "idempot" in k.lower()},
                "status_callback": fields.get("StatusCallback", ""),
            },
        }
        try:
            resource, timeline = self._accept(request, account, fields)
        except SendRefused as refused:
            entry.update(accepted=False, http_status=refused.status, error_code=refused.code)
            entry["sid"] = None
            self._keep(entry)
            return _error(refused.status, refused.code, refused.message)
        entry.update(accepted=True, http_status=201, error_code=None, sid=resource["sid"])
        self._keep(entry)
        self._schedule_statuses(resource, fields.get("StatusCallback", ""), timeline)
        return json_response(201, resource)

    def _accept(
        self, request: Request, account: str, fields: dict[str, str]
    ) -> tuple[dict[str, Any], list[tuple[str, float, NumberFault | None]]]:
        outage = self.faults.outage()
        if outage is not None:
            raise SendRefused(outage, 20000 + outage, "Service Unavailable")
        if not self._authenticated(request, account):
            raise SendRefused(401, 20003, "Authenticate")
        code = self.faults.take_code()
        if code is not None:
            row = fault_for_code("twilio", code)
            assert row is not None  # RuntimeFaults only queues codes from the table
            if row.when == "request":
                raise SendRefused(row.http_status, row.code, self._row_message(row, fields))
        to = fields.get("To", "").strip()
        sender = fields.get("From", "").strip()
        service = fields.get("MessagingServiceSid", "").strip()
        body = fields.get("Body", "")
        callback = fields.get("StatusCallback", "").strip()
        if not to:
            raise SendRefused(400, 21604, "A 'To' phone number is required.")
        if not sender and not service:
            raise SendRefused(400, 21603, "A 'From' phone number is required.")
        if not body:
            raise SendRefused(400, 21602, "Message body is required.")
        if len(body) > MAX_BODY:
            raise SendRefused(
                400, 21617, "The concatenated message body exceeds the 1600 character limit."
            )
        if not _E164.fullmatch(to):
            raise SendRefused(400, 21211, f"Invalid 'To' Phone Number: {to}")
        if sender and sender != self.sender_number:
            raise SendRefused(
                400,
                21606,
                f"The From phone number {sender} is not a valid, SMS-capable inbound phone "
                "number or short code for your account.",
            )
        if service and (
            not re.fullmatch(r"MG[0-9a-f]{32}", service)
            or (self.messaging_service_sid is not None and service != self.messaging_service_sid)
        ):
            raise SendRefused(400, 21701, f"The Messaging Service Sid {service} is invalid.")
        if callback and not callback.startswith(("http://", "https://")):
            raise SendRefused(400, 21609, "The StatusCallback URL is not a valid URL.")
        numbered = fault_for_number("twilio", to)
        if numbered is not None and numbered.when == "request":
            message = self._row_message(numbered, fields)
            raise SendRefused(numbered.http_status, numbered.code, message)
        later = numbered or (fault_for_code("twilio", code) if code is not None else None)
        now = self.clock.now()
        sid = _sid("SM")
        resource = {
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "body": body,
            "date_created": format_datetime(now, usegmt=True),
            "date_sent": None,
            "date_updated": format_datetime(now, usegmt=True),
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": sender or None,
            "messaging_service_sid": service or None,
            "num_media": "0",
            "num_segments": str(segments(body)),
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            "status": "accepted" if service and not sender else "queued",
            "subresource_uris": {
                "media": f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{sid}/Media.json"
            },
            "to": to,
            "uri": f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{sid}.json",
        }
        step = self.callback_delay
        timeline: list[tuple[str, float, NumberFault | None]]
        if later is None:
            timeline = [("sent", step, None), ("delivered", 2 * step, None)]
        elif later.callback_status == "undelivered":
            timeline = [("sent", step, None), ("undelivered", 2 * step, later)]
        else:
            timeline = [(later.callback_status, step, later)]
        return resource, timeline

    @staticmethod
    def _row_message(row: NumberFault, fields: Mapping[str, str]) -> str:
        if row.code == 21211:
            return f"Invalid 'To' Phone Number: {fields.get('To', '')}"
        return row.message

    # -- callbacks -------------------------------------------------------
    def signed(self, url: str, params: Mapping[str, str]) -> tuple[bytes, dict[str, str]]:
        """A form POST's body as Twilio sends it, and the headers that sign it."""
        return urlencode(list(params.items())).encode("utf-8"), {
            "Content-Type": "application/x-www-form-urlencoded",
            SIGNATURE_HEADER: twilio_signature(self.auth_token, url, params),
            "I-Twilio-Idempotency-Token": secrets.token_hex(16),
        }

    def _schedule_statuses(
        self,
        resource: dict[str, Any],
        callback: str,
        timeline: list[tuple[str, float, NumberFault | None]],
    ) -> None:
        started = time.monotonic()
        with self._lock:
            self._messages[resource["sid"]] = (
                resource,
                [
                    (started + delay, status, str(fault.code) if fault else "")
                    for status, delay, fault in timeline
                ],
            )
        if not callback:
            return  # Twilio sends no callbacks without a StatusCallback
        forms: dict[str, dict[str, str]] = {}
        for status, _, fault in timeline:
            params = {
                "SmsSid": resource["sid"],
                "SmsStatus": status,
                "MessageStatus": status,
                "To": resource["to"],
            }
            if resource["messaging_service_sid"]:
                params["MessagingServiceSid"] = resource["messaging_service_sid"]
            params.update(
                {
                    "MessageSid": resource["sid"],
                    "AccountSid": self.account_sid,
                    "From": resource["from"] or self.sender_number,
                    "ApiVersion": API_VERSION,
                }
            )
            if fault is not None:
                params["ErrorCode"] = str(fault.code)
            if status == "delivered":
                params["RawDlrDoneDate"] = self.clock.now().strftime("%y%m%d%H%M")
            forms[status] = params
        plan = plan_callbacks(
            [(status, delay) for status, delay, _ in timeline],
            out_of_order=self.faults.out_of_order_callbacks,
            duplicate=self.faults.duplicate_callbacks,
        )
        for status, delay in plan:
            raw, headers = self.signed(callback, forms[status])
            self.sender.schedule(
                kind=f"status:{status}",
                url=callback,
                body=raw,
                headers=headers,
                payload=forms[status],
                delay=delay,
            )

    def on_fetch(self, request: Request, account: str, message_sid: str) -> Response:
        if not self._authenticated(request, account):
            return _error(401, 20003, "Authenticate")
        with self._lock:
            found = self._messages.get(message_sid)
        if found is None:
            return _error(
                404,
                20404,
                f"The requested resource /{API_VERSION}/Accounts/{account}/"
                f"Messages/{message_sid}.json was not found",
            )
        resource, timeline = found
        current = dict(resource)
        now = time.monotonic()
        for due, status, error_code in timeline:
            if due <= now:
                current["status"] = status
                current["error_code"] = int(error_code) if error_code else None
        return json_response(200, current)

    # -- inspection and control ------------------------------------------
    def _forget(self) -> None:
        self._messages.clear()

    def on_inbound(self, request: Request) -> Response:
        payload = read_json(request)
        if not isinstance(payload, dict):
            return json_response(400, {"error": 'send {"from": "+15550100123", "text": "BAJA"}'})
        sender, text = payload.get("from"), payload.get("text")
        if not isinstance(sender, str) or not _E164.fullmatch(sender):
            return json_response(400, {"error": "from must be an E.164 number, e.g. +15550100123"})
        if not isinstance(text, str) or not text:
            return json_response(400, {"error": "text must be the message's text"})
        if not self.inbound_url:
            return json_response(409, {"error": "no inbound URL is configured"})
        record_id, sid = self.inbound(sender, text)
        if payload.get("wait", False):
            return json_response(200, {"sid": sid, "callback": self.sender.wait_for(record_id, 30)})
        return json_response(202, {"sid": sid, "callback": self.sender.record(record_id)})

    def inbound(self, sender: str, text: str) -> tuple[int, str]:
        """Someone texts the firm's number: deliver it to the inbound URL, signed."""

        sid = _sid("SM")
        params = {
            "ToCountry": "US",
            "SmsMessageSid": sid,
            "NumMedia": "0",
            "SmsSid": sid,
            "SmsStatus": "received",
            "Body": text,
            "To": self.sender_number,
            "NumSegments": str(segments(text)),
            "MessageSid": sid,
            "AccountSid": self.account_sid,
            "From": sender,
            "ApiVersion": API_VERSION,
        }
        if self.messaging_service_sid:
            params["MessagingServiceSid"] = self.messaging_service_sid
        url = self.inbound_url or ""
        raw, headers = self.signed(url, params)
        record_id = self.sender.schedule(
            kind="message", url=url or None, body=raw, headers=headers, payload=params
        )
        return record_id, sid
