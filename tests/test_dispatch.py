"""The dispatcher delivers each notification once: retries, fallbacks, consent, crashes.

Everything here is real: the database, the WhatsApp and Twilio fakes over HTTP, an
SMTP server. The fakes' signed callbacks are caught by a real HTTP endpoint and
handed, byte for byte, to casewatch's own webhook views, in the test's thread, so
each step happens in a known order.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from django.contrib.auth.models import User
from django.test import Client as Browser

from casewatch import config
from casewatch.accounts.models import Firm, Membership, Role
from casewatch.audit.models import AuditEntry
from casewatch.cases.models import Case, Client
from casewatch.notify.channels import Transport, close_all, transports
from casewatch.notify.consent import has_consent, record_consent
from casewatch.notify.dispatch import DispatchReport, dispatch_due, fallback_key
from casewatch.notify.models import (
    ContactPlan,
    DeliveryAttempt,
    MessageKind,
    MessagingPolicy,
    Notification,
    StaffContact,
    WebhookEndpoint,
)
from casewatch.notify.route import idempotency_key
from casewatch.uscis.sandbox.server import serve_in_thread
from casewatch.uscis.sandbox.twilio_fake import TwilioFake
from casewatch.uscis.sandbox.whatsapp_fake import WhatsAppFake
from tests.test_channels import Collector, Mailbox, running_mailbox

# 10:00 in New York, the firm's zone: outside quiet hours.
NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
PHONE = "+15550100123"
EMAIL = "test.client@example.test"
RECEIPT = "EAC9999103403"
GRACE = timedelta(minutes=2)


# --- the world: a firm, a client, the providers ---------------------------------------------


@dataclass
class World:
    firm: Firm
    admin: Membership
    attorney: Membership
    paralegal: Membership
    client: Client
    case: Case
    whatsapp: WhatsAppFake
    twilio: TwilioFake
    mailbox: Mailbox
    callbacks: Collector
    transports: dict[str, Transport]
    relayed: int = 0

    def dispatch(self, at: datetime = NOW, **kwargs: Any) -> DispatchReport:
        return dispatch_due(at, transports=self.transports, **kwargs)

    def relay_callbacks(self) -> list[int]:
        """Hand every callback the fakes sent since the last call to casewatch's webhooks."""
        assert self.whatsapp.sender.idle(10) and self.twilio.sender.idle(10)
        answers = []
        browser = Browser()
        for request in self.callbacks.requests[self.relayed :]:
            url = urlsplit(request["url"])
            headers = {
                name: value
                for name, value in request["headers"].items()
                if name in ("X-Hub-Signature-256", "X-Twilio-Signature")
            }
            answer = browser.generic(
                "POST",
                f"{url.path}?{url.query}" if url.query else url.path,
                data=request["body"],
                content_type=request["headers"]["Content-Type"],
                headers=headers,
            )
            answers.append(answer.status_code)
        self.relayed = len(self.callbacks.requests)
        assert set(answers) <= {200}, answers
        return answers

    def whatsapp_sends(self) -> list[dict[str, Any]]:
        return [r for r in self.whatsapp.received() if r["accepted"]]

    def sms_sends(self) -> list[dict[str, Any]]:
        return [r for r in self.twilio.received() if r["accepted"]]


def member(firm: Firm, username: str, role: str) -> Membership:
    user = User.objects.create_user(username=username, email=f"{username}@example-law.test")
    return Membership.objects.create(firm=firm, user=user, role=role)


def withdraw(client: Client, channel: str, at: datetime) -> None:
    """The client says no more on this channel (a STOP reply)."""
    record_consent(client, channel, granted=False, at=at, actor="client", method="reply")


def make_client(firm: Firm, *, phone: str = PHONE, channels: tuple[str, ...] = ()) -> Client:
    person = Client.objects.create(
        firm=firm, personal={"name": "Test Client", "phone": phone, "email": EMAIL}, language="es"
    )
    ContactPlan.objects.create(client=person, channels=["whatsapp", "sms", "email"])
    for channel in channels or ("whatsapp", "sms", "email"):
        record_consent(
            person,
            channel,
            granted=True,
            at=NOW - timedelta(days=30),
            actor="import",
            method="form",
        )
    return person


