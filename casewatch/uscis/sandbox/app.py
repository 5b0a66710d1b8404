"""The sandbox as a WSGI application, on the official API's paths and JSON.

POST /oauth/accesstoken and GET /case-status/{receipt}, answering as
uscis-api.md says USCIS does, with the limits the real service enforces
(spike arrest, daily quota, office hours) when asked to, and injected faults.
On request it logs every lookup (who asked about which receipt, when, and what
it answered), so that tests can hold clients to what USCIS would see.
"""

from __future__ import annotations

import json
import math
import secrets
import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO
from zoneinfo import ZoneInfo

from werkzeug.exceptions import HTTPException, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from casewatch.core.clock import Clock
from casewatch.core.statuses import default_catalog
from casewatch.uscis.sandbox import texts
from casewatch.uscis.sandbox.faults import (
    HTML_ERROR_PAGE,
    FaultInjector,
    FaultKind,
    FaultPlan,
    error_body,
)
from casewatch.uscis.sandbox.server import ARRIVED_AT_KEY, ARRIVED_KEY
from casewatch.uscis.sandbox.world import (
    ERROR_SERIALS,
    Refusal,
    SandboxCase,
    SyntheticWorld,
    TraceWorld,
    path_book,
    seeded_random,
)

EASTERN = ZoneInfo("America/New_York")
SANDBOX_HEADER = "X-Casewatch-Sandbox"
SPIKE_TOLERANCE = 0.005
TOKEN_LIFETIME = 1799
# Where a request's injected fault is noted for the request log.
FAULT_KEY = "casewatch.sandbox.fault"

World = SyntheticWorld | TraceWorld


@dataclass
class Limits:
    rate: float | None = None  # spike arrest: requests per second
    daily_quota: int | None = None  # requests per UTC day of the sandbox clock
    office_hours: bool = False  # Monday–Friday 7:00–20:00 US Eastern, else 503


@dataclass
class Counters:
    requests: int = 0
    answered: int = 0
    rejected_429: int = 0
    by_status: Counter[int] = field(default_factory=Counter)


def _eastern(moment: datetime) -> str:
    return moment.astimezone(EASTERN).strftime("%m-%d-%Y %H:%M:%S")


def case_payload(case: SandboxCase, moment: datetime) -> dict[str, Any]:
    """The official API's answer for `case` as it stands at `moment`."""
    shown = case.steps_at(moment)
    receipt = case.receipt_number
    rendered = []
    for step in shown:
        on = step.at.astimezone(EASTERN).date()
        rng = seeded_random("step", receipt, step.title, step.at.isoformat())
        rendered.append(
            texts.render_step(
                step.title,
                form_type=case.form_type,
                receipt_number=receipt,
                on=on,
                notice_deadline=on + timedelta(days=30),
                appointment=on + timedelta(days=rng.randint(21, 45)),
                location=case.location,
                description_en=step.description_en,
            )
        )
    current, current_texts = shown[-1], rendered[-1]
    status = default_catalog().by_title(current.title)
    body: dict[str, Any] = {
        "receiptNumber": receipt,
        "formType": case.form_type,
    }
    if not receipt.startswith("IOE"):
        body["submittedDate"] = _eastern(shown[0].at)
        body["modifiedDate"] = _eastern(current.at)
    body.update(
        {
            "current_case_status_text_en": current.title,
            "current_case_status_desc_en": current_texts.description_en,
            "current_case_status_text_es": status.title_es if status else current.title,
            "current_case_status_desc_es": current_texts.description_es,
        }
    )
    history = [
        {
            "date": step.at.astimezone(EASTERN).date().isoformat(),
            "completed_text_en": step_texts.history_en,
            "completed_text_es": step_texts.history_es,
        }
        for step, step_texts in zip(shown, rendered, strict=True)
    ]
    if case.history_style == "list":
        body["hist_case_status"] = history[::-1]
    elif case.history_style == "empty":
        body["hist_case_status"] = []
    elif case.history_style == "null":
        body["hist_case_status"] = None
    return {
        "case_status": body,
        "message": f"Query was successful for payload {{'receipt_number': '{receipt}'}}",
    }


