"""The REST API, spoken to as an integration would: bearer tokens over real HTTP requests
through Django's whole stack, answers read as JSON or problem details (RFC 9457)."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import Client as Browser
from django.utils import timezone

from casewatch.accounts.api_tokens import create_token, revoke_token, secret_hash
from casewatch.accounts.models import ApiToken, Firm, Role
from casewatch.api.models import IdempotentResponse
from casewatch.audit.models import AuditEntry
from casewatch.cases.models import Case, Client, Deadline
from tests.routing_world import change, member

pytestmark = pytest.mark.django_db

API = "/api/v1"
PROBLEM = "application/problem+json"
CLIENT = {"name": "Fakey McTestface", "email": "fakey@example.test", "phone": "+15550100111"}


class Integration:
    """A firm's other system: one token, speaking JSON."""

    def __init__(self, secret: str) -> None:
        self.browser = Browser()
        self.headers = {"Authorization": f"Bearer {secret}"}

    def get(self, path: str, **params: Any) -> Any:
        url = path if path.startswith("http") else API + path
        return self.browser.get(url, params, headers=self.headers)

    def post(self, path: str, body: Any = None, **headers: str) -> Any:
        return self.browser.post(
            API + path,
            json.dumps(body if body is not None else {}),
            content_type="application/json",
            headers={**self.headers, **headers},
        )

    def patch(self, path: str, body: Any) -> Any:
        return self.browser.patch(
            API + path, json.dumps(body), content_type="application/json", headers=self.headers
        )


def firm_with_cases(slug: str, receipts: list[str]) -> Firm:
    firm = Firm.objects.create(name=slug.title(), slug=slug)
    client = Client.objects.create(firm=firm, reference=f"{slug}-1", personal=CLIENT)
    for receipt in receipts:
        Case.objects.create(firm=firm, receipt_number=receipt, form_type="I-485", client=client)
    return firm


@pytest.fixture
def firm() -> Firm:
    return firm_with_cases("alpha", ["EAC2690000001", "EAC2690000002", "LIN2690000003"])


@pytest.fixture
def other_firm() -> Firm:
    return firm_with_cases("beta", ["WAC2690000009"])


@pytest.fixture
def reader(firm: Firm) -> Integration:
    return Integration(create_token(firm, "read", actor="test").secret)


@pytest.fixture
def writer(firm: Firm) -> Integration:
    return Integration(create_token(firm, "write", actor="test").secret)


def problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == PROBLEM
    body: dict[str, Any] = json.loads(response.content)
    assert {"type", "title", "status", "detail"} <= set(body)
    assert body["status"] == status
    return body


def receipts(response: Any) -> list[str]:
    assert response.status_code == 200, response.content
    return [case["receipt_number"] for case in response.json()["items"]]


# --- Tokens -----------------------------------------------------------------------------


def test_a_token_is_kept_only_as_the_hash_of_its_secret(firm: Firm) -> None:
    issued = create_token(firm, "read", name="Docketwise", actor="user:1")
    assert issued.secret.startswith("cw_")
    stored = ApiToken.objects.get(pk=issued.token.pk)
    assert stored.secret_hash == secret_hash(issued.secret)
    assert issued.secret not in json.dumps(list(ApiToken.objects.values()), default=str)
    entry = AuditEntry.objects.get(action="api_token.created")
    assert entry.object_id == str(stored.pk) and entry.actor == "user:1"


def test_no_token_an_unknown_one_or_a_revoked_one_is_401(firm: Firm) -> None:
    issued = create_token(firm, "write", actor="test")
    assert problem(Browser().get(API + "/cases"), 401)["type"].endswith("/unauthorized")
    problem(Integration("cw_" + "x" * 43).get("/cases"), 401)
    assert Integration(issued.secret).get("/cases").status_code == 200
    revoke_token(issued.token, actor="test")
    response = Integration(issued.secret).get("/cases")
    problem(response, 401)
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_every_use_is_audited_at_most_once_a_minute_and_shown_as_last_use(
    firm: Firm, reader: Integration
) -> None:
    for _ in range(3):
        assert reader.get("/cases").status_code == 200
    token = ApiToken.objects.get(firm=firm, scope="read")
    used = AuditEntry.objects.filter(action="api_token.used", object_id=str(token.pk))
    assert used.count() == 1
    assert used.get().actor == f"token:{token.pk}"
    assert token.last_used_at is not None
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=timezone.now() - timedelta(minutes=2))
    reader.get("/deadlines")
    assert used.count() == 2


