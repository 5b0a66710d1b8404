"""The channel adapters speak each provider's wire format and read every refusal correctly.

WhatsApp and Twilio adapters talk over real HTTP to the fakes (uscis/sandbox), which
check requests as the providers do; e-mail goes to a real SMTP server (aiosmtpd);
webhooks go to a real local HTTP server that verifies the signature as a firm would.
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import hmac
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from werkzeug.wrappers import Request, Response

from casewatch.notify.channels import (
    EmailTransport,
    InAppTransport,
    Outgoing,
    Rendered,
    SmsTransport,
    WebhookTransport,
    WhatsAppTransport,
    close_all,
    transports,
)
from casewatch.notify.channels.errors import ErrorTableError, error_table, load_error_table
from casewatch.notify.channels.webhook import verify
from casewatch.notify.mail_capture import captured
from casewatch.notify.unsubscribe import read_unsubscribe_token, unsubscribe_headers
from casewatch.uscis.sandbox.server import RunningServer, serve_in_thread
from casewatch.uscis.sandbox.twilio_fake import TwilioFake
from casewatch.uscis.sandbox.whatsapp_fake import WhatsAppFake, meta_signature

WA_TOKEN = "test-whatsapp-token"
WA_SECRET = "test-whatsapp-app-secret"
WA_PHONE_ID = "100000000000001"
TW_SID = "AC" + "0" * 32
TW_TOKEN = "test-twilio-auth-token"
TW_FROM = "+15550100000"
SERVICE_SID = "MG" + "1" * 32
CLIENT_PHONE = "+15550100123"  # a fictional 555-01xx number
KEY = hashlib.sha256(b"status_event:1:client:1:whatsapp").hexdigest()
SPANISH = Rendered(
    subject="Caso aprobado",
    text="Mensaje de Example Law sobre su caso EAC9999103403: USCIS aprobó su caso.",
    html="<p>Mensaje de Example Law sobre su caso EAC9999103403: USCIS aprobó su caso.</p>",
    template="casewatch_case_update",
    template_params=("Example Law", "EAC9999103403", "USCIS aprobó su caso.", "Le llamaremos."),
    template_language="es",
)


def outgoing(address: str = CLIENT_PHONE, **changes: Any) -> Outgoing:
    fields: dict[str, Any] = {
        "notification_id": 1,
        "idempotency_key": KEY,
        "address": address,
        "language": "es",
        "rendered": SPANISH,
        **changes,
    }
    return Outgoing(**fields)


# --- real servers -------------------------------------------------------------------


@dataclass
class Collector:
    """A real HTTP endpoint that keeps what it is sent and answers `status`."""

    status: int = 200
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    requests: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        with self.lock:
            self.requests.append(
                {
                    "url": request.url,
                    "headers": dict(request.headers),
                    "body": request.get_data(),
                }
            )
        if self.delay:
            time.sleep(self.delay)
        return Response("ok", status=self.status, headers=self.headers)(environ, start_response)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.requests) >= count:
                    return list(self.requests)
            time.sleep(0.02)
        raise AssertionError(f"expected {count} requests, got {len(self.requests)}")


@dataclass
class Served:
    """The fakes and a callback catcher on real sockets, once for the module."""

    collector: Collector
    collector_server: RunningServer
    whatsapp: WhatsAppFake
    whatsapp_server: RunningServer
    twilio: TwilioFake
    twilio_server: RunningServer

    def reset(self) -> None:
        """Forget the last test: its callbacks, faults, windows and received requests."""
        for fake, server in (
            (self.whatsapp, self.whatsapp_server),
            (self.twilio, self.twilio_server),
        ):
            assert fake.sender.idle(10)
            httpx.post(f"{server.url}/_fake/faults", json={"clear": True}).raise_for_status()
            httpx.post(f"{server.url}/_fake/reset").raise_for_status()
        with self.collector.lock:
            self.collector.requests.clear()
        self.collector.status, self.collector.delay = 200, 0.0


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    collector = Collector()
    collector_server = serve_in_thread(collector)
    whatsapp, whatsapp_server = start_whatsapp_fake(f"{collector_server.url}/webhooks/whatsapp")
    twilio, twilio_server = start_twilio_fake()
    try:
        yield Served(collector, collector_server, whatsapp, whatsapp_server, twilio, twilio_server)
    finally:
        for fake in (whatsapp, twilio):
            fake.stop()
        for server in (collector_server, whatsapp_server, twilio_server):
            server.stop()


@pytest.fixture
def collector(served: Served) -> tuple[Collector, RunningServer]:
    served.reset()
    return served.collector, served.collector_server


def start_whatsapp_fake(callback_url: str | None = None) -> tuple[WhatsAppFake, RunningServer]:
    fake = WhatsAppFake(
        app_secret=WA_SECRET,
        token=WA_TOKEN,
        phone_number_id=WA_PHONE_ID,
        callback_url=callback_url,
        callback_delay=0.05,
        retry_delays=(),
    )
    return fake, serve_in_thread(fake)


def start_twilio_fake(**kwargs: Any) -> tuple[TwilioFake, RunningServer]:
    fake = TwilioFake(
        account_sid=TW_SID,
        auth_token=TW_TOKEN,
        sender=TW_FROM,
        callback_delay=0.05,
        retry_delays=(),
        **kwargs,
    )
    return fake, serve_in_thread(fake)


@pytest.fixture
def whatsapp(
    served: Served, collector: tuple[Collector, RunningServer]
) -> Iterator[tuple[WhatsAppFake, WhatsAppTransport]]:
    adapter = whatsapp_adapter(served.whatsapp_server.url)
    try:
        yield served.whatsapp, adapter
    finally:
        adapter.close()


def whatsapp_adapter(url: str, token: str = WA_TOKEN, timeout: float = 5.0) -> WhatsAppTransport:
    return WhatsAppTransport(
        base_url=url,
        api_version="v21.0",
        token=token,
        phone_number_id=WA_PHONE_ID,
        timeout=timeout,
    )


@pytest.fixture
def twilio(
    served: Served, collector: tuple[Collector, RunningServer]
) -> Iterator[tuple[TwilioFake, SmsTransport]]:
    adapter = sms_adapter(served.twilio_server.url)
    try:
        yield served.twilio, adapter
    finally:
        adapter.close()


def sms_adapter(url: str, token: str = TW_TOKEN, sender: str = TW_FROM) -> SmsTransport:
    return SmsTransport(
        base_url=url, account_sid=TW_SID, auth_token=token, sender=sender, timeout=5.0
    )


# --- WhatsApp ----------------------------------------------------------------------


def whatsapp_status(body: bytes) -> dict[str, Any]:
    """The one status in a Cloud API webhook body."""
    status: dict[str, Any] = json.loads(body)["entry"][0]["changes"][0]["value"]["statuses"][0]
    return status


def test_a_whatsapp_message_is_a_template_in_the_clients_language_and_its_wamid_is_kept(
    whatsapp,
) -> None:
    fake, adapter = whatsapp
    result = adapter.send(outgoing())
    assert result.outcome == "sent"
    (received,) = fake.received()
    assert received["accepted"] and result.provider_message_id == received["id"]
    assert result.provider_message_id.startswith("wamid.")
    body = received["body"]
    assert body["to"] == "15550100123"  # digits only, as Meta wants them
    assert body["type"] == "template"
    assert body["template"]["name"] == "casewatch_case_update"
    assert body["template"]["language"] == {"code": "es"}
    (component,) = body["template"]["components"]
    assert component["type"] == "body"
    assert [p["text"] for p in component["parameters"]] == list(SPANISH.template_params)


def test_the_idempotency_key_rides_along_so_a_callback_names_the_notification(
    whatsapp, collector
) -> None:
    fake, adapter = whatsapp
    result = adapter.send(outgoing())
    assert fake.received()[0]["idempotency"]["biz_opaque_callback_data"] == KEY
    requests = collector[0].wait_for(3)
    statuses = [whatsapp_status(r["body"]) for r in requests]
    assert {s["status"] for s in statuses} == {"sent", "delivered", "read"}
    assert {s["biz_opaque_callback_data"] for s in statuses} == {KEY}
    assert {s["id"] for s in statuses} == {result.provider_message_id}
    # Signed as Meta signs: casewatch's webhook can trust them.
    first = requests[0]
    assert first["headers"]["X-Hub-Signature-256"] == meta_signature(WA_SECRET, first["body"])


def test_template_parameters_never_carry_new_lines_which_meta_refuses(whatsapp) -> None:
    fake, adapter = whatsapp
    rendered = Rendered(
        subject="s", text="t", template="casewatch_case_update", template_params=("a\nb", "c\t d")
    )
    assert adapter.send(outgoing(rendered=rendered)).outcome == "sent"
    parameters = fake.received()[0]["body"]["template"]["components"][0]["parameters"]
    assert [p["text"] for p in parameters] == ["a b", "c d"]


def test_free_text_goes_only_when_the_24_hour_window_is_open(whatsapp) -> None:
    fake, adapter = whatsapp
    # Window closed (the client never wrote): the template goes, though text is there.
    assert adapter.send(outgoing(free_text_allowed=False)).outcome == "sent"
    assert fake.received()[-1]["body"]["type"] == "template"
    # The client writes in: free text is allowed and used.
    fake.inbound("15550100123", "¿Hay noticias?")
    assert adapter.send(outgoing(free_text_allowed=True)).outcome == "sent"
    sent = fake.received()[-1]["body"]
    assert sent["type"] == "text" and sent["text"]["body"] == SPANISH.text


def test_free_text_outside_the_window_is_refused_by_meta_and_not_retried(whatsapp) -> None:
    _fake, adapter = whatsapp
    result = adapter.send(outgoing(free_text_allowed=True))  # the dispatcher thought it open
    assert (result.outcome, result.error_code, result.fall_back) == ("permanent", "131047", False)


def test_a_message_with_no_template_outside_the_window_is_not_sent_and_falls_back(
    whatsapp,
) -> None:
    fake, adapter = whatsapp
    result = adapter.send(outgoing(rendered=Rendered(subject="s", text="only text")))
    assert (result.outcome, result.error_code, result.fall_back) == (
        "permanent",
        "no_template",
        True,
    )
    assert fake.received() == []


@pytest.mark.parametrize(
    ("suffix", "outcome", "code", "flags"),
    [
        ("0130429", "transient", "130429", set()),
        ("0131056", "transient", "131056", set()),
        ("0131057", "transient", "131057", set()),
        ("0131047", "permanent", "131047", set()),
        ("0131048", "transient", "131048", {"alert_operator"}),
        ("0131031", "permanent", "131031", {"alert_operator", "fall_back"}),
        ("0000368", "permanent", "368", {"alert_operator", "fall_back"}),
        ("0000190", "permanent", "190", {"alert_operator", "fall_back"}),
    ],
)
def test_each_documented_whatsapp_refusal_is_read_as_channels_md_says(
    whatsapp, suffix, outcome, code, flags
) -> None:
    _fake, adapter = whatsapp
    address = f"+1555{suffix}"
    result = adapter.send(outgoing(address=address, free_text_allowed=False))
    assert (result.outcome, result.error_code) == (outcome, code)
    assert {f for f in ("alert_operator", "fall_back", "opted_out") if getattr(result, f)} == flags
    assert result.provider_message_id == ""
    assert address not in result.detail and address.lstrip("+") not in result.detail


def test_undeliverable_131026_is_accepted_then_reported_failed_in_a_callback(
    whatsapp, collector
) -> None:
    _fake, adapter = whatsapp
    result = adapter.send(outgoing(address="+15550131026"))
    assert result.outcome == "sent"  # Meta says so later, not in the answer
    (callback,) = collector[0].wait_for(1)
    status = whatsapp_status(callback["body"])
    assert status["status"] == "failed" and status["errors"][0]["code"] == 131026
    assert status["biz_opaque_callback_data"] == KEY


def test_an_expired_token_is_permanent_and_tells_the_operator(whatsapp) -> None:
    server_url = f"http://{fake_address(whatsapp)}"
    adapter = whatsapp_adapter(server_url, token="expired")
    try:
        result = adapter.send(outgoing())
    finally:
        adapter.close()
    assert (result.outcome, result.error_code, result.http_status) == ("permanent", "190", 401)
    assert result.alert_operator and result.fall_back  # WhatsApp is down: try the next channel


def fake_address(pair: tuple[Any, WhatsAppTransport | SmsTransport]) -> str:
    base = pair[1].base_url
    assert base is not None
    return base.removeprefix("http://")


def test_a_whatsapp_outage_is_transient(whatsapp) -> None:
    fake, adapter = whatsapp
    fake.faults.configure({"outage": 503, "seconds": 30}, [])
    result = adapter.send(outgoing())
    assert (result.outcome, result.http_status) == ("transient", 503)


def test_a_provider_that_does_not_answer_in_time_is_transient() -> None:
    slow = Collector(delay=1.0)
    with serve_in_thread(slow) as server:
        adapter = whatsapp_adapter(server.url, timeout=0.2)
        try:
            result = adapter.send(outgoing())
        finally:
            adapter.close()
    assert (result.outcome, result.error_code) == ("transient", "timeout")


def test_nothing_listening_is_transient() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    adapter = whatsapp_adapter(f"http://127.0.0.1:{port}")
    try:
        result = adapter.send(outgoing())
    finally:
        adapter.close()
    assert (result.outcome, result.error_code) == ("transient", "connection")


# --- Twilio SMS --------------------------------------------------------------------


def test_an_sms_is_a_signed_form_post_with_a_status_callback_and_its_sid_is_kept(
    twilio,
) -> None:
    fake, adapter = twilio
    callback = f"https://casewatch.example-law.test/webhooks/twilio?key={KEY}"
    result = adapter.send(outgoing(status_callback_url=callback))
    assert result.outcome == "sent" and result.http_status == 201
    (received,) = fake.received()
    assert received["accepted"] and result.provider_message_id == received["sid"]
    assert result.provider_message_id.startswith("SM")
    form = received["form"]
    assert form["To"] == CLIENT_PHONE and form["From"] == TW_FROM
    assert form["Body"] == SPANISH.text
    assert form["StatusCallback"] == callback
    assert "MessagingServiceSid" not in form


def test_a_messaging_service_sender_is_sent_as_messaging_service_sid() -> None:
    fake, server = start_twilio_fake(messaging_service_sid=SERVICE_SID)
    adapter = sms_adapter(server.url, sender=SERVICE_SID)
    try:
        assert adapter.send(outgoing()).outcome == "sent"
    finally:
        adapter.close()
        fake.stop()
        server.stop()
    form = fake.received()[0]["form"]
    assert form["MessagingServiceSid"] == SERVICE_SID and "From" not in form


def test_a_long_text_is_cut_to_twilios_1600_characters(twilio) -> None:
    fake, adapter = twilio
    rendered = Rendered(subject="s", text="Actualización. " * 200)
    assert adapter.send(outgoing(rendered=rendered)).outcome == "sent"
    body = fake.received()[0]["form"]["Body"]
    assert len(body) == 1600 and body.endswith("…")


def test_the_status_callback_carries_the_key_so_a_receipt_finds_its_notification(
    twilio, collector
) -> None:
    _fake, adapter = twilio
    result = adapter.send(
        outgoing(
            address="+15550030006",  # a landline: Twilio reports it undelivered
            status_callback_url=f"{collector[1].url}/webhooks/twilio?key={KEY}",
        )
    )
    assert result.outcome == "sent"
    callbacks = collector[0].wait_for(2)
    forms = [parse_qs(c["body"].decode()) for c in callbacks]
    assert {f["MessageStatus"][0] for f in forms} == {"sent", "undelivered"}
    assert {parse_qs(urlsplit(c["url"]).query)["key"][0] for c in callbacks} == {KEY}
    assert {f["MessageSid"][0] for f in forms} == {result.provider_message_id}


@pytest.mark.parametrize(
    ("suffix", "outcome", "code", "flags"),
    [
        ("0021211", "permanent", "21211", {"fall_back"}),
        ("0021610", "permanent", "21610", {"opted_out"}),
        ("0020429", "transient", "20429", set()),
        ("0020503", "transient", "20503", set()),
    ],
)
def test_each_documented_twilio_refusal_is_read_as_channels_md_says(
    twilio, suffix, outcome, code, flags
) -> None:
    _fake, adapter = twilio
    address = f"+1555{suffix}"
    result = adapter.send(outgoing(address=address))
    assert (result.outcome, result.error_code) == (outcome, code)
    assert {f for f in ("alert_operator", "fall_back", "opted_out") if getattr(result, f)} == flags
    assert address not in result.detail  # Twilio's 21211 message names the number


def test_refused_twilio_credentials_are_permanent_and_tell_the_operator(twilio) -> None:
    adapter = sms_adapter(f"http://{fake_address(twilio)}", token="wrong")
    try:
        result = adapter.send(outgoing())
    finally:
        adapter.close()
    assert (result.outcome, result.error_code, result.http_status) == ("permanent", "20003", 401)
    assert result.alert_operator


def test_a_twilio_outage_is_transient(twilio) -> None:
    fake, adapter = twilio
    fake.faults.configure({"outage": 500, "seconds": 30}, [])
    assert adapter.send(outgoing()).outcome == "transient"


def test_an_unregistered_10dlc_sender_reported_later_is_an_operator_problem() -> None:
    from casewatch.notify.channels.errors import rule_for

    for code in ("30034", "30035"):
        rule = rule_for("sms", code, None)
        assert (rule.outcome, rule.alert_operator) == ("permanent", True)


# --- e-mail ------------------------------------------------------------------------


class Mailbox:
    """What a real SMTP server received; `refuse` makes it answer a code instead."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.refuse: str = ""

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if self.refuse:
            return self.refuse
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append(message)
        return "250 Message accepted for delivery"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def mailbox(settings: Any) -> Iterator[Mailbox]:
    with running_mailbox(settings) as box:
        yield box