@dataclass
class Providers:
    """The fakes and the callback catcher, served once for the whole module."""

    whatsapp: WhatsAppFake
    twilio: TwilioFake
    callbacks: Collector
    urls: dict[str, str]

    def reset(self) -> None:
        for fake, name in ((self.whatsapp, "WHATSAPP"), (self.twilio, "TWILIO")):
            assert fake.sender.idle(10)
            base = self.urls[f"CASEWATCH_{name}_BASE_URL"]
            httpx.post(f"{base}/_fake/faults", json={"clear": True}).raise_for_status()
            httpx.post(f"{base}/_fake/reset").raise_for_status()
        with self.callbacks.lock:
            self.callbacks.requests.clear()


@pytest.fixture(scope="module")
def providers() -> Iterator[Providers]:
    callbacks = Collector()
    callback_server = serve_in_thread(callbacks)
    wa, tw = config.whatsapp_settings(), config.twilio_settings()
    whatsapp = WhatsAppFake(
        app_secret=wa.app_secret,
        token=wa.token,
        phone_number_id=wa.phone_number_id,
        callback_url=f"{callback_server.url}/webhooks/whatsapp",
        callback_delay=0.02,
        read_receipts=False,
        retry_delays=(),
    )
    twilio = TwilioFake(
        account_sid=tw.account_sid,
        auth_token=tw.auth_token,
        sender=tw.sender,
        callback_delay=0.02,
        retry_delays=(),
    )
    wa_server, tw_server = serve_in_thread(whatsapp), serve_in_thread(twilio)
    try:
        yield Providers(
            whatsapp=whatsapp,
            twilio=twilio,
            callbacks=callbacks,
            urls={
                "CASEWATCH_WHATSAPP_BASE_URL": wa_server.url,
                "CASEWATCH_TWILIO_BASE_URL": tw_server.url,
                # Providers call back on the public address; the Twilio signature covers it.
                "CASEWATCH_PUBLIC_URL": callback_server.url,
            },
        )
    finally:
        whatsapp.stop()
        twilio.stop()
        for server in (wa_server, tw_server, callback_server):
            server.stop()


@pytest.fixture
def world(settings: Any, monkeypatch: pytest.MonkeyPatch, providers: Providers) -> Iterator[World]:
    providers.reset()
    for name, url in providers.urls.items():
        monkeypatch.setenv(name, url)
    firm = Firm.objects.create(name="Example Law", slug="example")
    admin = member(firm, "olga", Role.ADMIN)
    attorney = member(firm, "ana", Role.ATTORNEY)
    paralegal = member(firm, "paula", Role.PARALEGAL)
    person = make_client(firm)
    case = Case.objects.create(
        firm=firm,
        receipt_number=RECEIPT,
        client=person,
        attorney=attorney.user,
        paralegal=paralegal.user,
        status="approved",
        category="approved",
    )
    with running_mailbox(settings) as mailbox:
        adapters = transports(timeout=5.0)
        try:
            yield World(
                firm=firm,
                admin=admin,
                attorney=attorney,
                paralegal=paralegal,
                client=person,
                case=case,
                whatsapp=providers.whatsapp,
                twilio=providers.twilio,
                mailbox=mailbox,
                callbacks=providers.callbacks,
                transports=adapters,
            )
        finally:
            close_all(adapters)


def client_message(
    world: World, channel: str = "whatsapp", n: int = 1, **fields: Any
) -> Notification:
    """A client notification as the router makes it."""
    values: dict[str, Any] = {
        "firm": world.firm,
        "case": world.case,
        "client": world.client,
        "kind": MessageKind.STATUS_CHANGE,
        "recipient_kind": "client",
        "channel": channel,
        "address": EMAIL if channel == "email" else world.client.phone,
        "language": "es",
        "message": {
            "key": "status_change",
            "params": {
                "receipt": RECEIPT,
                "status": "approved",
                "category": "approved",
                "firm_name": "Example Law",
            },
        },
        "status": "pending",
        "idempotency_key": idempotency_key("status_event", n, f"client:{world.client.pk}", channel),
        "next_attempt_at": NOW,
        "created_at": NOW,
    }
    values.update(fields)
    return Notification.objects.create(**values)


def staff_message(world: World, channel: str, who: Membership, **fields: Any) -> Notification:
    values: dict[str, Any] = {
        "firm": world.firm,
        "case": world.case,
        "kind": MessageKind.STATUS_CHANGE,
        "recipient_kind": "staff",
        "user": who.user,
        "channel": channel,
        "address": "",
        "language": "en",
        "urgency": "action",
        "message": {
            "key": "status_change",
            "params": {"receipt": RECEIPT, "status": "rfe_sent", "category": "rfe"},
        },
        "status": "pending",
        "idempotency_key": idempotency_key("status_event", 1, f"user:{who.user_id}", channel),
        "next_attempt_at": NOW,
        "created_at": NOW,
    }
    values.update(fields)
    return Notification.objects.create(**values)


