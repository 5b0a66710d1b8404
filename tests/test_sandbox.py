"""The sandbox answers like the official API: staging receipts, moving synthetic cases, traces."""

from __future__ import annotations

import http.client
import json
import socket
from datetime import UTC, datetime, timedelta

import pytest

from casewatch.core.clock import ManualClock
from casewatch.core.statuses import classify, default_catalog
from casewatch.uscis.sandbox.app import case_payload
from casewatch.uscis.sandbox.texts import texts
from casewatch.uscis.sandbox.world import (
    STAGING_RECEIPTS,
    STAGING_WITH_HISTORY,
    STAGING_WITHOUT_HISTORY,
    SyntheticWorld,
    TraceError,
    TraceWorld,
    path_book,
    synthetic_case,
)
from casewatch.uscis.source import Found, NotFound
from tests.conftest import client_for, start_sandbox

NOW = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)


def test_staging_lists_match_the_documented_ranges() -> None:
    assert len(STAGING_WITH_HISTORY) == 25
    assert len(STAGING_WITHOUT_HISTORY) == 25
    assert {"SRC9999102777", "SRC9999102787", "LIN9999106505"} <= STAGING_WITH_HISTORY
    assert {"EAC9999103406", "EAC9999103409", "EAC9999103426"} <= STAGING_WITHOUT_HISTORY


def test_the_documented_example_receipt_answers_as_documented(client) -> None:
    outcome = client.fetch("EAC9999103403")
    assert isinstance(outcome, Found)
    status = outcome.status
    assert (status.form_type, status.title_en, status.title_es) == (
        "I-130",
        "Case Was Approved",
        "Caso Fue Aprobado",
    )
    assert status.modified_at == datetime(2023, 9, 5, 14, 28, 46)
    assert "September 5, 2023" in status.description_en
    assert "Septiembre de 2023" in status.description_es
    assert status.history and status.history[0].date is not None


@pytest.mark.parametrize("receipt", sorted(STAGING_RECEIPTS))
def test_every_staging_receipt_answers_plausibly(client, receipt) -> None:
    outcome = client.fetch(receipt)
    assert isinstance(outcome, Found), outcome
    status = outcome.status
    assert status.form_type and status.description_en and status.description_es
    assert not classify(status.title_en).is_unknown
    assert bool(status.history) == (receipt in STAGING_WITH_HISTORY)


def test_staging_receipts_stand_still_as_time_passes(sandbox, client, clock) -> None:
    before = client.fetch("LIN9999106498")
    clock.advance(timedelta(days=400))
    assert client.fetch("LIN9999106498") == before


def test_a_synthetic_case_is_the_same_in_every_sandbox() -> None:
    assert synthetic_case("SRC2512345678") == synthetic_case("SRC2512345678")
    one = case_payload(synthetic_case("SRC2512345678"), NOW)
    two = case_payload(synthetic_case("SRC2512345678"), NOW)
    assert one == two


def test_a_synthetic_case_moves_along_its_path_as_sandbox_time_passes() -> None:
    case = synthetic_case("IOE0912345678")
    first, last = case.steps[0], case.steps[-1]
    assert [s.at for s in case.steps] == sorted(s.at for s in case.steps)
    early = case_payload(case, first.at)["case_status"]
    late = case_payload(case, last.at + timedelta(days=1))["case_status"]
    assert early["current_case_status_text_en"] == first.title
    assert late["current_case_status_text_en"] == last.title
    assert "submittedDate" not in early  # IOE receipts carry no dates


def test_a_recent_receipt_starts_at_its_decoded_fee_intake_day() -> None:
    case = synthetic_case("LIN2610012345")  # FY2026, workday 100
    assert case.steps[0].at.date().isoformat().startswith("2026-02")


def test_many_synthetic_cases_use_catalog_titles_with_spanish_and_descriptions() -> None:
    for serial in range(300):
        receipt = f"{['EAC', 'WAC', 'LIN', 'SRC', 'MSC', 'IOE', 'YSC'][serial % 7]}25{serial:08d}"
        if receipt[-4:] in ("0404", "0422", "0429", "0503"):
            continue
        case = synthetic_case(receipt)
        body = case_payload(case, NOW)["case_status"]
        status = default_catalog().by_title(body["current_case_status_text_en"])
        assert status is not None, body["current_case_status_text_en"]
        assert body["current_case_status_text_es"] == status.title_es
        assert receipt in body["current_case_status_desc_en"]
        assert "{" not in body["current_case_status_desc_en"] + body["current_case_status_desc_es"]


def test_every_path_title_is_in_the_catalog_and_has_texts() -> None:
    for path in path_book().paths:
        for step in path.steps:
            assert default_catalog().by_title(step.title) is not None, step.title
            assert texts().template_for(step.title) is not None, step.title


def test_an_rfe_description_gives_its_notice_date() -> None:
    case = next(
        synthetic_case(f"WAC2519{n:06d}")
        for n in range(5000)
        if any("Evidence Was Sent" in s.title for s in synthetic_case(f"WAC2519{n:06d}").steps)
    )
    rfe = next(s for s in case.steps if "Evidence Was Sent" in s.title)
    body = case_payload(case, rfe.at)["case_status"]
    assert body["current_case_status_text_en"] == rfe.title
    assert f"{rfe.at.astimezone().strftime('%Y')}" in body["current_case_status_desc_en"]


TRACE = """receipt_number,form_type,at,status_en,description_en
EAC2490012345,I-485,2025-11-02T14:05:00Z,Case Was Received
EAC2490012345,I-485,2026-01-20T09:41:00Z,Fingerprint Fee Was Received
EAC2490012345,I-485,2026-02-03T16:00:00-05:00,Request for Evidence Was Sent,We sent a request.
IOE0912345678,I-765,2026-01-05T12:00:00Z,Case Was Received
IOE0912345678,I-765,2026-02-10T12:00:00Z,Card Was Mailed To Me
"""


