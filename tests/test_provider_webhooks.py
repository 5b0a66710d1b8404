"""/webhooks/whatsapp and /webhooks/twilio: verified before anything is read, forgeries
refused with 403, delivery receipts applied once and only forwards, STOP and START
words change consent, and any other reply reaches the client's people in the app."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from django.contrib.auth.models import User
from django.db import OperationalError
from django.test import Client as Browser

from casewatch import config
from casewatch.accounts.models import Firm, Membership, Role
from casewatch.audit.chain import verify
from casewatch.audit.models import AuditEntry
from casewatch.cases.models import Case, Client
from casewatch.notify.consent import has_consent, record_consent
from casewatch.notify.inbound import clients_with_phone, handle_inbound, keyword_meaning
from casewatch.notify.messages import render
from casewatch.notify.models import (
    DeliveryReceipt,
    InboundMessage,
    MessageKind,
    Notification,
)
from casewatch.notify.receipts import apply_receipt, replay_receipts, status_callback_url
from casewatch.uscis.sandbox.server import serve_in_thread
from casewatch.uscis.sandbox.twilio_fake import TwilioFake, twilio_signature
from casewatch.uscis.sandbox.whatsapp_fake import WhatsAppFake, meta_signature

pytestmark = pytest.mark.django_db

PHONE = "+15550100123"
WA_ID = PHONE.lstrip("+")
STRANGER = "+15550100199"
AT = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
WHATSAPP = "/webhooks/whatsapp"
TWILIO = "/webhooks/twilio"


# -- a firm, its people, a client who agreed to WhatsApp and SMS -----------------------------


def _member(firm: Firm, username: str, role: str, language: str = "") -> Membership:
    user = User.objects.create_user(username=username)  # no login here: no password to hash
    return Membership.objects.create(firm=firm, user=user, role=role, language=language)


@pytest.fixture
def firm() -> Firm:
    return Firm.objects.create(name="Example Immigration Law", slug="example")


@pytest.fixture
def admin(firm: Firm) -> Membership:
    return _member(firm, "olga", Role.ADMIN)


@pytest.fixture
def attorney(firm: Firm) -> Membership:
    return _member(firm, "ana", Role.ATTORNEY, language="es")


@pytest.fixture
def paralegal(firm: Firm) -> Membership:
    return _member(firm, "paula", Role.PARALEGAL)


@pytest.fixture
def client(firm: Firm, attorney: Membership, paralegal: Membership) -> Client:
    person = Client.objects.create(
        firm=firm, personal={"name": "Test Client", "phone": PHONE}, language="es"
    )
    Case.objects.create(
        firm=firm,
        receipt_number="EAC9999103403",
        client=person,
        attorney=attorney.user,
        paralegal=paralegal.user,
    )
    for channel in ("whatsapp", "sms"):
        record_consent(
            person, channel, granted=True, at=AT - timedelta(days=30), actor="import", method="form"
        )
    return person


def _notification(client: Client, channel: str = "whatsapp", **fields: Any) -> Notification:
    values: dict[str, Any] = {
        "firm_id": client.firm_id,
        "client": client,
        "kind": MessageKind.STATUS_CHANGE,
        "recipient_kind": "client",
        "channel": channel,
        "language": "es",
        "status": "sent",
        "idempotency_key": f"test:{channel}:{client.pk}",
        "provider_message_id": "wamid.TEST-1" if channel == "whatsapp" else "SM" + "1" * 32,
        "created_at": AT,
        "sent_at": AT,
        "address": PHONE,
    }
    values.update(fields)
    return Notification.objects.create(**values)


# -- WhatsApp requests, signed by the fake's code or by hand -----------------------------------


def whatsapp_secrets() -> tuple[str, str]:
    settings = config.whatsapp_settings()
    return settings.app_secret, settings.verify_token


def envelope(value: dict[str, Any]) -> dict[str, Any]:
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": "102290129340398", "changes": [{"field": "messages", "value": value}]}],
    }


def status(
    wamid: str, name: str, at: datetime, errors: list[dict[str, Any]] | None = None, **more: Any
) -> dict[str, Any]:
    entry = {
        "id": wamid,
        "status": name,
        "timestamp": str(int(at.timestamp())),
        "recipient_id": WA_ID,
        **more,
    }
    if errors:
        entry["errors"] = errors
    return envelope({"messaging_product": "whatsapp", "statuses": [entry]})


def message(text: str, sender: str = WA_ID, wamid: str = "wamid.INBOUND-1") -> dict[str, Any]:
    return envelope(
        {
            "messaging_product": "whatsapp",
            "contacts": [{"profile": {"name": "Test Client"}, "wa_id": sender}],
            "messages": [
                {
                    "from": sender,
                    "id": wamid,
                    "timestamp": str(int(AT.timestamp())),
                    "type": "text",
                    "text": {"body": text},
                }
            ],
        }
    )


def by_hand(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def post_whatsapp(payload: dict[str, Any], signature: str | None = None) -> Any:
    body = json.dumps(payload).encode()
    secret, _ = whatsapp_secrets()
    headers = {"X-Hub-Signature-256": signature or meta_signature(secret, body)}
    return Browser().post(WHATSAPP, data=body, content_type="application/json", headers=headers)


# -- the handshake and forgeries -------------------------------------------------------------


def test_the_handshake_echoes_the_challenge_only_for_the_configured_verify_token() -> None:
    _, verify_token = whatsapp_secrets()
    browser = Browser()
    right = browser.get(
        WHATSAPP,
        {"hub.mode": "subscribe", "hub.verify_token": verify_token, "hub.challenge": "1158201444"},
    )
    assert right.status_code == 200
    assert right.content == b"1158201444" and right["Content-Type"].startswith("text/plain")
    for query in (
        {"hub.mode": "subscribe", "hub.verify_token": "guess", "hub.challenge": "1"},
        {"hub.mode": "unsubscribe", "hub.verify_token": verify_token, "hub.challenge": "1"},
        {"hub.challenge": "1"},
    ):
        assert browser.get(WHATSAPP, query).status_code == 403


def test_the_paths_are_exact_and_need_no_csrf_token() -> None:
    browser = Browser(enforce_csrf_checks=True)
    assert browser.post(WHATSAPP, data=b"{}", content_type="application/json").status_code == 403
    assert browser.post(TWILIO, {"MessageSid": "SM1"}).status_code == 403
    assert browser.get(WHATSAPP + "/").status_code == 404


@pytest.mark.parametrize(
    "forge",
    [
        lambda secret, body: "",
        lambda secret, body: by_hand("not-the-app-secret", body),
        lambda secret, body: by_hand(secret, body + b" "),
        lambda secret, body: by_hand(secret, body).replace("sha256=", "sha1="),
        lambda secret, body: "sha256=" + "0" * 64,
    ],
    ids=["unsigned", "other-secret", "other-body", "other-scheme", "zeros"],
)
def test_a_forged_whatsapp_event_is_refused_leaves_one_security_line_and_stores_nothing(
    client: Client, caplog: pytest.LogCaptureFixture, forge: Any
) -> None:
    notification = _notification(client)
    payload = status("wamid.TEST-1", "read", AT + timedelta(minutes=1))
    body = json.dumps(payload).encode()
    secret, _ = whatsapp_secrets()
    browser = Browser()
    headers = {"X-Hub-Signature-256": forge(secret, body)} if forge(secret, body) else {}
    with caplog.at_level(logging.INFO):
        answer = browser.post(WHATSAPP, data=body, content_type="application/json", headers=headers)
    assert answer.status_code == 403
    security = [r for r in caplog.records if r.name == "casewatch.security"]
    assert len(security) == 1
    assert WA_ID not in security[0].getMessage() and "read" not in security[0].getMessage()
    assert DeliveryReceipt.objects.count() == 0
    notification.refresh_from_db()
    assert notification.status == "sent" and notification.read_at is None


def test_a_forged_inbound_stop_withdraws_nothing(client: Client) -> None:
    assert post_whatsapp(message("STOP"), signature=by_hand("guess", b"{}")).status_code == 403
    assert has_consent(client, "whatsapp")
    assert InboundMessage.objects.count() == 0


def test_without_a_configured_secret_every_webhook_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Half a configuration is no configuration: nothing verifies, everything is refused.
    monkeypatch.setenv("CASEWATCH_WHATSAPP_APP_SECRET", "only-this-one")
    monkeypatch.setenv("CASEWATCH_TWILIO_AUTH_TOKEN", "only-this-one")
    body = json.dumps(status("wamid.X", "sent", AT)).encode()
    answer = Browser().post(
        WHATSAPP,
        data=body,
        content_type="application/json",
        headers={"X-Hub-Signature-256": by_hand("only-this-one", body)},
    )
    assert answer.status_code == 403
    assert Browser().get(WHATSAPP, {"hub.mode": "subscribe"}).status_code == 403
    assert Browser().post(TWILIO, {"MessageSid": "SM1", "MessageStatus": "sent"}).status_code == 403


# -- delivery receipts -----------------------------------------------------------------------


def test_signed_statuses_move_a_notification_to_delivered_then_read(client: Client) -> None:
    notification = _notification(client)
    delivered_at, read_at = AT + timedelta(seconds=30), AT + timedelta(minutes=5)
    assert post_whatsapp(status("wamid.TEST-1", "delivered", delivered_at)).status_code == 200
    notification.refresh_from_db()
    assert notification.status == "delivered" and notification.delivered_at == delivered_at

    body = json.dumps(status("wamid.TEST-1", "read", read_at)).encode()
    secret, _ = whatsapp_secrets()
    assert post_whatsapp(json.loads(body), signature=by_hand(secret, body)).status_code == 200
    notification.refresh_from_db()
    assert notification.status == "read"
    assert notification.read_at == read_at and notification.status_at == read_at
    assert AuditEntry.objects.filter(action="notification.receipt").count() == 2
    assert verify().ok


def test_duplicate_and_out_of_order_receipts_never_move_a_notification_backwards(
    client: Client,
) -> None:
    notification = _notification(client, status="sending", sent_at=None)
    for name, minutes in (("read", 5), ("delivered", 1), ("sent", 0), ("read", 5), ("sent", 0)):
        answer = post_whatsapp(status("wamid.TEST-1", name, AT + timedelta(minutes=minutes)))
        assert answer.status_code == 200
    notification.refresh_from_db()
    assert notification.status == "read"
    assert notification.read_at == AT + timedelta(minutes=5)
    # Read implies delivered and sent; the later, older receipts changed nothing.
    assert notification.delivered_at == notification.sent_at == AT + timedelta(minutes=5)
    assert DeliveryReceipt.objects.filter(notification=notification).count() == 3
    assert AuditEntry.objects.filter(action="notification.receipt").count() == 1


def test_an_older_receipt_changes_nothing_even_when_it_would_be_progress(client: Client) -> None:
    notification = _notification(client, status_at=AT + timedelta(minutes=10))
    result = apply_receipt("whatsapp", "wamid.TEST-1", "delivered", AT + timedelta(minutes=9))
    assert result.result == "stale"
    notification.refresh_from_db()
    assert notification.status == "sent" and notification.delivered_at is None


def test_a_failure_after_sent_is_applied_but_never_after_delivery(client: Client) -> None:
    failing = _notification(client)
    undeliverable = [{"code": 131026, "title": "Message undeliverable"}]
    post_whatsapp(status("wamid.TEST-1", "failed", AT + timedelta(minutes=1), undeliverable))
    failing.refresh_from_db()
    assert failing.status == "failed" and failing.failed_at == AT + timedelta(minutes=1)
    assert "131026" in failing.last_error

    arrived = _notification(
        client, idempotency_key="test:arrived", provider_message_id="wamid.TEST-2"
    )
    post_whatsapp(status("wamid.TEST-2", "delivered", AT + timedelta(minutes=1)))
    post_whatsapp(status("wamid.TEST-2", "failed", AT + timedelta(minutes=2), undeliverable))
    arrived.refresh_from_db()
    assert arrived.status == "delivered" and arrived.failed_at is None


def test_an_undeliverable_whatsapp_message_falls_back_to_the_clients_next_channel(
    client: Client,
) -> None:
    failing = _notification(client)
    undeliverable = [{"code": 131026, "title": "Message undeliverable"}]
    post_whatsapp(status("wamid.TEST-1", "failed", AT + timedelta(minutes=1), undeliverable))
    post_whatsapp(status("wamid.TEST-1", "failed", AT + timedelta(minutes=1), undeliverable))
    (fallback,) = Notification.objects.filter(fallback_of=failing)
    assert fallback.channel == "sms" and fallback.status == "pending"
    assert fallback.address == PHONE and fallback.message == failing.message


def test_an_opt_out_reported_in_a_twilio_receipt_withdraws_sms_consent(client: Client) -> None:
    notification = _notification(client, channel="sms")
    post_twilio(sms_status(notification.provider_message_id, "failed", "21610"))
    notification.refresh_from_db()
    assert notification.status == "failed"
    assert not has_consent(client, "sms") and has_consent(client, "whatsapp")
    latest = client.consent_records.order_by("-pk").first()
    assert latest is not None and latest.method == "provider"


def test_a_receipt_carrying_the_idempotency_key_adopts_the_provider_id_a_dead_dispatcher_missed(
    client: Client,
) -> None:
    orphan = _notification(client, status="sending", provider_message_id="", sent_at=None)
    payload = status(
        "wamid.ADOPTED", "delivered", AT, biz_opaque_callback_data=orphan.idempotency_key
    )
    assert post_whatsapp(payload).status_code == 200
    orphan.refresh_from_db()
    assert orphan.provider_message_id == "wamid.ADOPTED"
    assert orphan.status == "delivered" and orphan.sent_at == AT
    assert AuditEntry.objects.filter(action="notification.provider_id_adopted").count() == 1


def test_a_receipt_that_beats_the_dispatcher_waits_and_is_applied_when_the_id_is_recorded(
    client: Client,
) -> None:
    assert apply_receipt("whatsapp", "wamid.EARLY", "delivered", AT).result == "unmatched"
    assert apply_receipt("whatsapp", "wamid.EARLY", "delivered", AT).result == "duplicate"
    notification = _notification(client, provider_message_id="wamid.EARLY")
    assert replay_receipts(notification) == 1
    assert notification.status == "delivered"
    assert DeliveryReceipt.objects.get().notification_id == notification.pk


def test_a_status_no_delivery_depends_on_is_ignored(client: Client) -> None:
    _notification(client, channel="sms")
    assert apply_receipt("sms", "SM" + "1" * 32, "queued", None).result == "ignored"
    assert DeliveryReceipt.objects.count() == 0


# -- Twilio ----------------------------------------------------------------------------------


def post_twilio(params: dict[str, str], *, query: str = "", signature: str | None = None) -> Any:
    token = config.twilio_settings().auth_token
    path = TWILIO + (f"?{query}" if query else "")
    signature = signature or twilio_signature(token, f"http://testserver{path}", params)
    return Browser().post(path, params, headers={"X-Twilio-Signature": signature})


def sms_status(sid: str, name: str, error: str = "") -> dict[str, str]:
    params = {
        "SmsSid": sid,
        "SmsStatus": name,
        "MessageStatus": name,
        "To": PHONE,
        "MessageSid": sid,
        "AccountSid": config.twilio_settings().account_sid,
        "From": config.twilio_settings().sender,
        "ApiVersion": "2010-04-01",
    }
    if error:
        params["ErrorCode"] = error
    return params


def test_a_signed_twilio_status_callback_is_answered_with_empty_twiml_and_applied(
    client: Client,
) -> None:
    notification = _notification(client, channel="sms")
    sid = notification.provider_message_id
    answer = post_twilio(sms_status(sid, "delivered"))
    assert answer.status_code == 200 and answer["Content-Type"].startswith("text/xml")
    assert b"<Response/>" in answer.content
    notification.refresh_from_db()
    assert notification.status == "delivered" and notification.delivered_at is not None


def test_twilio_undelivered_is_a_failure_with_its_error_code(client: Client) -> None:
    notification = _notification(client, channel="sms")
    post_twilio(sms_status(notification.provider_message_id, "undelivered", "30006"))
    notification.refresh_from_db()
    assert notification.status == "failed" and "30006" in notification.last_error


def test_twilio_receipts_find_their_notification_by_the_key_in_the_status_callback(
    client: Client,
) -> None:
    orphan = _notification(client, channel="sms", provider_message_id="", status="sending")
    callback = status_callback_url(orphan.idempotency_key, "http://testserver")
    query = callback.split("?", 1)[1]
    assert post_twilio(sms_status("SM" + "7" * 32, "sent"), query=query).status_code == 200
    orphan.refresh_from_db()
    assert orphan.provider_message_id == "SM" + "7" * 32 and orphan.status == "sent"


def test_a_forged_twilio_request_is_refused(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    notification = _notification(client, channel="sms")
    params = sms_status(notification.provider_message_id, "delivered")
    signed_elsewhere = twilio_signature("another-token", f"http://testserver{TWILIO}", params)
    with caplog.at_level(logging.INFO):
        assert post_twilio(params, signature=signed_elsewhere).status_code == 403
        assert Browser().post(TWILIO, params).status_code == 403  # no signature at all
    assert len([r for r in caplog.records if r.name == "casewatch.security"]) == 2
    tampered = dict(params, MessageStatus="read")
    good = twilio_signature(
        config.twilio_settings().auth_token, f"http://testserver{TWILIO}", params
    )
    assert post_twilio(tampered, signature=good).status_code == 403
    notification.refresh_from_db()
    assert notification.status == "sent"


def test_behind_a_proxy_twilio_is_verified_against_the_public_url(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CASEWATCH_PUBLIC_URL", "https://casewatch.example.org")
    notification = _notification(client, channel="sms")
    params = sms_status(notification.provider_message_id, "delivered")
    token = config.twilio_settings().auth_token
    public = twilio_signature(token, f"https://casewatch.example.org{TWILIO}", params)
    assert post_twilio(params, signature=public).status_code == 200
    inner = twilio_signature(token, f"http://testserver{TWILIO}", params)
    assert post_twilio(params, signature=inner).status_code == 403


# -- inbound messages ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "word", ["STOP", "baja", "¡Baja!", "Parar.", "CANCELAR", "unsubscribe", "Opt-Out", "opt out"]
)
def test_a_stop_word_on_whatsapp_withdraws_whatsapp_consent_only(client: Client, word: str) -> None:
    assert post_whatsapp(message(word)).status_code == 200
    assert not has_consent(client, "whatsapp")
    assert has_consent(client, "sms")
    assert InboundMessage.objects.get().meaning == "opt_out"
    latest = client.consent_records.order_by("-pk").first()
    assert latest is not None
    assert (latest.method, latest.actor, latest.granted) == ("reply", "client", False)
    assert not Notification.objects.filter(kind=MessageKind.CLIENT_REPLY).exists()


def test_an_sms_stop_then_alta_withdraws_and_restores_sms_consent(client: Client) -> None:
    post_twilio(
        {"MessageSid": "SM" + "a" * 32, "From": PHONE, "To": "+15550100000", "Body": "STOP"}
    )
    assert not has_consent(client, "sms") and has_consent(client, "whatsapp")
    post_twilio(
        {"MessageSid": "SM" + "b" * 32, "From": PHONE, "To": "+15550100000", "Body": "Alta"}
    )
    assert has_consent(client, "sms")
    meanings = list(InboundMessage.objects.order_by("pk").values_list("meaning", flat=True))
    assert meanings == ["opt_out", "opt_in"]


def test_start_restores_whatsapp_consent_after_baja(client: Client) -> None:
    post_whatsapp(message("BAJA", wamid="wamid.IN-1"))
    post_whatsapp(message("start", wamid="wamid.IN-2"))
    assert has_consent(client, "whatsapp")


def test_yes_from_a_client_who_already_agreed_is_a_reply_not_a_consent_change(
    client: Client, attorney: Membership
) -> None:
    entries = client.consent_records.count()
    post_whatsapp(message("Yes"))
    assert client.consent_records.count() == entries
    assert InboundMessage.objects.get().meaning == "reply"
    assert Notification.objects.filter(user=attorney.user, kind=MessageKind.CLIENT_REPLY).exists()


def test_a_reply_reaches_the_attorney_and_paralegal_in_the_app_once(
    client: Client, attorney: Membership, paralegal: Membership, admin: Membership
) -> None:
    text = "¿Cuándo es mi entrevista?"
    post_whatsapp(message(text))
    post_whatsapp(message(text))  # Meta delivers it again
    inbound = InboundMessage.objects.get()
    assert inbound.meaning == "reply" and inbound.client_id == client.pk
    assert inbound.body == text and inbound.sender == PHONE
    notices = Notification.objects.filter(kind=MessageKind.CLIENT_REPLY).order_by("user_id")
    assert {n.user_id for n in notices} == {attorney.user_id, paralegal.user_id}
    for notice in notices:
        assert (notice.recipient_kind, notice.channel, notice.status) == (
            "staff",
            "in_app",
            "delivered",
        )
        assert notice.case is not None and notice.case.client_id == client.pk
        assert notice.message["params"]["inbound_message_id"] == inbound.pk
        assert text not in json.dumps(notice.message)  # the words stay encrypted
        shown = render(notice.message, notice.language, audience="staff")
        assert "EAC9999103403" in shown.text and text not in shown.text
    assert notices.get(user=attorney.user).language == "es"


def test_a_reply_from_a_client_without_people_on_a_case_reaches_the_admins(
    firm: Firm, admin: Membership
) -> None:
    loner = Client.objects.create(firm=firm, personal={"name": "Test Client", "phone": PHONE})
    handle_inbound("sms", PHONE, "Hola", "SM" + "c" * 32, AT)
    (notice,) = Notification.objects.filter(kind=MessageKind.CLIENT_REPLY)
    assert notice.user_id == admin.user_id and notice.client_id == loner.pk


def test_an_unknown_sender_is_kept_but_routes_nowhere(client: Client) -> None:
    post_whatsapp(message("STOP", sender=STRANGER.lstrip("+")))
    inbound = InboundMessage.objects.get()
    assert inbound.meaning == "unknown" and inbound.client_id is None and inbound.firm_id is None
    assert inbound.sender == STRANGER
    assert has_consent(client, "whatsapp")
    assert not Notification.objects.filter(kind=MessageKind.CLIENT_REPLY).exists()


def test_a_client_is_found_by_phone_however_the_number_is_written(client: Client) -> None:
    assert [c.pk for c in clients_with_phone("15550100123")] == [client.pk]
    assert [c.pk for c in clients_with_phone("+1 (555) 010-0123")] == [client.pk]
    Client.objects.filter(pk=client.pk).update(personal={"name": "Test Client", "phone": ""})
    assert clients_with_phone(PHONE) == []  # the index never answers for a stale number


@pytest.mark.parametrize(
    ("text", "meaning"),
    [
        ("STOP", "opt_out"),
        ("  stop  ", "opt_out"),
        ("Stop please", None),
        ("BÁJA", "opt_out"),
        ("optout", "opt_out"),
        ("STOPALL", "opt_out"),
        ("UNSTOP", "opt_in"),
        ("¡Alta!", "opt_in"),
        ("", None),
        ("No quiero parar", None),
    ],
)
def test_only_a_whole_message_is_a_keyword(text: str, meaning: str | None) -> None:
    assert keyword_meaning(text) == meaning


# -- end to end: the fake over HTTP, calling a live casewatch ---------------------------------


def _refreshed(row: Notification) -> bool:
    """Read the row again while the live server writes it; False while its table is locked.

    The test database is SQLite in memory, shared between this thread and the server's:
    a reader meets a table lock at once, with no busy timeout to wait it out.
    """
    try:
        row.refresh_from_db()
    except OperationalError as exc:
        if "locked" not in str(exc):
            raise
        time.sleep(0.05)
        return False
    return True


def test_the_whatsapp_fake_marks_a_real_send_delivered_then_read_on_a_live_server(
    live_server: Any, client: Client
) -> None:
    app_secret, _ = whatsapp_secrets()
    settings = config.whatsapp_settings()
    fake = WhatsAppFake(
        app_secret=app_secret,
        token=settings.token,
        phone_number_id=settings.phone_number_id,
        callback_url=live_server.url + WHATSAPP,
        callback_delay=0.1,
    )
    server = serve_in_thread(fake)
    notification = _notification(
        client, status="sending", provider_message_id="", sent_at=None, idempotency_key="e2e-1"
    )
    try:
        answer = httpx.post(
            f"{server.url}/{settings.api_version}/{settings.phone_number_id}/messages",
            headers={"Authorization": f"Bearer {settings.token}"},
            json={
                "messaging_product": "whatsapp",
                "to": WA_ID,
                "type": "template",
                "template": {
                    "name": "case_update",
                    "language": {"code": "es"},
                    "components": [
                        {"type": "body", "parameters": [{"type": "text", "text": "Aprobado"}]}
                    ],
                },
                "biz_opaque_callback_data": notification.idempotency_key,
            },
        )
        assert answer.status_code == 200
        Notification.objects.filter(pk=notification.pk).update(
            provider_message_id=answer.json()["messages"][0]["id"]
        )
        seen: list[str] = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if not _refreshed(notification):
                continue
            if not seen or seen[-1] != notification.status:
                seen.append(notification.status)
            if notification.status == "read":
                break
            time.sleep(0.05)
        assert notification.status == "read", seen
        assert notification.delivered_at is not None and notification.read_at is not None
        assert notification.delivered_at <= notification.read_at
        assert fake.sender.idle(5)
        records = httpx.get(f"{server.url}/_fake/callbacks").json()
        assert [r["http_status"] for r in records] == [200, 200, 200]
    finally:
        fake.stop()
        server.stop()
    assert DeliveryReceipt.objects.filter(notification_id=notification.pk).count() == 3


def test_an_inbound_baja_from_the_fake_withdraws_consent_on_a_live_server(
    live_server: Any, client: Client
) -> None:
    settings = config.twilio_settings()
    fake = TwilioFake(
        account_sid=settings.account_sid,
        auth_token=settings.auth_token,
        sender=settings.sender,
        inbound_url=live_server.url + TWILIO,
    )
    server = serve_in_thread(fake)
    try:
        answer = httpx.post(
            f"{server.url}/_fake/inbound", json={"from": PHONE, "text": "BAJA", "wait": True}
        )
        assert answer.json()["callback"]["http_status"] == 200
    finally:
        fake.stop()
        server.stop()
    assert not has_consent(client, "sms")