def actions(notification: Notification) -> list[str]:
    return list(
        AuditEntry.objects.filter(object_type="notification", object_id=str(notification.pk))
        .order_by("seq")
        .values_list("action", flat=True)
    )


pytestmark = pytest.mark.django_db


# --- sending ------------------------------------------------------------------------------


def test_a_due_client_message_goes_once_with_its_wamid_and_one_recorded_attempt(world) -> None:
    note = client_message(world)
    report = world.dispatch()
    assert (report.claimed, report.sent) == (1, 1)
    note.refresh_from_db()
    (sent,) = world.whatsapp_sends()
    assert (note.status, note.provider_message_id, note.attempts) == ("sent", sent["id"], 1)
    assert note.sent_at is not None and note.claimed_by == "" and note.claimed_until is None
    # Spanish, as a template with Meta's language code, carrying the notification's key.
    assert sent["body"]["template"]["language"] == {"code": "es"}
    assert sent["idempotency"]["biz_opaque_callback_data"] == note.idempotency_key
    (attempt,) = DeliveryAttempt.objects.filter(notification=note)
    assert (attempt.outcome, attempt.provider_message_id, attempt.http_status) == (
        "sent",
        sent["id"],
        200,
    )
    assert PHONE not in attempt.response and PHONE.lstrip("+") not in attempt.response
    assert actions(note) == ["notification.attempt", "notification.sent"]
    # The fake's signed callback, through casewatch's own webhook, marks it delivered.
    world.relay_callbacks()
    note.refresh_from_db()
    assert note.status == "delivered" and note.delivered_at is not None
    # Nothing is due any more: a second run sends nothing.
    assert world.dispatch(NOW + timedelta(hours=1)).claimed == 0
    assert len(world.whatsapp_sends()) == 1


def test_nothing_is_sent_before_it_is_due(world) -> None:
    client_message(world, next_attempt_at=NOW + timedelta(minutes=5))
    assert world.dispatch().claimed == 0
    assert world.whatsapp.received() == []


def test_an_sms_carries_a_status_callback_that_finds_its_notification(world) -> None:
    note = client_message(world, "sms")
    assert world.dispatch().sent == 1
    (sent,) = world.sms_sends()
    callback = sent["form"]["StatusCallback"]
    assert callback.startswith(f"{config.public_url()}/webhooks/twilio?key=")
    assert callback.endswith(note.idempotency_key)
    world.relay_callbacks()
    note.refresh_from_db()
    assert (note.status, note.provider_message_id) == ("delivered", sent["sid"])


def test_a_client_email_is_text_and_html_with_its_message_id_and_unsubscribe(world) -> None:
    note = client_message(world, "email")
    assert world.dispatch().sent == 1
    (mail,) = world.mailbox.messages
    note.refresh_from_db()
    assert mail["Message-ID"].strip() == note.provider_message_id
    assert note.idempotency_key in note.provider_message_id
    assert mail.get_body(preferencelist=("html",)) is not None
    assert "/unsubscribe/" in mail["List-Unsubscribe"]
    assert "EAC9999103403" in mail["Subject"]


def test_in_app_notifications_are_delivered_at_once(world) -> None:
    stored = staff_message(world, "in_app", world.attorney)
    already = staff_message(
        world,
        "in_app",
        world.paralegal,
        status="delivered",
        delivered_at=NOW,
        next_attempt_at=None,
    )
    report = world.dispatch()
    stored.refresh_from_db()
    assert (report.claimed, report.delivered) == (1, 1)
    assert (stored.status, stored.provider_message_id) == ("delivered", "")
    assert stored.delivered_at is not None
    already.refresh_from_db()
    assert already.status == "delivered" and already.attempts == 0


