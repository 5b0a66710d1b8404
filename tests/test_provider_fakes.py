"""The WhatsApp and Twilio fakes speak the providers' wire formats over real HTTP,
sign their callbacks as the providers do, and refuse what the providers refuse."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
from twilio.request_validator import RequestValidator  # type: ignore[import-untyped]
from werkzeug.wrappers import Request, Response

from casewatch.config import BUILTIN_TWILIO_PREFIX, BUILTIN_WHATSAPP_PREFIX
from casewatch.core.clock import ManualClock
from casewatch.uscis.sandbox.provider_fakes import plan_callbacks
from casewatch.uscis.sandbox.server import RunningServer, serve_in_thread
from casewatch.uscis.sandbox.twilio_fake import TwilioFake, segments, twilio_signature
from casewatch.uscis.sandbox.whatsapp_fake import WhatsAppFake, meta_signature
from tests.test_cli import _free_port, _start

APP_SECRET = "test-app-secret"
TOKEN = "test-access-token"
PHONE_NUMBER_ID = "106540352242922"
ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "test-auth-token"
FIRM_NUMBER = "+15550100000"
CLIENT = "15550100123"
DELAY = 0.02


# -- a real HTTP listener standing in for casewatch's webhooks ---------------------------


@dataclass
class Received:
    path: str
    query: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def form(self) -> dict[str, str]:
        return dict(parse_qsl(self.body.decode()))


class Listener:
    """Records every request it gets; answers `status` (200 unless told otherwise)."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.status = 200
        self._cond = threading.Condition()
        self.server: RunningServer = serve_in_thread(self)

    @property
    def url(self) -> str:
        return self.server.url

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        with self._cond:
            self.requests.append(
                Received(
                    request.path,
                    request.query_string.decode(),
                    dict(request.headers),
                    request.get_data(),
                )
            )
            self._cond.notify_all()
        return Response("", status=self.status)(environ, start_response)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.requests) < count:
                left = deadline - time.monotonic()
                assert left > 0, f"expected {count} callbacks, got {len(self.requests)}"
                self._cond.wait(left)
            return list(self.requests)


@pytest.fixture(scope="module")
def shared_listener() -> Iterator[Listener]:
    hook = Listener()
    yield hook
    hook.server.stop()


@pytest.fixture
def listener(shared_listener: Listener) -> Listener:
    """One listener for the module (servers take a while to stop), emptied for each test."""
    with shared_listener._cond:
        shared_listener.requests.clear()
        shared_listener.status = 200
    return shared_listener


def serve_whatsapp(callback_url: str | None, **options: Any) -> tuple[WhatsAppFake, RunningServer]:
    options.setdefault("callback_delay", DELAY)
    fake = WhatsAppFake(
        app_secret=APP_SECRET,
        token=TOKEN,
        phone_number_id=PHONE_NUMBER_ID,
        callback_url=callback_url,
        retry_delays=(0.05,),
        **options,
    )
    return fake, serve_in_thread(fake)


def serve_twilio(
    inbound_url: str | None = None, **options: Any
) -> tuple[TwilioFake, RunningServer]:
    options.setdefault("callback_delay", DELAY)
    fake = TwilioFake(
        account_sid=ACCOUNT_SID,
        auth_token=AUTH_TOKEN,
        sender=FIRM_NUMBER,
        inbound_url=inbound_url,
        retry_delays=(0.05,),
        **options,
    )
    return fake, serve_in_thread(fake)


@pytest.fixture(scope="module")
def shared_whatsapp(shared_listener: Listener) -> Iterator[tuple[WhatsAppFake, str]]:
    fake, server = serve_whatsapp(shared_listener.url + "/webhooks/whatsapp")
    yield fake, server.url
    fake.stop()
    server.stop()


@pytest.fixture
def whatsapp(
    shared_whatsapp: tuple[WhatsAppFake, str], listener: Listener
) -> Iterator[tuple[WhatsAppFake, str]]:
    yield shared_whatsapp
    settle(shared_whatsapp[0], listener)