def test_a_trace_replays_each_receipt_at_the_sandbox_moment() -> None:
    world = TraceWorld.from_csv(TRACE)
    assert world.trace_window == (
        datetime(2026, 1, 20, 9, 41, tzinfo=UTC),
        datetime(2026, 2, 11, 12, 0, tzinfo=UTC),
    )
    clock = ManualClock(datetime(2026, 1, 1, tzinfo=UTC))
    _, server = start_sandbox(clock, world=world)  # type: ignore[arg-type]
    with server, client_for(server) as client:
        first = client.fetch("EAC2490012345")
        clock.set(datetime(2026, 1, 25, tzinfo=UTC))
        second = client.fetch("EAC2490012345")
        clock.set(datetime(2026, 3, 1, tzinfo=UTC))
        third = client.fetch("EAC2490012345")
        elis = client.fetch("IOE0912345678")
        unknown = client.fetch("LIN2410012345")
    assert isinstance(first, Found) and first.status.title_en == "Case Was Received"
    assert isinstance(second, Found) and second.status.title_en == "Fingerprint Fee Was Received"
    assert second.status.modified_at == datetime(2026, 1, 20, 4, 41)  # Eastern time
    assert isinstance(third, Found) and third.status.title_en == "Request for Evidence Was Sent"
    assert third.status.description_en == "We sent a request."
    assert len(third.status.history) == 3
    assert isinstance(elis, Found) and elis.status.modified_at is None
    assert isinstance(unknown, NotFound)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("receipt_number,at\nEAC2490012345,2025-01-01T00:00:00Z\n", "lacks"),
        (
            "receipt_number,form_type,at,status_en\nEAC24900,I-485,2025-01-01T00:00:00Z,X\n",
            "line 2",
        ),
        ("receipt_number,form_type,at,status_en\nEAC2490012345,I-485,yesterday,X\n", "ISO 8601"),
        (
            "receipt_number,form_type,at,status_en\nEAC2490012345,I-485,2025-01-01T00:00:00,X\n",
            "zone",
        ),
        (
            "receipt_number,form_type,at,status_en\n"
            "EAC2490012345,I-485,2025-02-01T00:00:00Z,X\nEAC2490012345,I-485,2025-01-01T00:00:00Z,Y\n",
            "time order",
        ),
    ],
)
def test_a_bad_trace_is_refused_naming_the_line(text, says) -> None:
    with pytest.raises(TraceError, match=says):
        TraceWorld.from_csv(text)


def test_synthetic_world_refuses_unknown_prefixes_and_documented_error_serials() -> None:
    world = SyntheticWorld()
    assert getattr(world.case("ABC2410012345", NOW), "status", None) == 422
    assert getattr(world.case("EAC2410010404", NOW), "status", None) == 404
    assert not hasattr(world.case("EAC2410012345", NOW), "status")


# --- serving: connections kept alive, as USCIS's gateway keeps them -------------------------


def _token(connection: http.client.HTTPConnection) -> str:
    body = "grant_type=client_credentials&client_id=a&client_secret=b"
    connection.request(
        "POST",
        "/oauth/accesstoken",
        body=body,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    answer = connection.getresponse()
    assert answer.status == 200 and answer.getheader("Connection") != "close"
    return str(json.loads(answer.read())["access_token"])


def test_the_sandbox_answers_many_requests_on_one_connection() -> None:
    _app, server = start_sandbox()
    with server:
        host, port = server.server.server_address[:2]
        connection = http.client.HTTPConnection(str(host), int(port), timeout=10)
        token = _token(connection)  # a request with a body: read in full, so the next one parses
        socket_used = connection.sock
        for receipt in ("EAC9999103403", "LIN9999106498", "EAC2490012345"):
            connection.request(
                "GET", f"/case-status/{receipt}", headers={"Authorization": f"Bearer {token}"}
            )
            answer = connection.getresponse()
            assert answer.status == 200 and answer.getheader("Connection") != "close"
            assert json.loads(answer.read())["case_status"]["receiptNumber"] == receipt
        assert connection.sock is socket_used, "the connection was closed and opened again"
        connection.close()


def test_the_official_client_reuses_its_connection() -> None:
    _app, server = start_sandbox()
    with server, client_for(server) as client:
        for receipt in ("EAC9999103403", "LIN9999106498", "EAC2490012345", "WAC2490012346"):
            assert isinstance(client.fetch(receipt), Found)
        assert len(server.server._connections) == 1  # the token request's, kept for the lookups


def test_a_client_that_asks_to_close_is_answered_then_disconnected() -> None:
    _app, server = start_sandbox()
    with server:
        host, port = server.server.server_address[:2]
        with socket.create_connection((str(host), int(port)), timeout=10) as raw:
            raw.sendall(b"GET /health HTTP/1.1\r\nHost: sandbox\r\nConnection: close\r\n\r\n")
            received = b""
            while chunk := raw.recv(65536):
                received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"Connection: close" in head
    assert json.loads(body)["service"] == "casewatch USCIS sandbox"


def test_stopping_the_sandbox_closes_the_connections_it_kept_alive() -> None:
    _app, server = start_sandbox()
    host, port = server.server.server_address[:2]
    connection = http.client.HTTPConnection(str(host), int(port), timeout=10)
    _token(connection)
    assert connection.sock is not None
    server.stop()
    assert connection.sock.recv(1) == b"", "the kept connection still answers after the stop"
    connection.close()