@contextmanager
def running_mailbox(settings: Any) -> Iterator[Mailbox]:
    """A real SMTP server on a free port, and Django's mail settings pointing at it."""
    from aiosmtpd.controller import Controller

    box = Mailbox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", port
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.EMAIL_TIMEOUT = 5
    settings.DEFAULT_FROM_EMAIL = "Example Law <notices@example-law.test>"
    try:
        yield box
    finally:
        controller.stop()


CLIENT_EMAIL = "test.client@example.test"


def test_an_email_is_multipart_text_and_html_with_its_own_message_id_and_unsubscribe(
    mailbox,
) -> None:
    headers = unsubscribe_headers(
        "https://casewatch.example-law.test", 7, "email", "notices@example-law.test"
    )
    adapter = EmailTransport()
    try:
        result = adapter.send(outgoing(address=CLIENT_EMAIL, extra_headers=headers))
    finally:
        adapter.close()
    assert result.outcome == "sent"
    (message,) = mailbox.messages
    # (A long Message-ID is folded onto a second header line, as RFC 5322 allows.)
    assert message["Message-ID"].strip() == f"<{KEY}@example-law.test>"
    assert result.provider_message_id == f"<{KEY}@example-law.test>"
    assert message["To"] == CLIENT_EMAIL
    assert message["Subject"] == SPANISH.subject
    assert message.get_content_type() == "multipart/alternative"
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert text is not None and "USCIS aprobó su caso" in text.get_content()
    assert html is not None and "<p>" in html.get_content()
    unsubscribe = message["List-Unsubscribe"].strip()
    assert unsubscribe.startswith("<https://casewatch.example-law.test/unsubscribe/")
    assert "mailto:notices@example-law.test" in unsubscribe
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message["Auto-Submitted"] == "auto-generated"
    token = unsubscribe.split("/unsubscribe/", 1)[1].split(">", 1)[0]
    assert read_unsubscribe_token(token) is not None
    assert read_unsubscribe_token(token).client_id == 7  # type: ignore[union-attr]
    assert read_unsubscribe_token(token[:-2] + "xx") is None