@pytest.fixture(scope="module")
def shared_twilio(shared_listener: Listener) -> Iterator[tuple[TwilioFake, str]]:
    fake, server = serve_twilio(shared_listener.url + "/webhooks/twilio")
    yield fake, server.url
    fake.stop()
    server.stop()


@pytest.fixture
def twilio(
    shared_twilio: tuple[TwilioFake, str], listener: Listener
) -> Iterator[tuple[TwilioFake, str]]:
    yield shared_twilio
    settle(shared_twilio[0], listener)


def settle(fake: WhatsAppFake | TwilioFake, listener: Listener) -> None:
    """After a test: let its callbacks finish, then forget them, so the next starts clean."""
    assert fake.sender.idle(10)
    fake.reset()
    with listener._cond:
        listener.requests.clear()


def template(to: str = CLIENT, **extra: Any) -> dict[str, Any]:
    return {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": to,
        "type": "template",
        "template": {
            "name": "case_update",
            "language": {"code": "es"},
            "components": [
                {"type": "body", "parameters": [{"type": "text", "text": "Caso aprobado"}]}
            ],
        },
        **extra,
    }


def send(base: str, body: dict[str, Any], token: str = TOKEN) -> httpx.Response:
    return httpx.post(
        f"{base}/v21.0/{PHONE_NUMBER_ID}/messages",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )


def status_of(received: Received) -> dict[str, Any]:
    found: dict[str, Any] = received.json()["entry"][0]["changes"][0]["value"]["statuses"][0]
    return found


def independent_meta_signature(body: bytes) -> str:
    return "sha256=" + hmac.new(APP_SECRET.encode(), body, hashlib.sha256).hexdigest()


# -- WhatsApp ------------------------------------------------------------------------------


def test_a_template_is_answered_with_a_wamid_and_followed_by_signed_sent_delivered_read(
    whatsapp: tuple[WhatsAppFake, str], listener: Listener
) -> None:
    fake, base = whatsapp
    answer = send(base, template(biz_opaque_callback_data="notification-key-1"))
    assert answer.status_code == 200
    body = answer.json()
    assert body["messaging_product"] == "whatsapp"
    assert body["contacts"] == [{"input": CLIENT, "wa_id": CLIENT}]
    wamid = body["messages"][0]["id"]
    assert wamid.startswith("wamid.")

    callbacks = listener.wait_for(3)
    assert [c.path for c in callbacks] == ["/webhooks/whatsapp"] * 3
    statuses = [status_of(c) for c in callbacks]
    assert [s["status"] for s in statuses] == ["sent", "delivered", "read"]
    assert {s["id"] for s in statuses} == {wamid}
    assert {s["recipient_id"] for s in statuses} == {CLIENT}
    assert {s["biz_opaque_callback_data"] for s in statuses} == {"notification-key-1"}
    stamps = [int(s["timestamp"]) for s in statuses]
    assert stamps == sorted(stamps)
    for callback in callbacks:
        signature = callback.headers["X-Hub-Signature-256"]
        assert signature == meta_signature(APP_SECRET, callback.body)
        assert signature == independent_meta_signature(callback.body)
        envelope = callback.json()
        assert envelope["object"] == "whatsapp_business_account"
        change = envelope["entry"][0]["changes"][0]
        assert change["field"] == "messages"
        assert change["value"]["metadata"]["phone_number_id"] == PHONE_NUMBER_ID

    seen = httpx.get(f"{base}/_fake/messages").json()
    assert len(seen) == 1 and seen[0]["accepted"] and seen[0]["id"] == wamid
    assert seen[0]["idempotency"]["biz_opaque_callback_data"] == "notification-key-1"
    assert seen[0]["body"]["template"]["language"] == {"code": "es"}
    assert fake.sender.idle(5)
    sent_back = httpx.get(f"{base}/_fake/callbacks").json()
    assert [r["state"] for r in sent_back] == ["delivered"] * 3
    assert [r["http_status"] for r in sent_back] == [200] * 3