# --- Scopes and firms ---------------------------------------------------------------------


def test_a_read_token_cannot_write(firm: Firm, reader: Integration) -> None:
    case = Case.objects.filter(firm=firm).first()
    assert case is not None
    assert problem(reader.post("/cases", {"receipt_number": "EAC2690000077"}), 403)[
        "type"
    ].endswith("/forbidden")
    problem(reader.patch(f"/cases/{case.pk}", {"form_type": "I-130"}), 403)
    problem(reader.post(f"/cases/{case.pk}/archive"), 403)
    assert not Case.objects.filter(receipt_number="EAC2690000077").exists()
    case.refresh_from_db()
    assert case.form_type == "I-485" and case.archived_at is None


def test_a_token_sees_nothing_of_another_firm(
    firm: Firm, other_firm: Firm, writer: Integration
) -> None:
    theirs = Case.objects.get(firm=other_firm)
    change(theirs, "rfe_sent")
    assert "WAC2690000009" not in receipts(writer.get("/cases", state="all"))
    assert receipts(writer.get("/cases", q="WAC2690000009")) == []
    for answer in (
        writer.get(f"/cases/{theirs.pk}"),
        writer.get(f"/cases/{theirs.pk}/events"),
        writer.patch(f"/cases/{theirs.pk}", {"form_type": "I-130"}),
        writer.post(f"/cases/{theirs.pk}/archive"),
    ):
        assert problem(answer, 404) == problem(writer.get("/cases/999999999"), 404)
    assert writer.get("/events").json()["items"] == []
    theirs.refresh_from_db()
    assert theirs.archived_at is None and theirs.form_type == "I-485"


def test_clients_personal_details_go_only_to_write_tokens(
    reader: Integration, writer: Integration
) -> None:
    seen_by_reader = json.dumps(reader.get("/cases").json())
    for value in CLIENT.values():
        assert value not in seen_by_reader
    client = writer.get("/cases").json()["items"][0]["client"]
    assert (client["name"], client["email"], client["phone"]) == tuple(CLIENT.values())


# --- Lists: the web app's filters, a page at a time -------------------------------------


def test_the_list_takes_the_web_apps_filters(
    firm: Firm, reader: Integration, writer: Integration
) -> None:
    rfe = Case.objects.get(receipt_number="EAC2690000002")
    change(rfe, "rfe_sent")
    Case.objects.filter(pk=rfe.pk).update(category="evidence_requested", urgency="action")
    Case.objects.filter(receipt_number="LIN2690000003").update(archived_at=timezone.now())
    assert receipts(reader.get("/cases", category="evidence_requested")) == ["EAC2690000002"]
    assert receipts(reader.get("/cases", urgency="action")) == ["EAC2690000002"]
    assert receipts(reader.get("/cases", q="eac 269")) == ["EAC2690000001", "EAC2690000002"]
    assert receipts(reader.get("/cases", state="archived")) == ["LIN2690000003"]
    assert len(receipts(reader.get("/cases", state="all"))) == 3
    assert receipts(reader.get("/cases", form="i485", sort="receipt")) == [
        "EAC2690000001",
        "EAC2690000002",
    ]
    # A name search is for write tokens: a read token could learn who the clients are.
    problem(reader.get("/cases", q="Nobody Atall"), 403)
    assert receipts(writer.get("/cases", q="Nobody Atall")) == []
    assert sorted(receipts(writer.get("/cases", q="mctestface"))) == [
        "EAC2690000001",
        "EAC2690000002",
    ]


def test_an_unknown_filter_value_is_a_422_naming_the_field(reader: Integration) -> None:
    body = problem(reader.get("/cases", category="sunny", sort="sideways"), 422)
    assert {error["field"] for error in body["errors"]} == {"category", "sort"}
    body = problem(reader.get("/cases", limit="many"), 422)
    assert body["errors"][0]["field"] == "limit"


