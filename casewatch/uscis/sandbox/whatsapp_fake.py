"""A stand-in for Meta's WhatsApp Cloud API, on its wire format (spec/channels.md).

POST /{version}/{phone_number_id}/messages with a Bearer token answers as the
Cloud API does (wamid, or Meta's error JSON), then reports on each accepted
message from a background thread: signed status callbacks (`sent`, `delivered`,
`read`, or `failed` with its error) POSTed to `callback_url`, with
`X-Hub-Signature-256: sha256=<HMAC-SHA256 of the raw body, keyed with the app secret>`.

Free text is accepted only inside the 24-hour window a client opens by writing in
(POST /_fake/inbound makes the fake deliver such a message); templates always.
Recipients whose digits end as data/provider_faults.toml lists get that fault.

Inspection and control, for tests and demos:
  GET  /_fake/messages   every send request received, with its answer and idempotency data
  GET  /_fake/callbacks  every callback sent back, its payload and how delivery went
  GET/POST /_fake/faults faults at run time (provider_fakes.RuntimeFaults)
  POST /_fake/inbound    {"from": "15550100123", "text": "BAJA"}: a client writes in
  POST /_fake/reset      forget what was received and sent
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import threading
from collections import deque
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

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

SIGNATURE_HEADER = "X-Hub-Signature-256"
WINDOW = timedelta(hours=24)
# Meta's limits on what a send may carry.
MAX_TEXT = 4096
MAX_OPAQUE = 512
_RECIPIENT = re.compile(r"\+?[1-9]\d{6,14}")
# Body parameters of a template may not hold new lines, tabs or more than 4 spaces in a row.
_BAD_PARAMETER = re.compile(r"[\n\t]| {5,}")
PARAMETER_TYPES = frozenset(
    {"text", "currency", "date_time", "image", "document", "video", "location", "payload"}
)
COMPONENT_TYPES = frozenset({"header", "body", "button", "footer"})
ERROR_CODES_HREF = "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/"


def meta_signature(app_secret: str, body: bytes) -> str:
    """The X-Hub-Signature-256 value Meta sends with a webhook whose raw body is `body`."""
    digest = hmac.new(app_secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def _fbtrace_id() -> str:
    return secrets.token_urlsafe(8)


def _wamid(wa_id: str) -> str:
    """A message id shaped like Meta's: wamid. and base64 of the recipient and a random part."""
    raw = b"\x18" + bytes([len(wa_id)]) + wa_id.encode() + b"\x15\x02\x00\x11\x18\x12"
    return "wamid." + base64.b64encode(raw + secrets.token_hex(9).upper().encode()).decode()


class SendRefused(Exception):
    """A send the Cloud API would refuse: its HTTP status and Meta's error JSON."""

    def __init__(self, status: int, error: dict[str, Any]) -> None:
        super().__init__(error.get("message", ""))
        self.status = status
        self.error = error


def _invalid(message: str, details: str = "", code: int = 100) -> SendRefused:
    error: dict[str, Any] = {"message": f"(#{code}) {message}", "type": "OAuthException"}
    error["code"] = code
    if details:
        error["error_data"] = {"messaging_product": "whatsapp", "details": details}
    error["fbtrace_id"] = _fbtrace_id()
    return SendRefused(400, error)


def _from_row(row: NumberFault) -> SendRefused:
    error: dict[str, Any] = {"message": row.message, "type": "OAuthException", "code": row.code}
    if row.details:
        error["error_data"] = {"messaging_product": "whatsapp", "details": row.details}
    if row.code == 190:
        error["error_subcode"] = 463
    error["fbtrace_id"] = _fbtrace_id()
    return SendRefused(row.http_status, error)


def _require_text(value: Any, name: str, limit: int) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _invalid(f"The parameter {name} is required.")
    if len(value) > limit:
        raise _invalid("Invalid parameter", f"{name} is longer than {limit} characters")
    return value