def test_a_resent_email_has_the_same_message_id_so_mail_programs_show_it_once(
    mailbox,
) -> None:
    adapter = EmailTransport()
    try:
        first = adapter.send(outgoing(address=CLIENT_EMAIL))
        second = adapter.send(outgoing(address=CLIENT_EMAIL))
    finally:
        adapter.close()
    assert first.outcome == second.outcome == "sent"
    assert [m["Message-ID"].strip() for m in mailbox.messages] == [first.provider_message_id] * 2


def test_a_mail_server_that_asks_to_try_later_is_transient(mailbox) -> None:
    mailbox.refuse = "451 4.7.1 Greylisted, please try again later"
    adapter = EmailTransport()
    try:
        result = adapter.send(outgoing(address=CLIENT_EMAIL))
    finally:
        adapter.close()
    assert (result.outcome, result.error_code, result.fall_back) == ("transient", "451", False)


def test_a_mailbox_that_does_not_exist_is_permanent_and_falls_back(mailbox) -> None:
    mailbox.refuse = f"550 5.1.1 <{CLIENT_EMAIL}>: Recipient address rejected"
    adapter = EmailTransport()
    try:
        result = adapter.send(outgoing(address=CLIENT_EMAIL))
        # The connection is usable again after a refusal.
        mailbox.refuse = ""
        again = adapter.send(outgoing(address=CLIENT_EMAIL))
    finally:
        adapter.close()
    assert (result.outcome, result.error_code, result.fall_back) == ("permanent", "550", True)
    assert CLIENT_EMAIL not in result.detail
    assert again.outcome == "sent" and len(mailbox.messages) == 1