def test_pages_follow_one_another_by_cursor_without_repeats(
    firm: Firm, reader: Integration
) -> None:
    for number in range(4, 9):
        Case.objects.create(firm=firm, receipt_number=f"EAC26900000{number:02d}")
    seen: list[str] = []
    page = reader.get("/cases", limit=3, sort="receipt")
    while True:
        seen += receipts(page)
        following = page.json()["next"]
        if following is None:
            break
        assert following.startswith("http://testserver/api/v1/cases?")
        page = reader.get(following)
    assert seen == sorted(str(c.receipt_number) for c in Case.objects.filter(firm=firm))


def test_a_forged_cursor_or_one_of_other_filters_is_a_400(reader: Integration) -> None:
    problem(reader.get("/cases", cursor="not-a-cursor"), 400)
    following = reader.get("/cases", limit=1).json()["next"]
    assert following is not None
    problem(reader.get(following + "&category=approved"), 400)


def test_events_and_deadlines_of_the_firm(firm: Firm, reader: Integration) -> None:
    case = Case.objects.get(receipt_number="EAC2690000001")
    earlier = change(case, "case_received", at=timezone.now() - timedelta(days=2))
    today = change(case, "rfe_sent", at=timezone.now() - timedelta(minutes=5))
    due = timezone.localdate() + timedelta(days=60)
    Deadline.objects.create(
        firm=firm, case=case, event=today, kind="rfe_response", due_on=due, basis=due
    )
    events = reader.get(f"/cases/{case.pk}/events").json()["items"]
    assert [e["id"] for e in events] == [earlier.pk, today.pk]
    since = (timezone.now() - timedelta(hours=1)).isoformat()
    assert [e["status"] for e in reader.get("/events", since=since).json()["items"]] == ["rfe_sent"]
    (deadline,) = reader.get("/deadlines").json()["items"]
    assert deadline["kind"] == "rfe_response" and deadline["receipt_number"] == "EAC2690000001"
    assert deadline["effective_due_on"] == due.isoformat()


# --- Writing ----------------------------------------------------------------------------


def test_a_case_is_added_by_the_web_forms_rules_and_audited(
    firm: Firm, writer: Integration
) -> None:
    attorney = member(firm, "ana", Role.ATTORNEY).user
    response = writer.post(
        "/cases",
        {
            "receipt_number": "eac 269 000 0055",
            "form_type": "i130",
            "client_name": "Testa Fakeperson",
            "client_email": "testa@example.com",
            "attorney_id": attorney.pk,
            "tags": ["priority"],
        },
    )
    assert response.status_code == 201, response.content
    added = response.json()
    assert added["receipt_number"] == "EAC2690000055" and added["form_type"] == "I-130"
    assert added["attorney_id"] == attorney.pk and added["tags"] == ["priority"]
    assert added["client"]["name"] == "Testa Fakeperson"
    token = ApiToken.objects.get(firm=firm, scope="write")
    entry = AuditEntry.objects.get(action="case.created", object_id=str(added["id"]))
    assert entry.actor == f"token:{token.pk}"


def test_a_bad_case_is_refused_field_by_field(
    firm: Firm, other_firm: Firm, writer: Integration
) -> None:
    outsider = member(other_firm, "olga", Role.ATTORNEY).user
    body = problem(
        writer.post(
            "/cases",
            {
                "receipt_number": "EAC123",
                "client_email": "not-an-address",
                "attorney_id": outsider.pk,
            },
        ),
        422,
    )
    assert {e["field"] for e in body["errors"]} == {"receipt_number", "client_email", "attorney_id"}
    assert problem(writer.post("/cases", {}), 422)["errors"][0]["field"] == "receipt_number"
    assert problem(writer.post("/cases", {"tags": "not a list"}), 422)["errors"]
    assert problem(writer.post("/cases", {"receipt_number": "EAC2690000001"}), 409)
    assert Case.objects.filter(firm=firm).count() == 3


def test_a_pending_case_is_added_by_client_id_alone(writer: Integration) -> None:
    response = writer.post("/cases", {"client_id": "M-77"})
    assert response.status_code == 201, response.content
    assert response.json()["receipt_number"] is None