def test_a_webhook_goes_signed_to_the_firms_endpoint(world) -> None:
    endpoint_app = Collector()
    with serve_in_thread(endpoint_app) as server:
        url = f"{server.url}/casewatch-events"
        WebhookEndpoint.objects.create(firm=world.firm, url=url, secret="whsec-test")
        note = staff_message(world, "webhook", world.admin, address=url, user=None)
        assert world.dispatch().sent == 1
    (request,) = endpoint_app.requests
    assert request["headers"]["X-Casewatch-Event"] == "status_change"
    assert request["headers"]["X-Casewatch-Signature"].startswith("t=")
    assert b'"receipt_number":"EAC9999103403"' in request["body"]
    note.refresh_from_db()
    assert note.status == "sent"


def test_an_endpoint_that_answers_410_gone_is_disabled(world) -> None:
    with serve_in_thread(Collector(status=410)) as server:
        url = f"{server.url}/gone"
        endpoint = WebhookEndpoint.objects.create(firm=world.firm, url=url, secret="whsec-test")
        note = staff_message(world, "webhook", world.admin, address=url, user=None)
        assert world.dispatch().failed == 1
    endpoint.refresh_from_db()
    note.refresh_from_db()
    assert note.status == "failed" and not endpoint.active and endpoint.disabled_at is not None


# --- retries ---------------------------------------------------------------------------------


def test_a_transient_failure_then_success_records_two_attempts_and_one_send(world) -> None:
    note = client_message(world)
    world.whatsapp.faults.configure({"code": 130429, "count": 1}, [130429])
    assert world.dispatch().retrying == 1
    note.refresh_from_db()
    assert (note.status, note.attempts) == ("pending", 1)
    assert note.next_attempt_at is not None
    wait = note.next_attempt_at - NOW
    assert timedelta(seconds=24) <= wait <= timedelta(seconds=37)
    assert "130429" in note.last_error
    # Not before the back-off is over.
    assert world.dispatch(NOW + timedelta(seconds=10)).claimed == 0
    assert world.dispatch(note.next_attempt_at).sent == 1
    note.refresh_from_db()
    assert (note.status, note.attempts, note.last_error) == ("sent", 2, "")
    outcomes = list(
        DeliveryAttempt.objects.filter(notification=note)
        .order_by("started_at")
        .values_list("outcome", "error_code")
    )
    assert outcomes == [("transient", "130429"), ("sent", "")]
    assert len(world.whatsapp.received()) == 2 and len(world.whatsapp_sends()) == 1


def test_the_back_off_grows_with_each_transient_failure(world) -> None:
    note = client_message(world)
    world.whatsapp.faults.configure({"code": 131056, "count": 5}, [131056])
    waits = []
    at = NOW
    for _ in range(5):
        assert world.dispatch(at).retrying == 1
        note.refresh_from_db()
        assert note.next_attempt_at is not None
        waits.append((note.next_attempt_at - at).total_seconds())
        at = note.next_attempt_at
    assert waits == sorted(waits) and len(set(waits)) == 5
    assert 24 <= waits[0] <= 37 and 384 <= waits[4] <= 577  # 30 s × 2⁴ = 480 s, ±20 %
    assert world.dispatch(at).sent == 1


def test_a_providers_retry_after_is_honoured(world) -> None:
    with serve_in_thread(Collector(status=429, headers={"Retry-After": "600"})) as server:
        url = f"{server.url}/busy"
        WebhookEndpoint.objects.create(firm=world.firm, url=url, secret="whsec-test")
        note = staff_message(world, "webhook", world.admin, address=url, user=None)
        assert world.dispatch().retrying == 1
    note.refresh_from_db()
    assert note.next_attempt_at is not None
    assert note.next_attempt_at - NOW >= timedelta(seconds=600)


def test_after_the_last_attempt_a_client_message_fails_and_goes_to_the_next_channel(
    world, monkeypatch
) -> None:
    monkeypatch.setenv("CASEWATCH_DISPATCH_MAX_ATTEMPTS", "3")
    note = client_message(world)
    world.whatsapp.faults.configure({"code": 131057, "count": 10}, [131057])
    at = NOW
    for _ in range(3):
        world.dispatch(at)
        note.refresh_from_db()
        at = note.next_attempt_at or at
    assert (note.status, note.attempts) == ("failed", 3)
    assert "no attempts left" in note.last_error
    (sms,) = Notification.objects.filter(fallback_of=note)
    assert sms.channel == "sms"


# --- falling back ----------------------------------------------------------------------------