def test_no_mail_server_is_transient(settings) -> None:
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", free_port()
    settings.EMAIL_TIMEOUT = 2
    adapter = EmailTransport()
    try:
        result = adapter.send(outgoing(address=CLIENT_EMAIL))
    finally:
        adapter.close()
    assert result.outcome == "transient"


def test_without_an_smtp_url_mail_is_kept_encrypted_one_file_per_message(
    settings, tmp_path
) -> None:
    settings.EMAIL_BACKEND = "casewatch.notify.mail_capture.EncryptedFileBackend"
    settings.EMAIL_FILE_PATH = str(tmp_path / "mail")
    adapter = EmailTransport(from_address="casewatch@localhost")
    try:
        assert adapter.send(outgoing(address=CLIENT_EMAIL)).outcome == "sent"
        assert (
            adapter.send(outgoing(address=CLIENT_EMAIL, idempotency_key="b" * 64)).outcome == "sent"
        )
    finally:
        adapter.close()

    files = sorted((tmp_path / "mail").iterdir())
    assert len(files) == 2
    for kept in files:
        assert kept.stat().st_mode & 0o777 == 0o600
        assert CLIENT_EMAIL.encode() not in kept.read_bytes()
    kept_mail = list(captured(tmp_path / "mail"))
    assert [m.to for m in kept_mail] == [CLIENT_EMAIL, CLIENT_EMAIL]
    assert f"<{KEY}@localhost>" in {str(m.message["Message-ID"]).strip() for m in kept_mail}
    assert [m.subject for m in kept_mail] == ["Caso aprobado", "Caso aprobado"]
    assert kept_mail[0].text().strip() == SPANISH.text


