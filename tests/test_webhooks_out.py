"""Outbound webhooks, end to end: which events a firm's endpoints get, how they are signed,
sent, retried and turned off, the admins' page, and a receiver written from docs/api.md.

Every delivery here goes through casewatch's own router and dispatcher to a real HTTP
server on this machine; nothing is mocked.
"""

from __future__ import annotations

import io
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.contrib.auth.models import User
from django.test import Client as Browser
from django.utils import timezone

from casewatch.cases.models import Deadline
from casewatch.monitor.models import OperationalEvent
from casewatch.notify.channels.webhook import WebhookTransport, verify
from casewatch.notify.dispatch import WEBHOOK_DISABLE_AFTER, DispatchReport, dispatch_due
from casewatch.notify.models import (
    DeliveryAttempt,
    MessageKind,
    Notification,
    NotificationStatus,
    WebhookEndpoint,
)
from casewatch.notify.route import route_pending
from casewatch.notify.webhook_events import event_types, webhook_events
from casewatch.uscis.sandbox.server import serve_in_thread
from casewatch.web.webhooks import url_problem
from tests.environment import sign_in
from tests.routing_world import NOW, Office, change, make_office
from tests.test_channels import Collector
from tests.test_i18n import _english_left

pytestmark = pytest.mark.django_db

SECRET = "whsec_test-secret-for-fake-firm"
API_DOC = Path(__file__).resolve().parent.parent / "docs" / "api.md"


@pytest.fixture
def office() -> Office:
    return make_office("alpha")


def endpoint(office: Office, url: str, *types: str) -> WebhookEndpoint:
    return WebhookEndpoint.objects.create(
        firm=office.firm, url=url, secret=SECRET, event_types=list(types)
    )


def dispatch(at: Any = NOW) -> DispatchReport:
    adapter = WebhookTransport(timeout=5.0)
    try:
        return dispatch_due(at, transports={"webhook": adapter})
    finally:
        adapter.close()


def hooks(kind: str) -> list[Notification]:
    return list(Notification.objects.filter(channel="webhook", kind=kind).order_by("pk"))


# --- 1. event types, and the router producing each --------------------------------------


def test_the_event_types_are_a_table_and_each_is_a_kind_of_message() -> None:
    assert event_types() == (
        "status_change",
        "deadline_created",
        "notification_delivered",
        "notification_failed",
        "uscis_outage",
        "uscis_recovered",
    )
    for event in webhook_events():
        assert event.type in MessageKind.values
        assert event.produced_by and event.when and event.label


def test_each_subscribed_endpoint_gets_each_kind_of_event_from_the_router(
    office: Office,
) -> None:
    every = endpoint(office, "https://hooks.example.test/all")
    deadlines = endpoint(office, "https://hooks.example.test/deadlines", "deadline_created")
    outcomes = endpoint(
        office,
        "https://hooks.example.test/outcomes",
        "notification_delivered",
        "notification_failed",
    )
    outages = endpoint(office, "https://hooks.example.test/outages", "uscis_outage")

    # A change that sets a deadline (recorded together, as the monitor does).
    rfe = change(office.case, "rfe_sent")
    due = NOW.date() + timedelta(days=87)
    deadline = Deadline.objects.create(
        firm=office.firm, case=office.case, event=rfe, kind="rfe_response", due_on=due, basis=due
    )
    # An outage, and two messages that reached the end of their road.
    OperationalEvent.objects.create(kind="uscis_unreadable", occurred_at=NOW, message="down")
    delivered = message(office, "whatsapp", NotificationStatus.DELIVERED, "delivered-1")
    failed = message(
        office,
        "sms",
        NotificationStatus.FAILED,
        "failed-1",
        last_error="21211: +15555550123 is not a valid number",
    )
    message(office, "in_app", NotificationStatus.DELIVERED, "in-app-1")  # no news
    report = route_pending(NOW)

    assert report.outcomes >= 2
    assert {n.endpoint_id for n in hooks("status_change")} == {every.pk}
    assert {n.endpoint_id for n in hooks("deadline_created")} == {every.pk, deadlines.pk}
    assert {n.endpoint_id for n in hooks("uscis_outage")} == {every.pk, outages.pk}
    assert {n.endpoint_id for n in hooks("notification_delivered")} == {every.pk, outcomes.pk}
    assert {n.endpoint_id for n in hooks("notification_failed")} == {every.pk, outcomes.pk}
    (told,) = [n for n in hooks("deadline_created") if n.endpoint_id == deadlines.pk]
    assert told.message["params"]["due_on"] == deadline.effective_due_on.isoformat()
    assert told.message["params"]["deadline_kind"] == "rfe_response"
    (bad,) = [n for n in hooks("notification_failed") if n.endpoint_id == outcomes.pk]
    assert bad.message["params"]["notification"] == failed.pk
    assert "5555550123" not in bad.message["params"]["error"]
    (good,) = [n for n in hooks("notification_delivered") if n.endpoint_id == outcomes.pk]
    assert good.message["params"]["notification"] == delivered.pk
    # Each outcome is told once; a webhook's own outcome is never an event.
    before = Notification.objects.count()
    assert route_pending(NOW).notifications == 0
    assert Notification.objects.count() == before