def test_a_wrong_token_gets_metas_401_with_code_190_and_no_callbacks(
    whatsapp: tuple[WhatsAppFake, str], listener: Listener
) -> None:
    fake, base = whatsapp
    answer = send(base, template(), token="not-the-token")
    assert answer.status_code == 401
    error = answer.json()["error"]
    assert error["code"] == 190 and error["type"] == "OAuthException" and error["fbtrace_id"]
    assert httpx.get(f"{base}/_fake/messages").json()[0]["accepted"] is False
    assert fake.sender.idle(2) and listener.requests == []


def test_another_phone_number_id_is_an_unsupported_post_request(
    whatsapp: tuple[WhatsAppFake, str],
) -> None:
    _, base = whatsapp
    answer = httpx.post(
        f"{base}/v21.0/999/messages",
        json=template(),
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == 100
    assert answer.json()["error"]["error_subcode"] == 33


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"messaging_product": None}, 100),
        ({"messaging_product": "sms"}, 100),
        ({"to": "555-CLIENT"}, 131009),
        ({"to": ""}, 100),
        ({"type": "image"}, 100),
        ({"template": {"name": "case_update"}}, 100),
        ({"template": {"name": "", "language": {"code": "es"}}}, 100),
        ({"biz_opaque_callback_data": "x" * 513}, 100),
    ],
)
def test_a_malformed_send_is_refused_with_metas_error_shape(
    whatsapp: tuple[WhatsAppFake, str], change: dict[str, Any], code: int
) -> None:
    _, base = whatsapp
    body = {k: v for k, v in {**template(), **change}.items() if v is not None}
    answer = send(base, body)
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["code"] == code
    assert error["message"].startswith(f"(#{code})")


def test_a_template_parameter_with_a_new_line_is_refused_as_meta_does(
    whatsapp: tuple[WhatsAppFake, str],
) -> None:
    _, base = whatsapp
    body = template()
    body["template"]["components"][0]["parameters"][0]["text"] = "line one\nline two"
    answer = send(base, body)
    assert answer.status_code == 400
    assert "new-line" in answer.json()["error"]["error_data"]["details"]


def test_approved_templates_hold_the_fake_to_their_languages_and_parameter_counts(
    listener: Listener,
) -> None:
    fake, server = serve_whatsapp(listener.url, templates={"case_update": {"es": 1, "en": 1}})
    with server:
        assert send(server.url, template()).status_code == 200
        wrong_language = template()
        wrong_language["template"]["language"]["code"] = "vi"
        assert send(server.url, wrong_language).json()["error"]["code"] == 132001
        too_many = template()
        too_many["template"]["components"][0]["parameters"].append({"type": "text", "text": "x"})
        assert send(server.url, too_many).json()["error"]["code"] == 132000
    fake.stop()


def free_text(to: str = CLIENT) -> dict[str, Any]:
    return {
        "messaging_product": "whatsapp",
        "to": to,
        "type": "text",
        "text": {"body": "Gracias, recibimos su mensaje."},
    }


def test_free_text_is_refused_outside_the_24_hour_window_and_accepted_inside_it(
    listener: Listener,
) -> None:
    clock = ManualClock(datetime(2026, 3, 2, 15, 0, tzinfo=UTC))
    fake, server = serve_whatsapp(listener.url + "/webhooks/whatsapp", clock=clock)
    with server:
        refused = send(server.url, free_text())
        assert refused.status_code == 400
        assert refused.json()["error"]["code"] == 131047

        written = httpx.post(
            f"{server.url}/_fake/inbound", json={"from": CLIENT, "text": "Hola", "wait": True}
        )
        assert written.status_code == 200
        assert written.json()["callback"]["state"] == "delivered"
        (inbound,) = listener.wait_for(1)
        assert inbound.headers["X-Hub-Signature-256"] == independent_meta_signature(inbound.body)
        value = inbound.json()["entry"][0]["changes"][0]["value"]
        assert value["messages"][0]["from"] == CLIENT
        assert value["messages"][0]["text"] == {"body": "Hola"}
        assert value["messages"][0]["id"] == written.json()["id"]
        assert value["contacts"][0]["wa_id"] == CLIENT

        clock.advance(timedelta(hours=23, minutes=59))
        assert send(server.url, free_text()).status_code == 200
        assert send(server.url, free_text("15550100124")).json()["error"]["code"] == 131047
        clock.advance(timedelta(minutes=2))
        assert send(server.url, free_text()).json()["error"]["code"] == 131047
        # Templates go out whatever the window.
        assert send(server.url, template()).status_code == 200
    fake.stop()