def test_whatsapp_undeliverable_falls_back_to_sms_then_email_in_the_clients_order(world) -> None:
    world.client.personal = {**world.client.personal, "phone": "+15550131026"}  # not on WhatsApp
    world.client.save()
    # Callbacks are applied on the real clock; quiet hours must not hold the fallbacks.
    MessagingPolicy.objects.create(firm=world.firm, quiet_hours=False)
    note = client_message(world, address="+15550131026")
    # WhatsApp accepts, then reports 131026 in a signed callback.
    assert world.dispatch().sent == 1
    world.relay_callbacks()
    note.refresh_from_db()
    assert note.status == "failed" and "131026" in note.last_error
    (sms,) = Notification.objects.filter(fallback_of=note)
    assert (sms.channel, sms.status, sms.idempotency_key) == (
        "sms",
        "pending",
        fallback_key(note, "sms"),
    )
    assert sms.message == note.message and sms.language == "es"
    # Twilio refuses the number outright (21211): permanent, so the next channel.
    world.twilio.faults.configure({"code": 21211, "count": 1}, [21211])
    assert sms.next_attempt_at is not None
    assert world.dispatch(sms.next_attempt_at).failed == 1
    sms.refresh_from_db()
    assert sms.status == "failed" and sms.last_error.startswith("21211")
    (mail,) = Notification.objects.filter(fallback_of=sms)
    assert (mail.channel, mail.address) == ("email", EMAIL)
    assert mail.next_attempt_at is not None
    assert world.dispatch(mail.next_attempt_at).sent == 1
    assert len(world.mailbox.messages) == 1
    mail.refresh_from_db()
    assert mail.status == "sent"
    assert len(world.whatsapp_sends()) == 1 and world.sms_sends() == []
    # Nobody at the firm needed to hear: the client was reached.
    assert not Notification.objects.filter(kind=MessageKind.DELIVERY_PROBLEM).exists()


def test_the_next_channel_is_the_next_one_the_client_chose(world) -> None:
    ContactPlan.objects.filter(client=world.client).update(channels=["whatsapp", "email", "sms"])
    world.whatsapp.faults.configure({"code": 131026, "count": 1}, [131026])
    note = client_message(world)
    world.dispatch()
    world.relay_callbacks()
    (next_one,) = Notification.objects.filter(fallback_of=note)
    assert next_one.channel == "email"


def test_a_channel_without_consent_is_skipped_when_falling_back(world) -> None:
    withdraw(world.client, "sms", NOW - timedelta(days=1))
    world.whatsapp.faults.configure({"code": 131026, "count": 1}, [131026])
    note = client_message(world)
    world.dispatch()
    world.relay_callbacks()
    (next_one,) = Notification.objects.filter(fallback_of=note)
    assert next_one.channel == "email"


def test_with_no_channel_left_the_responsible_staff_hear_in_the_app(world) -> None:
    for channel in ("sms", "email"):
        withdraw(world.client, channel, NOW - timedelta(days=1))
    note = client_message(world, "whatsapp")
    world.whatsapp.faults.configure({"code": 131026, "count": 1}, [131026])
    world.dispatch()
    world.relay_callbacks()
    assert not Notification.objects.filter(fallback_of=note).exists()
    alerts = Notification.objects.filter(kind=MessageKind.DELIVERY_PROBLEM).order_by("user_id")
    assert {a.user_id for a in alerts} == {world.attorney.user_id, world.paralegal.user_id}
    assert {(a.channel, a.status, a.recipient_kind) for a in alerts} == {
        ("in_app", "delivered", "staff")
    }
    assert alerts[0].message["params"]["receipt"] == RECEIPT
    assert PHONE not in str(alerts[0].message)
    # Falling back again for the same failure tells no one twice.
    from casewatch.notify.dispatch import fall_back

    fall_back(note, "again", NOW)
    assert Notification.objects.filter(kind=MessageKind.DELIVERY_PROBLEM).count() == 2


def test_an_sms_opt_out_at_twilio_withdraws_consent_and_tries_the_next_channel(world) -> None:
    ContactPlan.objects.filter(client=world.client).update(channels=["sms", "email", "whatsapp"])
    note = client_message(world, "sms", address="+15550021610")
    assert world.dispatch().failed == 1
    assert not has_consent(world.client, "sms")
    note.refresh_from_db()
    assert note.last_error.startswith("21610")
    (mail,) = Notification.objects.filter(fallback_of=note)
    assert mail.channel == "email"