def message(
    office: Office, channel: str, status: str, key: str, *, last_error: str = ""
) -> Notification:
    done = {"delivered_at": NOW} if status == NotificationStatus.DELIVERED else {"failed_at": NOW}
    return Notification.objects.create(
        firm=office.firm,
        case=office.case,
        kind="status_change",
        recipient_kind="client",
        client=office.client,
        channel=channel,
        address="+15555550123",
        status=status,
        idempotency_key=key,
        created_at=NOW,
        last_error=last_error,
        **done,
    )


# --- 2 and 3. signed, retried, reset, turned off ----------------------------------------


def test_a_delivery_is_signed_over_timestamp_and_body_with_the_endpoints_secret(
    office: Office,
) -> None:
    app = Collector()
    with serve_in_thread(app) as server:
        hook = endpoint(office, f"{server.url}/casewatch")
        change(office.case, "rfe_sent")
        route_pending(NOW)
        assert dispatch().sent == 1
    (request,) = app.requests
    header = request["headers"]["X-Casewatch-Signature"]
    assert re.fullmatch(r"t=\d+,v1=[0-9a-f]{64}", header)
    stamp = int(header.split(",")[0][2:])
    assert verify(SECRET, header, request["body"], now=stamp)
    assert not verify(SECRET, header, request["body"] + b" ", now=stamp)
    assert not verify(SECRET, header, request["body"], now=stamp + 301)  # a replay
    assert b'"data":{' in request["body"] and b'"event":"status_change"' in request["body"]
    (note,) = hooks("status_change")
    assert note.endpoint_id == hook.pk and note.status == "sent"


def test_five_failed_deliveries_in_a_row_turn_the_endpoint_off_and_tell_the_admins(
    office: Office,
) -> None:
    with serve_in_thread(Collector(status=400)) as server:
        hook = endpoint(office, f"{server.url}/refuses", "status_change")
        for n in range(WEBHOOK_DISABLE_AFTER):
            change(office.case, "rfe_sent" if n % 2 else "approved", at=NOW - timedelta(hours=n))
            route_pending(NOW)
            dispatch()
            hook.refresh_from_db()
            assert hook.active is (n + 1 < WEBHOOK_DISABLE_AFTER)
    assert [n.status for n in hooks("status_change")] == ["failed"] * WEBHOOK_DISABLE_AFTER
    assert not hook.active and hook.disabled_at is not None
    assert hook.consecutive_failures == WEBHOOK_DISABLE_AFTER
    (alert,) = Notification.objects.filter(
        kind="delivery_problem", channel="in_app", message__params__error_code="endpoint_disabled"
    )
    assert alert.user_id == office.admin.user_id
    assert "5 deliveries in a row failed" in alert.message["params"]["error"]
    # Nothing more is routed to it.
    change(office.case, "denied")
    route_pending(NOW)
    assert not Notification.objects.filter(endpoint=hook, status="pending").exists()


def test_an_endpoint_failing_every_delivery_for_a_day_is_turned_off_too(office: Office) -> None:
    with serve_in_thread(Collector(status=404)) as server:
        hook = endpoint(office, f"{server.url}/gone-quiet", "status_change")
        change(office.case, "approved", at=NOW - timedelta(hours=2))
        route_pending(NOW)
        dispatch(NOW)
        change(office.case, "rfe_sent", at=NOW + timedelta(hours=24))
        route_pending(NOW + timedelta(hours=25))
        dispatch(NOW + timedelta(hours=25))
    hook.refresh_from_db()
    assert hook.consecutive_failures == 2 < WEBHOOK_DISABLE_AFTER
    assert not hook.active and hook.disabled_at is not None