def test_an_undeliverable_number_is_accepted_then_reported_failed_with_131026(
    whatsapp: tuple[WhatsAppFake, str], listener: Listener
) -> None:
    _, base = whatsapp
    answer = send(base, template(to="15550131026"))
    assert answer.status_code == 200
    (callback,) = listener.wait_for(1)
    status = status_of(callback)
    assert status["status"] == "failed"
    assert status["id"] == answer.json()["messages"][0]["id"]
    assert status["errors"][0]["code"] == 131026
    assert status["errors"][0]["title"] == "Message undeliverable"


@pytest.mark.parametrize(
    ("number", "http_status", "code"),
    [
        ("15550130429", 400, 130429),
        ("15550131056", 400, 131056),
        ("15550131047", 400, 131047),
        ("15550000190", 401, 190),
    ],
)
def test_numbers_from_the_fault_table_are_refused_at_the_request(
    whatsapp: tuple[WhatsAppFake, str], number: str, http_status: int, code: int
) -> None:
    _, base = whatsapp
    answer = send(base, template(to=number))
    assert answer.status_code == http_status
    assert answer.json()["error"]["code"] == code


def test_faults_injected_at_run_time_refuse_the_next_sends_then_clear(
    whatsapp: tuple[WhatsAppFake, str],
) -> None:
    _, base = whatsapp
    set_fault = httpx.post(f"{base}/_fake/faults", json={"code": 130429, "count": 2})
    assert set_fault.json()["queued_codes"] == [130429, 130429]
    assert [send(base, template()).status_code for _ in range(3)] == [400, 400, 200]

    httpx.post(f"{base}/_fake/faults", json={"outage": 503, "seconds": 60})
    down = send(base, template())
    assert down.status_code == 503 and down.json()["error"]["is_transient"] is True
    httpx.post(f"{base}/_fake/faults", json={"clear": True})
    assert send(base, template()).status_code == 200


@pytest.mark.parametrize(
    "payload",
    [{"code": 1}, {"code": "130429"}, {"code": 130429, "count": 0}, {"outage": 200}, {"meteor": 1}],
)
def test_a_fault_request_that_makes_no_sense_says_what_was_wrong(
    whatsapp: tuple[WhatsAppFake, str], payload: dict[str, Any]
) -> None:
    _, base = whatsapp
    answer = httpx.post(f"{base}/_fake/faults", json=payload)
    assert answer.status_code == 400 and answer.json()["error"]


def test_duplicate_out_of_order_callbacks_keep_each_status_timestamp(
    listener: Listener,
) -> None:
    fake, server = serve_whatsapp(
        listener.url, duplicate_callbacks=True, out_of_order_callbacks=True, callback_delay=0.05
    )
    with server:
        send(server.url, template())
        callbacks = listener.wait_for(6)
    fake.stop()
    statuses = [status_of(c) for c in callbacks]
    order = [s["status"] for s in statuses]
    assert order.index("read") < order.index("delivered") < order.index("sent")
    assert sorted(order) == sorted(["sent", "delivered", "read"] * 2)
    by_status = {s["status"]: s["timestamp"] for s in statuses}
    assert int(by_status["sent"]) <= int(by_status["delivered"]) <= int(by_status["read"])
    first_read = [c.body for c in callbacks if status_of(c)["status"] == "read"]
    assert first_read[0] == first_read[1]  # a retry is the same bytes, same signature