# --- outbound webhooks ----------------------------------------------------------------

SECRET = "whsec-test-secret"


@dataclass
class FirmEndpoint:
    """A firm's receiving end: it checks the signature as the docs tell firms to."""

    status: int = 200
    received: list[dict[str, Any]] = field(default_factory=list)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        body = request.get_data()
        header = request.headers.get("X-Casewatch-Signature", "")
        parts = dict(part.split("=", 1) for part in header.split(","))
        expected = hmac.new(
            SECRET.encode(), parts["t"].encode() + b"." + body, hashlib.sha256
        ).hexdigest()
        self.received.append(
            {
                "valid": hmac.compare_digest(expected, parts.get("v1", "")),
                "t": int(parts["t"]),
                "headers": dict(request.headers),
                "json": json.loads(body),
            }
        )
        return Response("", status=self.status)(environ, start_response)


def webhook_outgoing(url: str, secret: str = SECRET) -> Outgoing:
    return Outgoing(
        notification_id=3,
        idempotency_key=KEY,
        address=url,
        language="en",
        rendered=Rendered(subject="RFE", text="Request for Evidence on EAC9999103403"),
        event_type="status_change",
        payload={"id": KEY, "event": "status_change", "case": {"receipt_number": "EAC9999103403"}},
        signing_secret=secret,
    )