def test_a_success_resets_the_count_and_retries_do_not_count(office: Office) -> None:
    app = Collector(status=400)
    with serve_in_thread(app) as server:
        hook = endpoint(office, f"{server.url}/flaky", "status_change")
        change(office.case, "approved")
        route_pending(NOW)
        dispatch()
        hook.refresh_from_db()
        assert hook.consecutive_failures == 1
        app.status = 503  # a retry: waits, does not count
        change(office.case, "rfe_sent")
        route_pending(NOW)
        dispatch()
        hook.refresh_from_db()
        assert hook.consecutive_failures == 1
        assert hooks("status_change")[-1].status == "pending"
        app.status = 200
        dispatch(NOW + timedelta(hours=1))
    assert hooks("status_change")[-1].status == "sent"
    hook.refresh_from_db()
    assert (hook.consecutive_failures, hook.active) == (0, True)


# --- 4. the admins' page ----------------------------------------------------------------


def admin_browser(office: Office, language: str = "en") -> Browser:
    browser = Browser(headers={"accept-language": language})
    sign_in(browser, User.objects.get(pk=office.admin.user_id))
    return browser


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://crm.example-law.test/hooks", True),
        ("http://127.0.0.1:8765/hooks", True),
        ("http://localhost/hooks", True),
        ("http://crm.example-law.test/hooks", False),
        ("ftp://crm.example-law.test/hooks", False),
    ],
)
def test_an_endpoint_must_be_https_except_on_this_machine(url: str, allowed: bool) -> None:
    assert (url_problem(url) is None) is allowed


def test_an_admin_adds_an_endpoint_sees_its_secret_once_tests_it_and_reads_the_log(
    office: Office,
) -> None:
    browser = admin_browser(office)
    assert b"/settings/messaging/webhooks/" in browser.get("/settings/messaging/").content
    refused = browser.post(
        "/settings/messaging/webhooks/",
        {"url": "http://crm.example-law.test/hooks", "event_types": ["status_change"]},
    )
    assert refused.status_code == 400 and not WebhookEndpoint.objects.exists()
    app = Collector()
    with serve_in_thread(app) as server:
        added = browser.post(
            "/settings/messaging/webhooks/",
            {"url": f"{server.url}/hooks", "event_types": ["status_change", "uscis_outage"]},
            follow=True,
        )
        hook = WebhookEndpoint.objects.get(firm=office.firm)
        assert hook.event_types == ["status_change", "uscis_outage"]
        assert hook.secret.startswith("whsec_")
        assert hook.secret in added.content.decode()
        assert added.redirect_chain == [] and added["Cache-Control"] == "no-store"
        assert hook.secret not in str(dict(browser.session))  # never kept in the session
        page = f"/settings/messaging/webhooks/{hook.pk}/"
        assert hook.secret not in browser.get(page).content.decode()  # once only

        assert browser.post(f"{page}test/").status_code == 302
        assert dispatch(timezone.now()).sent == 1
        (request,) = app.requests
        assert request["headers"]["X-Casewatch-Event"] == "webhook_test"
        header = request["headers"]["X-Casewatch-Signature"]
        assert verify(hook.secret, header, request["body"], now=int(header[2:12]))
    log = browser.get(page).content.decode()
    assert "Test event" in log and ">200<" in log and " ms" in log
    (attempt,) = DeliveryAttempt.objects.filter(notification__endpoint=hook)
    assert attempt.http_status == 200

    turned_off = browser.post(page, {"event_types": ["deadline_created"]})
    assert turned_off.status_code == 302
    hook.refresh_from_db()
    assert (hook.active, hook.event_types) == (False, ["deadline_created"])
    assert hook.disabled_at is not None
    browser.post(page, {"event_types": ["deadline_created"], "active": "on"})
    hook.refresh_from_db()
    assert hook.active and hook.disabled_at is None

    assert browser.post(f"{page}delete/").status_code == 302
    assert not WebhookEndpoint.objects.filter(pk=hook.pk).exists()


