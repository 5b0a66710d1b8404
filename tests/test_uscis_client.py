"""The official client against the sandbox over real HTTP, through every fault it can inject.

Whatever goes wrong, the client returns a typed fault and never a status it did not read.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from casewatch.core.clock import ManualClock
from casewatch.monitor.pacing import Pacer
from casewatch.uscis.client import (
    OfficialClient,
    error_message,
    parse_case_status,
    retry_after_seconds,
)
from casewatch.uscis.sandbox.app import Limits, SandboxApp
from casewatch.uscis.sandbox.faults import SHAPES, FaultPlan, parse_faults
from casewatch.uscis.sandbox.server import RunningServer, serve_in_thread
from casewatch.uscis.sandbox.world import SyntheticWorld
from casewatch.uscis.source import (
    AuthFailed,
    Found,
    Invalid,
    Malformed,
    NotFound,
    NotSent,
    RateLimited,
    Unavailable,
)
from tests.conftest import client_for, start_sandbox

RECEIPT = "LIN2410012345"


def test_a_receipt_is_read_with_one_token(client) -> None:
    first = client.fetch("EAC9999103403")
    second = client.fetch(RECEIPT)
    assert isinstance(first, Found) and isinstance(second, Found)
    assert first.status.title_en == "Case Was Approved"
    assert first.status.title_es == "Caso Fue Aprobado"
    assert first.status.form_type == "I-130"
    assert first.status.source == "sandbox"
    assert client.tokens_fetched == 1


def test_token_is_fetched_again_a_minute_before_it_expires(clock) -> None:
    app = SandboxApp(SyntheticWorld(), clock, token_lifetime=61)
    with serve_in_thread(app) as server, client_for(server) as client:
        assert isinstance(client.fetch(RECEIPT), Found)
        assert isinstance(client.fetch(RECEIPT), Found)
        assert client.tokens_fetched == 1  # 61 s lifetime: still more than a minute left
        time.sleep(1.1)
        assert isinstance(client.fetch(RECEIPT), Found)
        assert client.tokens_fetched == 2


def test_an_expired_token_is_replaced_once_and_the_call_retried(sandbox, client) -> None:
    app, _ = sandbox
    assert isinstance(client.fetch(RECEIPT), Found)
    app.revoke_tokens()
    assert isinstance(client.fetch(RECEIPT), Found)
    assert client.tokens_fetched == 2


def test_a_token_rejected_twice_is_auth_failed() -> None:
    _app, server = start_sandbox(faults=parse_faults("token_expiry=1"))
    with server, client_for(server) as client:
        outcome = client.fetch(RECEIPT)
    assert isinstance(outcome, AuthFailed)
    assert outcome.message == "Invalid Access Token"
    assert client.tokens_fetched == 2


def test_wrong_credentials_are_auth_failed() -> None:
    app = SandboxApp(
        SyntheticWorld(),
        ManualClock(datetime(2026, 3, 2, tzinfo=UTC)),
        client_id="right",
        client_secret="right",
    )
    with serve_in_thread(app) as server, client_for(server) as client:
        outcome = client.fetch(RECEIPT)
    assert isinstance(outcome, AuthFailed)


@pytest.mark.parametrize(
    ("receipt", "kind"),
    [
        ("LIN2410010404", NotFound),
        ("LIN2410010422", Invalid),
        ("ABC2410012345", Invalid),  # unknown prefix: 422, as USCIS answers
        ("LIN2410010429", RateLimited),
        ("LIN2410010503", Unavailable),
    ],
)
def test_documented_errors_become_typed_outcomes(client, receipt, kind) -> None:
    outcome = client.fetch(receipt)
    assert isinstance(outcome, kind)
    assert outcome.message


def test_not_found_carries_uscis_message_to_the_user(client) -> None:
    outcome = client.fetch("LIN2410010404")
    assert isinstance(outcome, NotFound)
    assert "does not recognize the receipt number" in outcome.message


def test_retry_after_is_read_from_rate_limit_and_outage_answers(client) -> None:
    limited = client.fetch("LIN2410010429")
    down = client.fetch("LIN2410010503")
    assert isinstance(limited, RateLimited) and limited.retry_after == 30
    assert isinstance(down, Unavailable) and down.retry_after == 30


@pytest.mark.parametrize(
    ("spec", "kinds"),
    [
        ("unavailable=1", (Unavailable,)),
        ("outage=1", (Unavailable,)),
        ("storm=1", (RateLimited,)),
        ("errors=1", (Unavailable,)),
        ("malformed=1", (Malformed,)),
        ("html=1", (Malformed, Unavailable)),
        ("token_expiry=1", (AuthFailed,)),
    ],
)
def test_every_injected_fault_is_a_fault_never_a_status(spec, kinds) -> None:
    app, server = start_sandbox(faults=parse_faults(spec + ",shapes=1,seed=3"))
    with server, client_for(server) as client:
        outcomes = [client.fetch(RECEIPT) for _ in range(12)]
    assert all(isinstance(o, kinds) for o in outcomes), outcomes
    assert app.faults.injected


def test_a_slow_answer_past_the_timeout_is_unavailable() -> None:
    _app, server = start_sandbox(faults=parse_faults("slow=1,delay=1.5"))
    with server, client_for(server, timeout=0.3) as client:
        outcome = client.fetch(RECEIPT)
    assert isinstance(outcome, Unavailable)
    assert "in time" in outcome.message


def test_an_unreachable_api_is_unavailable() -> None:
    with client_for(
        RunningServer("http://127.0.0.1:9", None, None),  # type: ignore[arg-type]
        timeout=1.0,
    ) as client:
        outcome = client.fetch(RECEIPT)
    assert isinstance(outcome, Unavailable)


def test_under_mixed_faults_every_status_read_is_the_true_one() -> None:
    clock = ManualClock(datetime(2026, 3, 2, 15, 0, tzinfo=UTC))
    _, clean_server = start_sandbox(clock)
    with clean_server, client_for(clean_server) as clean:
        truth = clean.fetch(RECEIPT)
    assert isinstance(truth, Found)
    spec = "unavailable=0.1,storm=0.05,errors=0.1,malformed=0.1,html=0.1,token_expiry=0.1,shapes=1"
    app, server = start_sandbox(clock, faults=parse_faults(spec + ",seed=11"))
    found = faults = 0
    with server, client_for(server) as client:
        for _ in range(150):
            outcome = client.fetch(RECEIPT)
            if isinstance(outcome, Found):
                found += 1
                assert outcome.status == truth.status
            else:
                faults += 1
    assert found and faults
    assert sum(app.faults.injected.values()) >= faults


@pytest.mark.parametrize("shape", range(len(SHAPES)))
def test_every_error_body_shape_yields_its_message(shape) -> None:
    body = SHAPES[shape](404, "Case Status Online does not recognize it")
    assert error_message(body) == "Case Status Online does not recognize it"


@pytest.mark.parametrize(
    "body",
    [
        "",
        "<html><body>Bad Gateway</body></html>",
        "null",
        "[]",
        '{"case_status": "x"}',
        '{"case_status": {"receiptNumber": "LIN2410012345"}}',
        '{"case_status": {',
    ],
)
def test_unreadable_200_answers_are_malformed(body) -> None:
    assert isinstance(parse_case_status(body, RECEIPT, "uscis"), Malformed)


def test_an_answer_about_another_receipt_is_malformed() -> None:
    body = json.dumps(
        {
            "case_status": {
                "receiptNumber": "EAC9999103403",
                "current_case_status_text_en": "Case Was Approved",
            }
        }
    )
    assert isinstance(parse_case_status(body, RECEIPT, "uscis"), Malformed)


def test_history_may_be_a_list_empty_absent_or_null() -> None:
    base = {"receiptNumber": RECEIPT, "current_case_status_text_en": "Case Was Received"}
    for history in (
        [{"date": "2024-02-01", "completed_text_en": "We received your form."}],
        [],
        None,
    ):
        body = json.dumps({"case_status": {**base, "hist_case_status": history}})
        outcome = parse_case_status(body, RECEIPT, "uscis")
        assert isinstance(outcome, Found)
        assert len(outcome.status.history) == (1 if history else 0)
    outcome = parse_case_status(json.dumps({"case_status": base}), RECEIPT, "uscis")
    assert isinstance(outcome, Found) and outcome.status.history == ()


def test_retry_after_accepts_seconds_and_http_dates() -> None:
    assert retry_after_seconds("120") == 120
    assert retry_after_seconds(None) is None
    assert retry_after_seconds("soon") is None
    later = datetime.now(UTC) + timedelta(seconds=90)
    seconds = retry_after_seconds(later.strftime("%a, %d %b %Y %H:%M:%S GMT"))
    assert seconds is not None and 80 <= seconds <= 91


def test_spike_arrest_refuses_bursts_and_paced_requests_pass() -> None:
    _app, server = start_sandbox(limits=Limits(rate=20))
    with server, client_for(server) as client:
        client.fetch(RECEIPT)
        burst = client.fetch(RECEIPT)
        assert isinstance(burst, RateLimited)
        assert burst.message == "Spike Arrest Violation"
        time.sleep(0.1)
        pacer = Pacer(20)
        outcomes = []
        for _ in range(10):
            pacer.wait()
            outcomes.append(client.fetch(RECEIPT))
    assert all(isinstance(o, Found) for o in outcomes)


def test_the_daily_quota_resets_at_midnight_utc(clock) -> None:
    _app, server = start_sandbox(clock, limits=Limits(daily_quota=3))
    with server, client_for(server) as client:
        assert all(isinstance(client.fetch(RECEIPT), Found) for _ in range(3))
        refused = client.fetch(RECEIPT)
        assert isinstance(refused, RateLimited)
        # 15:00 UTC: nine hours to the reset.
        assert refused.retry_after == 9 * 3600
        clock.advance(timedelta(hours=9, seconds=1))
        assert isinstance(client.fetch(RECEIPT), Found)


def test_office_hours_close_the_sandbox_at_night_and_weekends() -> None:
    clock = ManualClock(datetime(2026, 3, 7, 15, 0, tzinfo=UTC))  # a Saturday
    _app, server = start_sandbox(clock, limits=Limits(office_hours=True))
    with server, client_for(server) as client:
        closed = client.fetch(RECEIPT)
        assert isinstance(closed, Unavailable) and closed.retry_after
        clock.set(datetime(2026, 3, 9, 15, 0, tzinfo=UTC))  # Monday 10:00 Eastern
        assert isinstance(client.fetch(RECEIPT), Found)
        clock.set(datetime(2026, 3, 10, 2, 0, tzinfo=UTC))  # Monday 21:00 Eastern
        assert isinstance(client.fetch(RECEIPT), Unavailable)


def test_the_token_endpoint_speaks_apigee(sandbox) -> None:
    _, server = sandbox
    response = httpx.post(
        f"{server.url}/oauth/accesstoken",
        data={"grant_type": "client_credentials", "client_id": "a", "client_secret": "b"},
    )
    body = response.json()
    assert response.status_code == 200
    assert body["token_type"] == "Bearer" and body["status"] == "approved"
    assert isinstance(body["expires_in"], str) and body["expires_in"] == "1799"


def test_fault_specs_are_checked() -> None:
    plan = parse_faults("503=0.5,timeout=0.1,delay=3,shapes=1,seed=4")
    assert plan.delay == 3 and plan.shapes and plan.seed == 4
    with pytest.raises(ValueError, match="unknown fault"):
        parse_faults("meteor=1")
    with pytest.raises(ValueError, match="between 0 and 1"):
        parse_faults("unavailable=2")
    assert not FaultPlan().active


# --- pacing: every request the client sends waits for its slot --------------------------------


class Slots:
    """A caller's limiter as the client sees it: each call is one slot, granted or not."""

    def __init__(self, client: OfficialClient, grants: int = 1_000) -> None:
        self.client = client
        self.grants = grants
        self.taken = 0
        self.tokens_when_taken: list[int] = []

    def __call__(self) -> bool:
        self.tokens_when_taken.append(self.client.tokens_fetched)
        if self.taken >= self.grants:
            return False
        self.taken += 1
        return True