def test_a_webhook_is_signed_json_the_firm_can_verify() -> None:
    endpoint = FirmEndpoint()
    with serve_in_thread(endpoint) as server:
        adapter = WebhookTransport(timeout=5.0, clock=lambda: 1767225600.0)
        try:
            result = adapter.send(webhook_outgoing(f"{server.url}/hooks/casewatch"))
        finally:
            adapter.close()
    assert (result.outcome, result.http_status) == ("sent", 200)
    (got,) = endpoint.received
    assert got["valid"] and got["t"] == 1767225600
    assert got["json"]["case"]["receipt_number"] == "EAC9999103403"
    assert got["headers"]["X-Casewatch-Event"] == "status_change"
    assert got["headers"]["Idempotency-Key"] == KEY == got["headers"]["X-Casewatch-Delivery"]
    assert got["headers"]["Content-Type"] == "application/json"


def test_the_documented_signature_example_holds() -> None:
    body = b'{"event":"status_change","id":"example"}'
    header = "t=1767225600,v1=ded258c5f62de5c81cfb6b2007512b555696f175af10084cec4279ff2643c926"
    assert verify("example-secret", header, body, now=1767225600)
    assert not verify("example-secret", header, body, now=1767225600 + 301)  # a replay
    assert not verify("other-secret", header, body, now=1767225600)


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (201, "sent"),
        (204, "sent"),
        (410, "permanent"),
        (400, "permanent"),
        (302, "permanent"),
        (429, "transient"),
        (500, "transient"),
        (503, "transient"),
    ],
)
def test_a_webhooks_answer_decides_whether_it_is_tried_again(status, outcome) -> None:
    endpoint = FirmEndpoint(status=status)
    with serve_in_thread(endpoint) as server:
        adapter = WebhookTransport(timeout=5.0)
        try:
            result = adapter.send(webhook_outgoing(f"{server.url}/hooks"))
        finally:
            adapter.close()
    assert (result.outcome, result.http_status) == (outcome, status)
    assert len(endpoint.received) == 1  # redirects are not followed