def test_reloading_the_page_that_showed_the_secret_adds_no_second_endpoint(
    office: Office,
) -> None:
    browser = admin_browser(office)
    form = browser.get("/settings/messaging/webhooks/").content.decode()
    (once,) = re.findall(r'name="once" value="([^"]+)"', form)
    sent = {"url": "https://crm.example-law.test/hooks", "event_types": ["status_change"]}
    first = browser.post("/settings/messaging/webhooks/", {**sent, "once": once})
    secret = WebhookEndpoint.objects.get(firm=office.firm).secret
    assert secret in first.content.decode()

    reloaded = browser.post("/settings/messaging/webhooks/", {**sent, "once": once}, follow=True)

    assert WebhookEndpoint.objects.filter(firm=office.firm).count() == 1
    page = reloaded.content.decode()
    assert "This form was already sent" in page and secret not in page


def test_the_webhooks_pages_read_in_spanish(office: Office) -> None:
    hook = endpoint(office, "https://hooks.example.test/es")
    browser = admin_browser(office, "es-MX,es;q=0.9")
    for url in (
        "/settings/messaging/webhooks/",
        f"/settings/messaging/webhooks/{hook.pk}/",
        f"/settings/messaging/webhooks/{hook.pk}/delete/",
    ):
        answer = browser.get(url)
        assert answer.status_code == 200, url
        assert _english_left(answer.content.decode()) == [], url


# --- 6. a receiver written only from docs/api.md ----------------------------------------


def doc_receiver() -> dict[str, Any]:
    """The Python example of docs/api.md's Webhooks section, run as it is written."""
    section = API_DOC.read_text(encoding="utf-8").split("## Webhooks", 1)[1]
    (code,) = re.findall(r"```python\n(.*?)```", section.split("\n## ", 1)[0], re.S)
    namespace: dict[str, Any] = {"__name__": "receiver"}
    exec(compile(code, str(API_DOC), "exec"), namespace)  # our own document
    return namespace


@dataclass
class Recorder:
    """Wraps the doc's WSGI app to keep each request as it came, for replaying it."""

    app: Any
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length)
        headers = {
            key[5:].replace("_", "-").title(): value
            for key, value in environ.items()
            if key.startswith("HTTP_")
        }
        with self.lock:
            self.requests.append((headers, body))
        environ["wsgi.input"] = io.BytesIO(body)
        return self.app(environ, start_response)


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[dict[str, Any], Recorder]]:
    monkeypatch.setenv("CASEWATCH_WEBHOOK_SECRET", SECRET)
    namespace = doc_receiver()
    handled: list[dict[str, Any]] = []
    namespace["handle"] = handled.append  # where the firm's own work would go
    namespace["handled"] = handled
    yield namespace, Recorder(namespace["app"])


def test_a_receiver_written_from_the_docs_verifies_real_deliveries_and_refuses_tampering(
    office: Office, receiver: tuple[dict[str, Any], Recorder]
) -> None:
    namespace, recorder = receiver
    with serve_in_thread(recorder) as server:
        hook = endpoint(office, f"{server.url}/casewatch")
        change(office.case, "rfe_sent")
        OperationalEvent.objects.create(kind="uscis_unreadable", occurred_at=NOW, message="down")
        route_pending(NOW)
        assert dispatch(timezone.now()).sent == 2
        statuses = set(
            DeliveryAttempt.objects.filter(notification__endpoint=hook).values_list(
                "http_status", flat=True
            )
        )
        assert statuses == {204}
        assert {e["event"] for e in namespace["handled"]} == {"status_change", "uscis_outage"}

        headers, body = recorder.requests[0]
        forward = {
            name: headers[name] for name in ("X-Casewatch-Signature", "X-Casewatch-Delivery")
        }
        tampered = body.replace(b'"rfe_sent"', b'"approved"').replace(
            b'"uscis_outage"', b'"uscis_recovered"'
        )
        assert tampered != body
        answer = httpx.post(f"{server.url}/casewatch", content=tampered, headers=forward)
        assert answer.status_code == 401
        # A replayed delivery is verified but handled once.
        again = httpx.post(f"{server.url}/casewatch", content=body, headers=forward)
        assert again.status_code == 204
    assert len(namespace["handled"]) == 2
    assert namespace["verify"](SECRET, forward["X-Casewatch-Signature"], body)
    assert not namespace["verify"](SECRET, forward["X-Casewatch-Signature"], tampered)