def test_a_lookup_waits_for_its_slot_once_it_has_its_token(sandbox, client) -> None:
    app, _ = sandbox
    slots = Slots(client)
    assert isinstance(client.fetch(RECEIPT, pace=slots), Found)
    # The token was fetched before the slot was taken: it cannot make the lookup late.
    assert slots.taken == 1 and slots.tokens_when_taken == [1]
    assert app.counters.requests == 1


def test_the_retry_after_a_refused_token_takes_a_slot_of_its_own(sandbox, client) -> None:
    app, _ = sandbox
    assert isinstance(client.fetch(RECEIPT), Found)
    app.revoke_tokens()  # USCIS expired the token: the lookup gets a 401
    slots = Slots(client)
    assert isinstance(client.fetch(RECEIPT, pace=slots), Found)
    assert slots.taken == 2, "the retry went out without a slot"
    assert slots.tokens_when_taken == [1, 2]  # the retry's slot, after the fresh token
    assert app.counters.requests == 3


def test_a_retry_refused_its_slot_is_not_sent_and_the_401_stands(sandbox, client) -> None:
    app, _ = sandbox
    assert isinstance(client.fetch(RECEIPT), Found)
    app.revoke_tokens()
    outcome = client.fetch(RECEIPT, pace=Slots(client, grants=1))
    assert isinstance(outcome, AuthFailed)
    assert app.counters.requests == 2, "the retry was sent without a slot"