def test_an_operator_problem_is_told_to_the_admins_once_an_hour(world) -> None:
    world.whatsapp.faults.configure({"code": 131031, "count": 3}, [131031])
    first = client_message(world, n=1)
    second = client_message(world, n=2)
    world.dispatch()
    for note in (first, second):
        note.refresh_from_db()
        assert note.status == "failed"
    alerts = Notification.objects.filter(kind=MessageKind.DELIVERY_PROBLEM, user=world.admin.user)
    assert alerts.count() == 1
    assert alerts.get().message["params"]["error_code"] == "131031"
    third = client_message(world, n=3)
    world.dispatch(NOW + timedelta(minutes=61))
    third.refresh_from_db()
    assert third.status == "failed" and alerts.count() == 2


# --- consent and quiet hours at the moment of sending ------------------------------------------


def test_without_consent_a_message_is_suppressed_and_nothing_reaches_the_provider(world) -> None:
    quiet = make_client(world.firm, phone="+15550100124", channels=("whatsapp",))
    withdraw(quiet, "whatsapp", NOW - timedelta(hours=1))
    note = client_message(world, client=quiet, address="+15550100124")
    report = world.dispatch()
    assert report.suppressed == 1 and report.sent == 0
    note.refresh_from_db()
    assert note.status == "suppressed" and "consent" in note.last_error
    assert world.whatsapp.received() == [] and world.twilio.received() == []
    assert world.mailbox.messages == []
    assert actions(note) == ["notification.suppressed"]
    # The client chose: no one at the firm is alerted for it.
    assert not Notification.objects.filter(kind=MessageKind.DELIVERY_PROBLEM).exists()


def test_consent_withdrawn_after_routing_moves_the_message_to_a_consented_channel(world) -> None:
    note = client_message(world)
    withdraw(world.client, "whatsapp", NOW - timedelta(minutes=1))
    world.dispatch()
    note.refresh_from_db()
    assert note.status == "suppressed" and world.whatsapp.received() == []
    (sms,) = Notification.objects.filter(fallback_of=note)
    assert sms.next_attempt_at is not None
    assert world.dispatch(sms.next_attempt_at).sent == 1 and len(world.sms_sends()) == 1
    sms.refresh_from_db()
    assert sms.status == "sent"


def test_a_client_message_due_at_night_is_held_until_morning(world) -> None:
    night = datetime(2026, 3, 3, 3, 0, tzinfo=UTC)  # 22:00 in New York
    note = client_message(world, next_attempt_at=night)
    assert world.dispatch(night).held == 1
    note.refresh_from_db()
    morning = datetime(2026, 3, 3, 13, 0, tzinfo=UTC)  # 8:00 in New York
    assert (note.status, note.next_attempt_at) == ("held", morning)
    assert world.whatsapp.received() == []
    assert world.dispatch(morning - timedelta(minutes=1)).claimed == 0
    assert world.dispatch(morning).sent == 1


def test_a_staff_alert_at_night_is_not_held(world) -> None:
    StaffContact.objects.create(membership=world.attorney, phone="+15550100150", channels=["sms"])
    note = staff_message(world, "sms", world.attorney)
    night = datetime(2026, 3, 3, 3, 0, tzinfo=UTC)
    assert world.dispatch(night).sent == 1
    (sent,) = world.sms_sends()
    assert sent["form"]["To"] == "+15550100150"
    note.refresh_from_db()
    assert note.status == "sent"


def test_a_firm_without_quiet_hours_sends_at_night(world) -> None:
    MessagingPolicy.objects.create(firm=world.firm, quiet_hours=False)
    night = datetime(2026, 3, 3, 3, 0, tzinfo=UTC)
    client_message(world, next_attempt_at=night)
    assert world.dispatch(night).sent == 1


# --- a dispatcher killed mid-send --------------------------------------------------------------


def killed_mid_send(note: Notification, claim_ran_out: datetime) -> None:
    """What a dispatcher killed during the provider call leaves behind."""
    Notification.objects.filter(pk=note.pk).update(
        status="sending", claimed_until=claim_ran_out, claimed_by="dead-host:1:abcd", attempts=1
    )


def test_a_send_the_provider_took_before_the_crash_is_never_sent_again(world) -> None:
    note = client_message(world)
    # The dead dispatcher's call reached WhatsApp, which took it...
    outgoing_key = note.idempotency_key
    world.transports["whatsapp"].send(sample_outgoing(world, note))
    killed_mid_send(note, NOW - timedelta(minutes=10))
    # ...and WhatsApp's callback, carrying the key, arrived later.
    world.relay_callbacks()
    note.refresh_from_db()
    (sent,) = world.whatsapp_sends()
    assert note.provider_message_id == sent["id"]
    assert sent["idempotency"]["biz_opaque_callback_data"] == outgoing_key
    report = world.dispatch(NOW)
    assert report.sent == 0
    note.refresh_from_db()
    assert note.status == "delivered"
    assert len(world.whatsapp.received()) == 1