class SandboxApp:
    """A stand-in for the USCIS Case Status API that speaks its wire format."""

    def __init__(
        self,
        world: World,
        clock: Clock,
        *,
        limits: Limits | None = None,
        faults: FaultPlan | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
        token_lifetime: int = TOKEN_LIFETIME,
        request_log: TextIO | None = None,
    ) -> None:
        self.world = world
        self.token_lifetime = token_lifetime
        self.clock = clock
        self.limits = limits or Limits()
        self.faults = FaultInjector(faults or FaultPlan())
        self.client_id = client_id
        self.client_secret = client_secret
        self.counters = Counters()
        self._tokens: dict[str, float] = {}
        # Which client each token was issued to, for the request log.
        self._token_clients: dict[str, tuple[str, float]] = {}
        self.request_log = request_log
        self._lock = threading.Lock()
        self._last_accepted: float | None = None
        self._quota_day: str | None = None
        self._quota_used = 0
        self._routes = Map(
            [
                Rule("/oauth/accesstoken", endpoint="token", methods=["POST"]),
                Rule("/case-status/<receipt>", endpoint="case_status", methods=["GET"]),
                Rule("/", endpoint="about", methods=["GET"]),
                Rule("/health", endpoint="about", methods=["GET"]),
            ]
        )
        # The data every answer is made from, loaded now rather than by the first requests
        # (which would each load it at once, in their threads).
        default_catalog()
        texts.texts()
        path_book()

    def revoke_tokens(self) -> None:
        """Forget every token issued, as USCIS does when they expire."""
        with self._lock:
            self._tokens.clear()

    # -- WSGI ------------------------------------------------------------
    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        arrived = environ.get(ARRIVED_AT_KEY) or time.time()
        endpoint: str = ""
        args: Mapping[str, Any] = {}
        try:
            endpoint, args = self._routes.bind_to_environ(environ).match()
            response: Response = getattr(self, f"on_{endpoint}")(request, **args)
        except NotFound:
            response = self._json(404, {"code": 404, "message": "Resource not found"})
        except HTTPException as exc:
            code = exc.code or 400
            response = self._json(code, {"code": code, "message": exc.description})
        response.headers[SANDBOX_HEADER] = "1"
        with self._lock:
            self.counters.by_status[response.status_code] += 1
        if endpoint == "case_status" and self.request_log is not None:
            self._log_lookup(request, str(args.get("receipt", "")), arrived, response)
        return response(environ, start_response)

    def _log_lookup(
        self, request: Request, receipt: str, arrived: float, response: Response
    ) -> None:
        """One JSON line per lookup: epoch seconds, receipt, asking client, status, fault."""
        token = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        with self._lock:
            client, _ = self._token_clients.get(token, ("", 0.0))
        line = json.dumps(
            {
                "at": arrived,
                "done": time.time(),
                "receipt": receipt,
                "client_id": client,
                "status": response.status_code,
                "fault": request.environ.get(FAULT_KEY),
            }
        )
        assert self.request_log is not None
        with self._lock:
            self.request_log.write(line + "\n")
            self.request_log.flush()

    @staticmethod
    def _json(status: int, payload: object, headers: dict[str, str] | None = None) -> Response:
        return Response(
            json.dumps(payload), status=status, mimetype="application/json", headers=headers
        )

    def _error(self, status: int, message: str, headers: dict[str, str] | None = None) -> Response:
        body = error_body(status, message, self.faults.error_shape())
        return Response(body, status=status, mimetype="application/json", headers=headers)

    # -- endpoints -------------------------------------------------------
    def on_about(self, request: Request) -> Response:
        window = self.world.trace_window
        return self._json(
            200,
            {
                "service": "casewatch USCIS sandbox",
                "now": self.clock.now().isoformat(),
                "trace_window": [w.isoformat() for w in window] if window else None,
                "rate": self.limits.rate,
                "daily_quota": self.limits.daily_quota,
                "office_hours": self.limits.office_hours,
                "requests": self.counters.requests,
                "rejected_429": self.counters.rejected_429,
                "faults_injected": dict(self.faults.injected),
            },
        )

    def on_token(self, request: Request) -> Response:
        form = request.form
        client_id = form.get("client_id", "")
        client_secret = form.get("client_secret", "")
        if form.get("grant_type") != "client_credentials":
            return self._json(
                400,
                {
                    "error": "unsupported_grant_type",
                    "message": "grant_type must be client_credentials",
                },
            )
        wrong = (self.client_id is not None and client_id != self.client_id) or (
            self.client_secret is not None and client_secret != self.client_secret
        )
        if not client_id or not client_secret or wrong:
            return self._json(
                401, {"error": "invalid_client", "message": "Invalid client credentials"}
            )
        token = secrets.token_urlsafe(24)
        with self._lock:
            now = time.monotonic()
            self._tokens = {t: exp for t, exp in self._tokens.items() if exp > now}
            self._tokens[token] = now + self.token_lifetime
            # Kept until the token would have expired, even if revoked early (token_expiry).
            self._token_clients = {
                t: (c, exp) for t, (c, exp) in self._token_clients.items() if exp > now
            }
            self._token_clients[token] = (client_id, now + self.token_lifetime)
        return self._json(
            200,
            {
                "refresh_token_expires_in": "0",
                "api_product_list": "[Case Status]",
                "organization_name": "uscis",
                "token_type": "Bearer",
                "issued_at": str(int(time.time() * 1000)),
                "client_id": client_id,
                "access_token": token,
                "application_name": "casewatch-sandbox",
                "scope": "",
                "expires_in": str(self.token_lifetime),
                "refresh_count": "0",
                "status": "approved",
            },
        )

    def on_case_status(self, request: Request, receipt: str) -> Response:
        now = self.clock.now()
        with self._lock:
            self.counters.requests += 1
        closed = self._closed_for(now)
        if closed is not None:
            return closed
        limited = self._limit(request.environ.get(ARRIVED_KEY))
        if limited is not None:
            with self._lock:
                self.counters.rejected_429 += 1
            return limited
        token = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        with self._lock:
            valid = self._tokens.get(token, 0.0) > time.monotonic()
        if not valid:
            return self._json(401, {"code": 401, "message": "Invalid Access Token"})
        fault = self.faults.next_fault()
        if fault is not None:
            request.environ[FAULT_KEY] = fault.value
        if fault is FaultKind.WRONG_CASE:
            return self._other_case(receipt, now)
        if fault is not None and fault is not FaultKind.SLOW:
            return self._fault(fault, token)
        if fault is FaultKind.SLOW:
            time.sleep(self.faults.plan.delay)
        found = self.world.case(receipt, now)
        if isinstance(found, Refusal):
            return self._refusal(found)
        case, moment = found
        with self._lock:
            self.counters.answered += 1
        return self._json(200, case_payload(case, moment))

    # -- rules -----------------------------------------------------------
    def _closed_for(self, now: datetime) -> Response | None:
        if not self.limits.office_hours:
            return None
        local = now.astimezone(EASTERN)
        if local.weekday() < 5 and 7 <= local.hour < 20:
            return None
        opening = local.replace(hour=7, minute=0, second=0, microsecond=0)
        if local.hour >= 7:
            opening += timedelta(days=1)
        while opening.weekday() >= 5:
            opening += timedelta(days=1)
        wait = self._real_seconds((opening - local).total_seconds())
        return self._error(
            503,
            "The USCIS sandbox is open Monday to Friday, 7:00 to 20:00 US Eastern time.",
            {"Retry-After": str(math.ceil(wait))},
        )

    def _real_seconds(self, virtual_seconds: float) -> float:
        return virtual_seconds / float(getattr(self.clock, "speed", 1.0))

    def _limit(self, arrived: float | None = None) -> Response | None:
        """Spike arrest, then the daily quota; only accepted requests count.

        Requests are spaced by their arrival (`arrived`, time.monotonic(), when the
        server says), not by when a thread got to them: a busy sandbox must not
        refuse requests that came apart.
        """
        with self._lock:
            now = time.monotonic() if arrived is None else arrived
            rate = self.limits.rate
            if (
                rate
                and self._last_accepted is not None
                and abs(now - self._last_accepted) < 1.0 / rate - SPIKE_TOLERANCE
            ):
                return self._json(
                    429,
                    {"code": 429, "message": "Spike Arrest Violation"},
                    {"Retry-After": str(max(math.ceil(self._last_accepted + 1.0 / rate - now), 1))},
                )
            quota = self.limits.daily_quota
            if quota is not None:
                today = self.clock.now().astimezone(UTC)
                key = today.date().isoformat()
                if key != self._quota_day:
                    self._quota_day, self._quota_used = key, 0
                if self._quota_used >= quota:
                    midnight = datetime.combine(
                        today.date() + timedelta(days=1), datetime.min.time(), tzinfo=UTC
                    )
                    wait = self._real_seconds((midnight - today).total_seconds())
                    return self._json(
                        429,
                        {"code": 429, "message": "Quota Violation: daily request quota exhausted"},
                        {"Retry-After": str(math.ceil(wait))},
                    )
                self._quota_used += 1
            last = self._last_accepted
            self._last_accepted = now if last is None else max(now, last)
        return None

    def _refusal(self, refusal: Refusal) -> Response:
        messages = {
            422: "The receipt number entered is not formatted correctly.",
            429: "Spike Arrest Violation",
            503: "The service is temporarily unavailable. Please try again later.",
        }
        message = refusal.message or messages.get(refusal.status, "Error")
        headers = {"Retry-After": "30"} if refusal.status in (429, 503) else None
        return self._error(refusal.status, message, headers)

    def _other_case(self, receipt: str, now: datetime) -> Response:
        """A well-formed answer about a receipt other than the one asked about."""
        for other in self._neighbours(receipt):
            found = self.world.case(other, now)
            if not isinstance(found, Refusal):
                case, moment = found
                return self._json(200, case_payload(case, moment))
        return self._error(503, "The service is temporarily unavailable. Please try again later.")

    def _neighbours(self, receipt: str) -> list[str]:
        if isinstance(self.world, TraceWorld):
            known = sorted(self.world.cases)
            after = [r for r in known if r > receipt]
            return [r for r in after + known if r != receipt][:5]
        if len(receipt) != 13 or not receipt[3:].isdigit():
            return []
        serial = int(receipt[-4:])
        others = [f"{receipt[:-4]}{(serial + step) % 10_000:04d}" for step in range(1, 8)]
        return [r for r in others if r[-4:] not in ERROR_SERIALS][:5]

    def _fault(self, fault: FaultKind, token: str) -> Response:
        if fault in (FaultKind.OUTAGE, FaultKind.UNAVAILABLE):
            return self._error(
                503,
                "The service is temporarily unavailable. Please try again later.",
                {"Retry-After": "5"},
            )
        if fault is FaultKind.STORM:
            with self._lock:
                self.counters.rejected_429 += 1
            return self._error(429, "Spike Arrest Violation", {"Retry-After": "1"})
        if fault is FaultKind.TOKEN_EXPIRY:
            with self._lock:
                self._tokens.pop(token, None)
            return self._json(401, {"code": 401, "message": "Invalid Access Token"})
        if fault is FaultKind.ERRORS:
            status = self.faults.pick((500, 502, 503, 504))
            return self._error(status, "Internal error. Please try again later.")
        if fault is FaultKind.HTML:
            status = self.faults.pick((200, 502, 503))
            return Response(HTML_ERROR_PAGE, status=status, mimetype="text/html")
        # MALFORMED: a 200 whose body is not JSON, or is cut short.
        if self.faults.pick((0, 1)):
            return Response(
                '{"case_status": {"receiptNumber": "', status=200, mimetype="application/json"
            )
        return Response("Service Unavailable", status=200, mimetype="text/plain")