def test_a_lookup_refused_its_slot_asks_nothing(sandbox, client) -> None:
    app, _ = sandbox
    with pytest.raises(NotSent):
        client.fetch(RECEIPT, pace=Slots(client, grants=0))
    assert app.counters.requests == 0


def test_lookups_go_through_a_proxy_named_in_the_environment(
    sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, server = sandbox
    with client_for(server) as direct:
        assert isinstance(direct.fetch(RECEIPT), Found)
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    with client_for(server, timeout=2.0) as proxied:
        assert isinstance(proxied.fetch(RECEIPT), Unavailable)


@pytest.mark.parametrize(
    ("modified", "expected"),
    [
        ("09-05-2023 18:28:46", datetime(2023, 9, 5, 18, 28, 46)),
        (" 09-05-2023 18:28:46 ", datetime(2023, 9, 5, 18, 28, 46)),
        ("9-5-2023 18:28:46", datetime(2023, 9, 5, 18, 28, 46)),
        ("09-05-2023", datetime(2023, 9, 5)),
        ("2023-09-05T18:28:46", datetime(2023, 9, 5, 18, 28, 46)),
        ("02-30-2023 10:00:00", None),
        ("13-01-2023 10:00:00", None),
        ("09-05-2023 24:00:00", None),
        ("", None),
    ],
)
def test_modified_dates_are_read_in_every_shape_uscis_uses(modified, expected) -> None:
    body = json.dumps(
        {
            "case_status": {
                "receiptNumber": RECEIPT,
                "current_case_status_text_en": "Case Was Approved",
                "modifiedDate": modified,
                "hist_case_status": [{"date": modified[:10], "completed_text_en": "x"}],
            }
        }
    )
    outcome = parse_case_status(body, RECEIPT, "sandbox")
    assert isinstance(outcome, Found)
    assert outcome.status.modified_at == expected