def test_a_callback_the_webhook_refuses_is_retried_then_recorded_as_failed(
    whatsapp: tuple[WhatsAppFake, str], listener: Listener
) -> None:
    fake, base = whatsapp
    listener.status = 500
    send(base, template(to="15550131026"))
    listener.wait_for(2)
    assert fake.sender.idle(5)
    (record,) = httpx.get(f"{base}/_fake/callbacks").json()
    assert record["state"] == "failed" and record["attempts"] == 2
    assert record["http_status"] == 500


def test_without_a_callback_url_callbacks_are_recorded_not_sent() -> None:
    fake, server = serve_whatsapp(None)
    with server:
        assert send(server.url, template()).status_code == 200
        records = httpx.get(f"{server.url}/_fake/callbacks").json()
    fake.stop()
    assert {r["state"] for r in records} == {"not_sent"}


def test_the_plan_sends_latest_first_when_out_of_order_and_twice_when_duplicated() -> None:
    plan = plan_callbacks(
        [("sent", 1.0), ("delivered", 2.0), ("read", 3.0)], out_of_order=True, duplicate=True
    )
    assert [status for status, _ in plan] == [
        "read",
        "read",
        "delivered",
        "delivered",
        "sent",
        "sent",
    ]


# -- Twilio --------------------------------------------------------------------------------


def send_sms(
    base: str, form: dict[str, str] | None = None, auth: tuple[str, str] = (ACCOUNT_SID, AUTH_TOKEN)
) -> httpx.Response:
    fields = {"To": "+15550100123", "From": FIRM_NUMBER, "Body": "Su caso fue aprobado."}
    fields.update(form or {})
    return httpx.post(
        f"{base}/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json",
        data=fields,
        auth=auth,
        timeout=10,
    )