def test_a_provider_id_recorded_for_a_crashed_send_is_adopted_without_sending(world) -> None:
    note = client_message(world)
    killed_mid_send(note, NOW - GRACE - timedelta(seconds=1))
    Notification.objects.filter(pk=note.pk).update(provider_message_id="wamid.ADOPTED")
    report = world.dispatch(NOW)
    assert (report.adopted, report.sent) == (1, 0)
    note.refresh_from_db()
    assert (note.status, note.provider_message_id) == ("sent", "wamid.ADOPTED")
    assert note.claimed_by == ""
    assert world.whatsapp.received() == []
    assert "notification.adopted" in actions(note)


def test_a_crashed_send_the_provider_never_took_is_sent_once_after_the_grace_period(world) -> None:
    note = client_message(world)
    ran_out = NOW - timedelta(seconds=30)
    killed_mid_send(note, ran_out)
    # Within the grace period a late callback may still come: nothing is sent.
    assert world.dispatch(NOW).claimed == 0
    assert world.dispatch(ran_out + GRACE - timedelta(seconds=1)).claimed == 0
    assert world.whatsapp.received() == []
    report = world.dispatch(ran_out + GRACE)
    assert report.sent == 1
    note.refresh_from_db()
    assert (note.status, note.attempts) == ("sent", 2)
    assert len(world.whatsapp_sends()) == 1
    assert actions(note)[:2] == ["notification.resend_after_crash", "notification.attempt"]
    assert world.dispatch(ran_out + GRACE + timedelta(hours=1)).claimed == 0


def test_an_email_resent_after_a_crash_keeps_its_message_id(world) -> None:
    note = client_message(world, "email")
    world.transports["email"].send(sample_outgoing(world, note))  # the dead dispatcher's send
    killed_mid_send(note, NOW - GRACE)
    assert world.dispatch(NOW).sent == 1
    first, second = world.mailbox.messages
    assert first["Message-ID"] == second["Message-ID"]  # one message in the client's inbox


def sample_outgoing(world: World, note: Notification) -> Any:
    """The Outgoing the dispatcher builds for `note` (what a killed one had sent)."""
    from casewatch.notify.channels import Outgoing
    from casewatch.notify.messages import render, whatsapp_language

    rendered = render(note.message, note.language, audience="client")
    if note.channel == "whatsapp":
        import dataclasses

        rendered = dataclasses.replace(rendered, template_language=whatsapp_language("es"))
    return Outgoing(
        notification_id=note.pk,
        idempotency_key=note.idempotency_key,
        address=note.address,
        language=note.language,
        rendered=rendered,
    )


# --- two dispatchers at once -------------------------------------------------------------------


@pytest.mark.postgresql_pass
@pytest.mark.django_db(transaction=True)
def test_two_dispatchers_at_once_never_send_one_notification_twice(world) -> None:
    notes = [client_message(world, n=n) for n in range(40)]
    errors: list[BaseException] = []
    sent: dict[str, int] = {}
    start = threading.Barrier(2)

    def run(name: str) -> None:
        from django.db import connection as own

        adapters = transports(timeout=5.0)
        try:
            start.wait()
            for _ in range(10):
                report = dispatch_due(NOW, transports=adapters, limit=7, worker=name)
                sent[name] = sent.get(name, 0) + report.sent
        except BaseException as exc:
            errors.append(exc)
        finally:
            close_all(adapters)
            own.close()

    threads = [threading.Thread(target=run, args=(f"dispatcher-{i}",)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert sum(sent.values()) == 40 and all(sent.values()), sent  # both took a share
    keys = [r["idempotency"]["biz_opaque_callback_data"] for r in world.whatsapp.received()]
    assert sorted(keys) == sorted(n.idempotency_key for n in notes)  # each exactly once
    assert set(
        Notification.objects.filter(pk__in=[n.pk for n in notes]).values_list("status", flat=True)
    ) == {"sent"}
    assert DeliveryAttempt.objects.filter(notification__in=notes).count() == 40