def test_a_webhook_without_a_secret_is_never_sent_unsigned() -> None:
    endpoint = FirmEndpoint()
    with serve_in_thread(endpoint) as server:
        adapter = WebhookTransport(timeout=5.0)
        try:
            result = adapter.send(webhook_outgoing(f"{server.url}/hooks", secret=""))
        finally:
            adapter.close()
    assert (result.outcome, result.error_code) == ("permanent", "no_secret")
    assert endpoint.received == []


def test_a_webhook_that_does_not_answer_in_time_is_transient() -> None:
    with serve_in_thread(Collector(delay=1.0)) as server:
        adapter = WebhookTransport(timeout=0.2)
        try:
            result = adapter.send(webhook_outgoing(f"{server.url}/hooks"))
        finally:
            adapter.close()
    assert (result.outcome, result.error_code) == ("transient", "timeout")


# --- in-app, the factory and the error table -------------------------------------------


def test_an_in_app_message_is_delivered_as_it_is_stored() -> None:
    result = InAppTransport().send(outgoing(address=""))
    assert (result.outcome, result.delivered, result.provider_message_id) == ("sent", True, "")


def test_the_factory_builds_every_channel_from_the_settings(monkeypatch, whatsapp) -> None:
    fake, _ = whatsapp
    monkeypatch.setenv("CASEWATCH_WHATSAPP_APP_SECRET", WA_SECRET)
    monkeypatch.setenv("CASEWATCH_WHATSAPP_VERIFY_TOKEN", "verify")
    monkeypatch.setenv("CASEWATCH_WHATSAPP_TOKEN", WA_TOKEN)
    monkeypatch.setenv("CASEWATCH_WHATSAPP_PHONE_NUMBER_ID", WA_PHONE_ID)
    monkeypatch.setenv("CASEWATCH_WHATSAPP_BASE_URL", f"http://{fake_address(whatsapp)}")
    adapters = transports(timeout=5.0)
    try:
        assert set(adapters) == {"whatsapp", "sms", "email", "in_app", "webhook"}
        assert adapters["whatsapp"].send(outgoing()).outcome == "sent"
    finally:
        close_all(adapters)
    assert len(fake.received()) == 1