def independent_twilio_signature(url: str, params: dict[str, str]) -> str:
    text = url + "".join(name + params[name] for name in sorted(params))
    digest = hmac.new(AUTH_TOKEN.encode(), text.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def test_an_sms_is_queued_and_followed_by_signed_sent_and_delivered_callbacks(
    twilio: tuple[TwilioFake, str], listener: Listener
) -> None:
    fake, base = twilio
    callback = f"{listener.url}/webhooks/twilio?key=notification-key-1"
    answer = send_sms(base, {"StatusCallback": callback})
    assert answer.status_code == 201
    message = answer.json()
    assert message["sid"].startswith("SM") and len(message["sid"]) == 34
    assert message["status"] == "queued"
    assert message["to"] == "+15550100123" and message["from"] == FIRM_NUMBER
    assert message["account_sid"] == ACCOUNT_SID and message["num_segments"] == "1"
    assert message["uri"].endswith(f"/Messages/{message['sid']}.json")

    callbacks = listener.wait_for(2)
    forms = [c.form() for c in callbacks]
    assert [f["MessageStatus"] for f in forms] == ["sent", "delivered"]
    for received, form in zip(callbacks, forms, strict=True):
        assert received.query == "key=notification-key-1"
        assert form["MessageSid"] == message["sid"] and form["AccountSid"] == ACCOUNT_SID
        assert form["To"] == "+15550100123" and form["From"] == FIRM_NUMBER
        signature = received.headers["X-Twilio-Signature"]
        assert RequestValidator(AUTH_TOKEN).validate(callback, form, signature)
        assert signature == independent_twilio_signature(callback, form)
        assert signature == twilio_signature(AUTH_TOKEN, callback, form)
    seen = httpx.get(f"{base}/_fake/messages").json()
    assert seen[0]["idempotency"]["status_callback"] == callback
    assert fake.sender.idle(5)
    fetched = httpx.get(
        f"{base}/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{message['sid']}.json",
        auth=(ACCOUNT_SID, AUTH_TOKEN),
    )
    assert fetched.json()["status"] == "delivered"


def test_wrong_credentials_get_twilios_20003(twilio: tuple[TwilioFake, str]) -> None:
    _, base = twilio
    answer = send_sms(base, auth=(ACCOUNT_SID, "wrong"))
    assert answer.status_code == 401
    assert answer.json() == {
        "code": 20003,
        "message": "Authenticate",
        "more_info": "https://www.twilio.com/docs/errors/20003",
        "status": 401,
    }


@pytest.mark.parametrize(
    ("to", "code"),
    [("+15550021211", 21211), ("+15550021610", 21610), ("5550100123", 21211)],
)
def test_invalid_and_opted_out_numbers_are_refused_with_twilios_error_json(
    twilio: tuple[TwilioFake, str], listener: Listener, to: str, code: int
) -> None:
    fake, base = twilio
    answer = send_sms(base, {"To": to, "StatusCallback": listener.url})
    assert answer.status_code == 400
    error = answer.json()
    assert set(error) == {"code", "message", "more_info", "status"}
    assert error["code"] == code and error["status"] == 400
    assert fake.sender.idle(1) and listener.requests == []


@pytest.mark.parametrize(
    ("form", "code"),
    [
        ({"To": ""}, 21604),
        ({"From": ""}, 21603),
        ({"Body": ""}, 21602),
        ({"Body": "x" * 1601}, 21617),
        ({"From": "+15550199999"}, 21606),
    ],
)
def test_a_malformed_sms_is_refused_with_the_documented_code(
    twilio: tuple[TwilioFake, str], form: dict[str, str], code: int
) -> None:
    _, base = twilio
    assert send_sms(base, form).json()["code"] == code


@pytest.mark.parametrize("code", [30003, 30006])
def test_an_unreachable_or_landline_number_is_sent_then_undelivered_with_its_error_code(
    twilio: tuple[TwilioFake, str], listener: Listener, code: int
) -> None:
    _, base = twilio
    answer = send_sms(base, {"To": f"+1555{code:07d}", "StatusCallback": listener.url + "/cb"})
    assert answer.status_code == 201
    forms = [c.form() for c in listener.wait_for(2)]
    assert [f["MessageStatus"] for f in forms] == ["sent", "undelivered"]
    assert "ErrorCode" not in forms[0] and forms[1]["ErrorCode"] == str(code)


def test_a_messaging_service_may_send_instead_of_a_from_number(
    twilio: tuple[TwilioFake, str],
) -> None:
    _, base = twilio
    answer = send_sms(base, {"From": "", "MessagingServiceSid": "MG" + "a" * 32})
    assert answer.status_code == 201 and answer.json()["status"] == "accepted"


def test_twilio_faults_at_run_time_refuse_the_next_sends(twilio: tuple[TwilioFake, str]) -> None:
    _, base = twilio
    httpx.post(f"{base}/_fake/faults", json={"code": 21610, "count": 1})
    assert send_sms(base).json()["code"] == 21610
    assert send_sms(base).status_code == 201
    httpx.post(f"{base}/_fake/faults", json={"outage": 503, "seconds": 30})
    assert send_sms(base).status_code == 503


def test_an_inbound_sms_is_posted_to_the_inbound_url_signed_as_twilio_does(
    twilio: tuple[TwilioFake, str], listener: Listener
) -> None:
    _, base = twilio
    answer = httpx.post(
        f"{base}/_fake/inbound", json={"from": "+15550100123", "text": "BAJA", "wait": True}
    )
    assert answer.status_code == 200 and answer.json()["callback"]["state"] == "delivered"
    (inbound,) = listener.wait_for(1)
    form = inbound.form()
    assert form["From"] == "+15550100123" and form["To"] == FIRM_NUMBER
    assert form["Body"] == "BAJA" and form["AccountSid"] == ACCOUNT_SID
    assert form["MessageSid"] == answer.json()["sid"] and "MessageStatus" not in form
    url = listener.url + "/webhooks/twilio"
    assert RequestValidator(AUTH_TOKEN).validate(url, form, inbound.headers["X-Twilio-Signature"])


def test_sms_segments_are_counted_as_twilio_bills_them() -> None:
    assert segments("a" * 160) == 1
    assert segments("a" * 161) == 2
    assert segments("ñ" * 160) == 1  # ñ is in the GSM alphabet
    assert segments("中" * 70) == 1
    assert segments("中" * 71) == 2
    assert segments("{" * 80) == 1 and segments("{" * 81) == 2


# -- served by the CLI ---------------------------------------------------------------------


def _fake_secrets(data_dir: Path) -> dict[str, str]:
    loaded: dict[str, str] = json.loads(
        (data_dir / "keys" / "channel_fakes.json").read_text(encoding="utf-8")
    )
    return loaded


def test_casewatch_sandbox_serves_both_fakes_beside_uscis_calling_back_to_the_web_app(
    tmp_path: Path, listener: Listener
) -> None:
    port = _free_port()
    process, url = _start(
        [
            "sandbox",
            "--port",
            str(port),
            "--callback-base",
            listener.url,
            "--callback-delay",
            "0.02",
        ],
        tmp_path,
        "casewatch sandbox is running",
    )
    try:
        keys = _fake_secrets(tmp_path)
        base = url.rstrip("/")
        assert httpx.get(f"{base}/health").status_code == 200  # the USCIS sandbox is still there
        answer = httpx.post(
            f"{base}{BUILTIN_WHATSAPP_PREFIX}/v21.0/{keys['whatsapp_phone_number_id']}/messages",
            json=template(),
            headers={"Authorization": f"Bearer {keys['whatsapp_token']}"},
        )
        assert answer.status_code == 200, answer.text
        callbacks = listener.wait_for(3)
        assert {c.path for c in callbacks} == {"/webhooks/whatsapp"}
        for callback in callbacks:
            assert callback.headers["X-Hub-Signature-256"] == meta_signature(
                keys["whatsapp_app_secret"], callback.body
            )
        sid = keys["twilio_account_sid"]
        sms = httpx.post(
            f"{base}{BUILTIN_TWILIO_PREFIX}/2010-04-01/Accounts/{sid}/Messages.json",
            data={"To": "+15550100123", "From": keys["twilio_from"], "Body": "Hola"},
            auth=(sid, keys["twilio_auth_token"]),
        )
        assert sms.status_code == 201, sms.text
        inbound = httpx.post(
            f"{base}{BUILTIN_TWILIO_PREFIX}/_fake/inbound",
            json={"from": "+15550100123", "text": "STOP", "wait": True},
        )
        assert inbound.json()["callback"]["url"] == listener.url + "/webhooks/twilio"
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert process.returncode == 0


def test_casewatch_up_mounts_the_fakes_and_its_webhooks_take_only_what_they_signed(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "cold"
    process, url = _start(["up", "--port", str(_free_port())], data_dir, "casewatch is running at")
    try:
        keys = _fake_secrets(data_dir)
        base = url.rstrip("/")
        with httpx.Client(timeout=30) as http:
            handshake = {"hub.mode": "subscribe", "hub.challenge": "42"}
            right = http.get(
                f"{base}/webhooks/whatsapp",
                params={**handshake, "hub.verify_token": keys["whatsapp_verify_token"]},
            )
            assert (right.status_code, right.text) == (200, "42")
            wrong = http.get(
                f"{base}/webhooks/whatsapp", params={**handshake, "hub.verify_token": "guess"}
            )
            assert wrong.status_code == 403
            forged = http.post(
                f"{base}/webhooks/whatsapp",
                content=b'{"object":"whatsapp_business_account","entry":[]}',
                headers={"X-Hub-Signature-256": "sha256=" + "0" * 64},
            )
            assert forged.status_code == 403
            assert http.post(f"{base}/webhooks/twilio", data={"Body": "x"}).status_code == 403

            # The mounted fakes sign with the secrets the app verifies: 200 on delivery.
            for prefix, sender in (
                (BUILTIN_WHATSAPP_PREFIX, "15550100123"),
                (BUILTIN_TWILIO_PREFIX, "+15550100123"),
            ):
                inbound = http.post(
                    f"{base}{prefix}/_fake/inbound",
                    json={"from": sender, "text": "Hola", "wait": True},
                )
                record = inbound.json()["callback"]
                assert record["state"] == "delivered", record
                assert record["http_status"] == 200
    finally:
        process.terminate()
        process.wait(timeout=20)