class WhatsAppFake(ProviderFake):
    """The Cloud API's send endpoint and webhooks, as a WSGI application."""

    provider = "whatsapp"

    def __init__(
        self,
        *,
        app_secret: str,
        token: str,
        phone_number_id: str,
        callback_url: str | None = None,
        display_phone_number: str = "15550100000",
        business_account_id: str = "102290129340398",
        clock: Clock | None = None,
        callback_delay: float = 1.0,
        read_receipts: bool = True,
        duplicate_callbacks: bool = False,
        out_of_order_callbacks: bool = False,
        templates: Mapping[str, Mapping[str, int]] | None = None,
        retry_delays: tuple[float, ...] = RETRY_DELAYS,
    ) -> None:
        self.app_secret = app_secret
        self.token = token
        self.phone_number_id = phone_number_id
        self.callback_url = callback_url
        self.display_phone_number = display_phone_number
        self.business_account_id = business_account_id
        self.clock: Clock = clock or SystemClock()
        self.callback_delay = callback_delay
        self.read_receipts = read_receipts
        # Approved templates, when given: {name: {language code: body parameter count}}.
        self.templates = templates
        self.faults = RuntimeFaults(
            duplicate_callbacks=duplicate_callbacks, out_of_order=out_of_order_callbacks
        )
        self.sender = CallbackSender(
            "whatsapp-fake", "facebookexternalua", retry_delays=retry_delays
        )
        self._lock = threading.Lock()
        self._received: deque[dict[str, Any]] = deque(maxlen=MAX_RECORDS)
        # When each WhatsApp user last wrote in: the start of their 24-hour window.
        self._windows: dict[str, datetime] = {}
        self._routes = Map(
            [
                Rule("/", endpoint="about", methods=["GET"]),
                Rule("/<version>/<phone_number_id>/messages", endpoint="send", methods=["POST"]),
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
            response = json_response(
                404,
                {
                    "error": {
                        "message": "Unknown path components",
                        "type": "OAuthException",
                        "code": 2500,
                        "fbtrace_id": _fbtrace_id(),
                    }
                },
            )
        except HTTPException as exc:
            code = exc.code or 400
            response = json_response(code, {"error": {"message": exc.description, "code": code}})
        return response(environ, start_response)

    # -- the Cloud API ---------------------------------------------------
    def on_about(self, request: Request) -> Response:
        return json_response(
            200,
            {
                "service": "casewatch WhatsApp Cloud API fake",
                "phone_number_id": self.phone_number_id,
                "callback_url": self.callback_url,
                "faults": self.faults.describe(),
            },
        )

    def on_send(self, request: Request, version: str, phone_number_id: str) -> Response:
        body = read_json(request)
        entry: dict[str, Any] = {
            "received_at": utc_iso(self.clock.now()),
            "version": version,
            "phone_number_id": phone_number_id,
            "body": body,
            "idempotency": self._idempotency(request, body),
        }
        try:
            wa_id, wamid, statuses = self._accept(request, phone_number_id, body)
        except SendRefused as refused:
            entry.update(
                accepted=False,
                http_status=refused.status,
                error_code=refused.error.get("code"),
                id=None,
            )
            self._keep(entry)
            return json_response(refused.status, {"error": refused.error})
        entry.update(accepted=True, http_status=200, error_code=None, id=wamid, to=wa_id)
        self._keep(entry)
        self._schedule_statuses(wamid, wa_id, body, statuses)
        return json_response(
            200,
            {
                "messaging_product": "whatsapp",
                "contacts": [{"input": body["to"], "wa_id": wa_id}],
                "messages": [{"id": wamid}],
            },
        )

    @staticmethod
    def _idempotency(request: Request, body: Any) -> dict[str, Any]:
        """What a sender told us that could tie a retry to its first try."""
        headers = {k: v for k, v in request.headers.items() if "idempot" in k.lower()}
        opaque = body.get("biz_opaque_callback_data") if isinstance(body, dict) else None
        return {"biz_opaque_callback_data": opaque, "headers": headers}

    def _accept(
        self, request: Request, phone_number_id: str, body: Any
    ) -> tuple[str, str, list[tuple[str, float, NumberFault | None]]]:
        """Check a send as the Cloud API does; the recipient, wamid and callbacks to come."""
        outage = self.faults.outage()
        if outage is not None:
            raise SendRefused(
                outage,
                {
                    "message": "Service temporarily unavailable",
                    "type": "OAuthException",
                    "code": 2,
                    "is_transient": True,
                    "fbtrace_id": _fbtrace_id(),
                },
            )
        presented = request.headers.get("Authorization", "")
        scheme, _, token = presented.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            token.strip().encode(), self.token.encode()
        ):
            raise SendRefused(
                401,
                {
                    "message": "Invalid OAuth access token - Cannot parse access token",
                    "type": "OAuthException",
                    "code": 190,
                    "fbtrace_id": _fbtrace_id(),
                },
            )
        if phone_number_id != self.phone_number_id:
            raise SendRefused(
                400,
                {
                    "message": (
                        f"Unsupported post request. Object with ID '{phone_number_id}' does not "
                        "exist, cannot be loaded due to missing permissions, or does not support "
                        "this operation."
                    ),
                    "type": "GraphMethodException",
                    "code": 100,
                    "error_subcode": 33,
                    "fbtrace_id": _fbtrace_id(),
                },
            )
        code = self.faults.take_code()
        if code is not None:
            row = fault_for_code("whatsapp", code)
            assert row is not None  # RuntimeFaults only queues codes from the table
            if row.when == "request":
                raise _from_row(row)
        wa_id = self._validate(body)
        numbered = fault_for_number("whatsapp", wa_id)
        if numbered is not None and numbered.when == "request":
            raise _from_row(numbered)
        later = numbered
        if code is not None and later is None:
            later = fault_for_code("whatsapp", code)
        wamid = _wamid(wa_id)
        step = self.callback_delay
        if later is not None:
            return wa_id, wamid, [("failed", step, later)]
        statuses: list[tuple[str, float, NumberFault | None]] = [
            ("sent", step, None),
            ("delivered", 2 * step, None),
        ]
        if self.read_receipts:
            statuses.append(("read", 3 * step, None))
        return wa_id, wamid, statuses

    def _validate(self, body: Any) -> str:
        """The recipient's WhatsApp id (digits), or the refusal Meta would give."""
        if not isinstance(body, dict):
            raise _invalid("Invalid parameter", "the request body must be a JSON object")
        product = body.get("messaging_product")
        if product is None:
            raise _invalid("The parameter messaging_product is required.")
        if product != "whatsapp":
            raise _invalid(
                f'Param messaging_product must be one of {{WHATSAPP}} - got "{product}".'
            )
        if body.get("recipient_type", "individual") != "individual":
            raise _invalid("Invalid parameter", "recipient_type must be individual")
        to = body.get("to")
        if not isinstance(to, str) or not to:
            raise _invalid("The parameter to is required.")
        if not _RECIPIENT.fullmatch(to):
            raise _invalid(
                "Parameter value is not valid",
                "to must be the recipient's phone number in digits, with its country code",
                code=131009,
            )
        wa_id = to.lstrip("+")
        opaque = body.get("biz_opaque_callback_data")
        if opaque is not None and (not isinstance(opaque, str) or len(opaque) > MAX_OPAQUE):
            raise _invalid(
                "Invalid parameter", f"biz_opaque_callback_data: up to {MAX_OPAQUE} characters"
            )
        kind = body.get("type", "text")
        if kind == "template":
            self._validate_template(body.get("template"))
        elif kind == "text":
            text = body.get("text")
            content = text.get("body") if isinstance(text, dict) else None
            _require_text(content, "text.body", MAX_TEXT)
            if not self._window_open(wa_id):
                row = fault_for_code("whatsapp", 131047)
                assert row is not None
                raise _from_row(row)
        else:
            raise _invalid(
                "Invalid parameter", f"type {kind!r}: this fake takes template and text messages"
            )
        return wa_id

    def _validate_template(self, template: Any) -> None:
        if not isinstance(template, dict):
            raise _invalid("The parameter template is required.")
        name = _require_text(template.get("name"), "template.name", 512)
        language = template.get("language")
        code = language.get("code") if isinstance(language, dict) else None
        code = _require_text(code, "template.language.code", 15)
        components = template.get("components", [])
        if not isinstance(components, list):
            raise _invalid("Invalid parameter", "template.components must be a list")
        body_parameters = 0
        for index, component in enumerate(components):
            where = f"template.components[{index}]"
            if not isinstance(component, dict) or component.get("type") not in COMPONENT_TYPES:
                allowed = ", ".join(sorted(COMPONENT_TYPES))
                raise _invalid("Invalid parameter", f"{where}.type must be one of {allowed}")
            parameters = component.get("parameters", [])
            if not isinstance(parameters, list):
                raise _invalid("Invalid parameter", f"{where}.parameters must be a list")
            for number, parameter in enumerate(parameters):
                spot = f"{where}.parameters[{number}]"
                if not isinstance(parameter, dict) or parameter.get("type") not in PARAMETER_TYPES:
                    raise _invalid("Invalid parameter", f"{spot}.type is not a parameter type")
                if parameter["type"] == "text":
                    text = parameter.get("text")
                    if not isinstance(text, str) or not text.strip():
                        raise _invalid("Required parameter is missing", f"{spot}.text", code=131008)
                    if component["type"] == "body" and _BAD_PARAMETER.search(text):
                        raise _invalid(
                            "Invalid parameter",
                            "Param text cannot have new-line/tab characters or more than "
                            "4 consecutive spaces",
                        )
            if component["type"] == "body":
                body_parameters += len(parameters)
        if self.templates is None:
            return
        translations = self.templates.get(name)
        if translations is None or code not in translations:
            raise _invalid(
                "Template name does not exist in the translation",
                f"template name ({name}) does not exist in {code}",
                code=132001,
            )
        if translations[code] != body_parameters:
            raise _invalid(
                "Number of parameters does not match the expected number of params",
                f"body: number of localizable_params ({body_parameters}) does not match the "
                f"expected number of params ({translations[code]})",
                code=132000,
            )

    def _window_open(self, wa_id: str) -> bool:
        with self._lock:
            opened = self._windows.get(wa_id)
        return opened is not None and self.clock.now() - opened < WINDOW

    # -- webhooks --------------------------------------------------------
    def _envelope(self, value: dict[str, Any]) -> dict[str, Any]:
        return {
            "object": "whatsapp_business_account",
            "entry": [
                {
                    "id": self.business_account_id,
                    "changes": [
                        {
                            "value": {
                                "messaging_product": "whatsapp",
                                "metadata": {
                                    "display_phone_number": self.display_phone_number,
                                    "phone_number_id": self.phone_number_id,
                                },
                                **value,
                            },
                            "field": "messages",
                        }
                    ],
                }
            ],
        }

    def signed(self, payload: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
        """A webhook body as Meta serializes it, and the headers that sign it."""
        body = json.dumps(payload, separators=(",", ":")).encode("utf-8")
        return body, {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: meta_signature(self.app_secret, body),
        }

    def _status(
        self,
        wamid: str,
        wa_id: str,
        status: str,
        at: datetime,
        opaque: str | None,
        fault: NumberFault | None,
    ) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "id": wamid,
            "status": status,
            "timestamp": str(int(at.timestamp())),
            "recipient_id": wa_id,
        }
        if status in ("sent", "delivered"):
            entry["conversation"] = {
                "id": hashlib.sha256(wa_id.encode()).hexdigest()[:32],
                "origin": {"type": "utility"},
            }
            entry["pricing"] = {"billable": True, "pricing_model": "PMP", "category": "utility"}
        if fault is not None:
            entry["errors"] = [
                {
                    "code": fault.code,
                    "title": fault.title,
                    "message": fault.message,
                    "error_data": {"details": fault.details},
                    "href": ERROR_CODES_HREF,
                }
            ]
        if opaque:
            entry["biz_opaque_callback_data"] = opaque
        return entry

    def _schedule_statuses(
        self,
        wamid: str,
        wa_id: str,
        body: dict[str, Any],
        statuses: list[tuple[str, float, NumberFault | None]],
    ) -> None:
        now = self.clock.now()
        opaque = body.get("biz_opaque_callback_data")
        bodies: dict[str, tuple[dict[str, Any], bytes, dict[str, str]]] = {}
        for status, delay, fault in statuses:
            payload = self._envelope(
                {
                    "statuses": [
                        self._status(
                            wamid, wa_id, status, now + timedelta(seconds=delay), opaque, fault
                        )
                    ]
                }
            )
            bodies[status] = (payload, *self.signed(payload))
        plan = plan_callbacks(
            [(status, delay) for status, delay, _ in statuses],
            out_of_order=self.faults.out_of_order_callbacks,
            duplicate=self.faults.duplicate_callbacks,
        )
        for status, delay in plan:
            payload, raw, headers = bodies[status]
            self.sender.schedule(
                kind=f"status:{status}",
                url=self.callback_url,
                body=raw,
                headers=headers,
                payload=payload,
                delay=delay,
            )

    # -- inspection and control ------------------------------------------
    def _forget(self) -> None:
        self._windows.clear()

    def on_inbound(self, request: Request) -> Response:
        payload = read_json(request)
        if not isinstance(payload, dict):
            return json_response(400, {"error": 'send {"from": "15550100123", "text": "BAJA"}'})
        sender = payload.get("from")
        text = payload.get("text")
        if not isinstance(sender, str) or not _RECIPIENT.fullmatch(sender):
            return json_response(400, {"error": "from must be a phone number in digits"})
        if not isinstance(text, str) or not text:
            return json_response(400, {"error": "text must be the message's text"})
        wait = payload.get("wait", False)
        record_id, wamid = self.inbound(sender.lstrip("+"), text, str(payload.get("name") or ""))
        if wait:
            delivered = self.sender.wait_for(record_id, 30)
            return json_response(200, {"id": wamid, "callback": delivered})
        return json_response(202, {"id": wamid, "callback": self.sender.record(record_id)})

    def inbound(self, wa_id: str, text: str, name: str = "") -> tuple[int, str]:
        """A WhatsApp user writes to the business: open their window, send the webhook."""

        now = self.clock.now()
        with self._lock:
            self._windows[wa_id] = now
        wamid = _wamid(wa_id)
        payload = self._envelope(
            {
                "contacts": [{"profile": {"name": name or "Test Client"}, "wa_id": wa_id}],
                "messages": [
                    {
                        "from": wa_id,
                        "id": wamid,
                        "timestamp": str(int(now.timestamp())),
                        "text": {"body": text},
                        "type": "text",
                    }
                ],
            }
        )
        raw, headers = self.signed(payload)
        record_id = self.sender.schedule(
            kind="message", url=self.callback_url, body=raw, headers=headers, payload=payload
        )
        return record_id, wamid