def test_the_built_in_fakes_address_unknown_yet_means_try_again_later(monkeypatch) -> None:
    for name in ("TOKEN", "APP_SECRET", "VERIFY_TOKEN", "PHONE_NUMBER_ID", "BASE_URL"):
        monkeypatch.delenv(f"CASEWATCH_WHATSAPP_{name}", raising=False)
    adapters = transports(timeout=1.0)
    try:
        result = adapters["whatsapp"].send(outgoing())
    finally:
        close_all(adapters)
    assert (result.outcome, result.error_code) == ("transient", "not_configured")


def test_every_error_code_channels_md_names_is_in_the_table() -> None:
    table = error_table()
    assert {
        "130429",
        "131056",
        "131057",
        "131047",
        "131026",
        "131048",
        "368",
        "131031",
        "190",
    } <= set(table["whatsapp"])
    assert {"21211", "21610", "30003", "30006", "30034", "30035"} <= set(table["sms"])
    assert table["whatsapp"]["131026"].fall_back and table["sms"]["21610"].opted_out


def test_a_malformed_error_table_is_refused_with_where_it_is_wrong() -> None:
    good = '[x.4xx]\noutcome = "permanent"\n[x.5xx]\noutcome = "transient"\n'
    assert set(load_error_table(good)["x"]) == {"4xx", "5xx"}
    with pytest.raises(ErrorTableError, match=r"\[x.5xx\]"):
        load_error_table('[x.4xx]\noutcome = "permanent"\n')
    with pytest.raises(ErrorTableError, match=r"x.9.*unknown field 'retry'"):
        load_error_table(good + '[x.9]\noutcome = "transient"\nretry = true\n')
    with pytest.raises(ErrorTableError, match=r"x.9.*transient or permanent"):
        load_error_table(good + '[x.9]\noutcome = "maybe"\n')