def test_a_case_is_changed_and_archived(firm: Firm, writer: Integration) -> None:
    case = Case.objects.get(receipt_number="EAC2690000001")
    changed = writer.patch(f"/cases/{case.pk}", {"form_type": "n400", "tags": ["vip", "VIP"]})
    assert changed.status_code == 200, changed.content
    assert (changed.json()["form_type"], changed.json()["tags"]) == ("N-400", ["vip"])
    problem(writer.patch(f"/cases/{case.pk}", {"form_type": "Z-9"}), 422)
    problem(writer.patch(f"/cases/{case.pk}", {"receipt_number": "EAC2690000002"}), 409)
    archived = writer.post(f"/cases/{case.pk}/archive")
    assert archived.status_code == 200 and archived.json()["archived_at"] is not None
    assert writer.post(f"/cases/{case.pk}/archive").status_code == 200
    actions = AuditEntry.objects.filter(object_type="case", object_id=str(case.pk))
    assert sorted(actions.values_list("action", flat=True)) == ["case.archived", "case.updated"]
    # As in the web app: an archived case not yet final is still checked, and says so.
    assert actions.get(action="case.archived").details["checking"] == "archived_watched"


# --- Idempotency-Key ----------------------------------------------------------------------


def test_a_repeated_post_with_its_key_is_answered_once(firm: Firm, writer: Integration) -> None:
    body = {"receipt_number": "EAC2690000066"}
    first = writer.post("/cases", body, **{"Idempotency-Key": "import-1"})
    again = writer.post("/cases", body, **{"Idempotency-Key": "import-1"})
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() and again["Idempotent-Replayed"] == "true"
    with connection.cursor() as cursor:  # the kept answer names the client: encrypted
        cursor.execute(f"SELECT body FROM {IdempotentResponse._meta.db_table}")
        (stored,) = cursor.fetchone()
    assert "EAC2690000066" not in stored and "McTestface" not in stored
    assert Case.objects.filter(receipt_number="EAC2690000066").count() == 1
    other = problem(
        writer.post(
            "/cases", {"receipt_number": "EAC2690000067"}, **{"Idempotency-Key": "import-1"}
        ),
        409,
    )
    assert "Idempotency-Key" in other["detail"]
    assert not Case.objects.filter(receipt_number="EAC2690000067").exists()


def test_keys_are_kept_per_token_for_a_day(firm: Firm, writer: Integration) -> None:
    body = {"receipt_number": "EAC2690000068"}
    assert writer.post("/cases", body, **{"Idempotency-Key": "k"}).status_code == 201
    colleague = Integration(create_token(firm, "write", actor="test").secret)
    assert problem(colleague.post("/cases", body, **{"Idempotency-Key": "k"}), 409)
    IdempotentResponse.objects.update(created_at=timezone.now() - timedelta(hours=25))
    assert problem(writer.post("/cases", body, **{"Idempotency-Key": "k"}), 409)[
        "detail"
    ].startswith("EAC2690000068 is already case")


# --- Rate limit -------------------------------------------------------------------------


def test_a_token_over_its_rate_gets_429_with_retry_after(
    settings: Any, firm: Firm, reader: Integration
) -> None:
    settings.CASEWATCH_API_RATE_PER_MINUTE = 3
    for _ in range(3):
        assert reader.get("/cases").status_code == 200
    refused = reader.get("/cases")
    problem(refused, 429)
    assert 1 <= int(refused["Retry-After"]) <= 60
    fresh = Integration(create_token(firm, "read", actor="test").secret)
    assert fresh.get("/cases").status_code == 200


def test_other_refusals_are_problems_too(writer: Integration) -> None:
    unreadable = writer.browser.post(
        API + "/cases", "{not json", content_type="application/json", headers=writer.headers
    )
    assert problem(unreadable, 400)
    response = writer.browser.delete(API + "/cases", headers=writer.headers)
    problem(response, 405)
    assert "GET" in response["Allow"]
    problem(writer.get("/nothing/here"), 404)
    # A case is addressed by its number: anything else is no address of the API.
    problem(writer.get("/cases/abc"), 404)


# --- Schema and docs --------------------------------------------------------------------


def test_the_schema_and_docs_are_served_without_fetching_anything(reader: Integration) -> None:
    schema = Browser().get(API + "/openapi.json").json()
    assert {"/api/v1/cases", "/api/v1/cases/{case_id}", "/api/v1/deadlines"} <= set(schema["paths"])
    docs = Browser().get(API + "/docs")
    assert docs.status_code == 200
    page = docs.content.decode()
    assert "/static/ninja/swagger-ui-bundle.js" in page and "cdn" not in page.lower()
    assert Browser().get("/static/ninja/swagger-ui-bundle.js").status_code == 200
