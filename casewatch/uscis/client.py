"""The official USCIS Case Status API client.

OAuth 2.0 client credentials; the token is cached and fetched anew a minute
before it expires, and once more on a 401. Every answer is parsed defensively
into a typed outcome (uscis-api.md lists the shapes seen in practice): an
answer that cannot be read is `Malformed`, never a status.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Mapping
from datetime import date, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.request import getproxies

import httpx

from casewatch import __version__
from casewatch.uscis.source import (
    AuthFailed,
    CaseStatus,
    Found,
    HistoryEntry,
    Invalid,
    Malformed,
    NotFound,
    NotSent,
    Outcome,
    Pace,
    RateLimited,
    SourceName,
    Unavailable,
)

log = logging.getLogger(__name__)

SANDBOX_HEADER = "X-Casewatch-Sandbox"
TOKEN_REFRESH_MARGIN = 60.0
DEFAULT_TOKEN_LIFETIME = 1799.0

NOT_FOUND_MESSAGE = (
    "Case Status Online does not recognize the receipt number entered. "
    "Please check that your receipt number is correct."
)


class TokenError(Exception):
    def __init__(self, outcome: Outcome) -> None:
        super().__init__(getattr(outcome, "message", ""))
        self.outcome = outcome


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Read a Retry-After header: delay in seconds, or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - (time.time() if now is None else now))


def _json_or_none(text: str) -> Any:
    try:
        return json.loads(text.strip())
    except (ValueError, RecursionError):
        return None


def error_message(body: str) -> str | None:
    """The human message from any documented error shape, if there is one."""
    return _message_in(_json_or_none(body))


def _message_in(data: Any) -> str | None:
    """`error_message` of a body already parsed (None: not JSON)."""
    if isinstance(data, Mapping):
        if isinstance(data.get("message"), str) and "case_status" not in data:
            return str(data["message"])
        inner = data.get("error")
        if isinstance(inner, Mapping) and isinstance(inner.get("message"), str):
            return str(inner["message"])
        if isinstance(inner, str):
            return inner
        errors = data.get("errors")
        if isinstance(errors, list):
            for item in errors:
                if isinstance(item, Mapping) and isinstance(item.get("message"), str):
                    return str(item["message"])
        fault = data.get("fault")
        if isinstance(fault, Mapping) and isinstance(fault.get("faultstring"), str):
            return str(fault["faultstring"])
    return None


# USCIS's usual shapes, read without strptime (which costs more than the rest of an answer).
_USUAL_TIMESTAMP = re.compile(r"([0-9]{2})-([0-9]{2})-([0-9]{4}) ([0-9]{2}):([0-9]{2}):([0-9]{2})")
_USUAL_DATE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")


def _parse_timestamp(value: object) -> datetime | None:
    """`MM-DD-YYYY HH:MM:SS` as USCIS prints it (its local time, no zone given)."""
    if not isinstance(value, str) or not value.strip():
        return None
    usual = _USUAL_TIMESTAMP.fullmatch(value.strip())
    if usual is not None:
        month, day, year, hour, minute, second = map(int, usual.groups())
        try:
            return datetime(year, month, day, hour, minute, second)
        except ValueError:
            pass  # what strptime would refuse too; the patterns below say so
    for pattern in ("%m-%d-%Y %H:%M:%S", "%m-%d-%Y", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"):
        try:
            return datetime.strptime(value.strip(), pattern)
        except ValueError:
            continue
    return None


def _parse_date(value: object) -> date | None:
    if not isinstance(value, str):
        return None
    usual = _USUAL_DATE.match(value.strip())
    if usual is not None:
        try:
            return date(*map(int, usual.groups()))
        except ValueError:
            pass
    for pattern in ("%Y-%m-%d", "%m-%d-%Y", "%m/%d/%Y"):
        try:
            return datetime.strptime(value.strip()[:10], pattern).date()
        except ValueError:
            continue
    return None


def _text(value: object) -> str:
    return value.strip() if isinstance(value, str) else ""


def parse_case_status(body: str, receipt_number: str, source: SourceName) -> Found | Malformed:
    """Turn a 200 body into a status, or say why it is not one."""
    data = _json_or_none(body)
    if not isinstance(data, Mapping):
        return Malformed("USCIS answered with something that is not JSON", body[:500])
    case = data.get("case_status")
    if not isinstance(case, Mapping):
        message = _message_in(data) or "USCIS answered without a case_status"
        return Malformed(message, body[:500])
    title_en = _text(case.get("current_case_status_text_en"))
    title_es = _text(case.get("current_case_status_text_es"))
    if not title_en and not title_es:
        return Malformed("USCIS answered without a status title", body[:500])
    answered_receipt = _text(case.get("receiptNumber")).upper()
    if answered_receipt and answered_receipt != receipt_number:
        return Malformed(
            f"USCIS answered about {answered_receipt} when asked about {receipt_number}",
            body[:500],
        )
    history_raw = case.get("hist_case_status")
    history: list[HistoryEntry] = []
    if isinstance(history_raw, list):
        for item in history_raw:
            if isinstance(item, Mapping):
                history.append(
                    HistoryEntry(
                        date=_parse_date(item.get("date")),
                        text_en=_text(item.get("completed_text_en")),
                        text_es=_text(item.get("completed_text_es")),
                    )
                )
    return Found(
        CaseStatus(
            receipt_number=receipt_number,
            form_type=_text(case.get("formType")),
            title_en=title_en,
            title_es=title_es,
            description_en=_text(case.get("current_case_status_desc_en")),
            description_es=_text(case.get("current_case_status_desc_es")),
            submitted_at=_parse_timestamp(case.get("submittedDate")),
            modified_at=_parse_timestamp(case.get("modifiedDate")),
            history=tuple(history),
            message=_text(data.get("message")),
            source=source,
        )
    )


def _environment_proxies() -> bool:
    """Whether HTTP(S)_PROXY or ALL_PROXY is set, as httpx reads them (through urllib)."""
    return any(scheme in getproxies() for scheme in ("http", "https", "all"))


class OfficialClient:
    """Reads case status from the official API (or any server speaking its wire format)."""

    def __init__(
        self,
        *,
        base_url: str,
        token_url: str,
        client_id: str,
        client_secret: str,
        timeout: float = 15.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.token_url = token_url
        self._credentials = {"client_id": client_id, "client_secret": client_secret}
        limits = httpx.Limits(max_connections=32, max_keepalive_connections=16)
        if transport is None and not _environment_proxies():
            transport = httpx.HTTPTransport(limits=limits)  # what the client would make itself
        self._http = httpx.Client(
            timeout=httpx.Timeout(timeout),
            headers={"Accept": "application/json", "User-Agent": f"casewatch/{__version__}"},
            transport=transport,
            limits=limits,
        )
        # Lookups go straight to the transport (the connection pool): a bearer-token GET
        # needs none of the client's cookies, redirects or auth flows, which cost a third
        # of a lookup's time. With a proxy from the environment the client routes them.
        self._transport = transport
        self._lookup_headers = list(self._http.headers.multi_items())
        self._extensions = {"timeout": httpx.Timeout(timeout).as_dict()}
        self._token: str | None = None
        self._token_expires = 0.0
        self._token_lock = threading.Lock()
        self.tokens_fetched = 0
        self.source: SourceName = "uscis"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> OfficialClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _token_now(self, *, force: bool = False, stale: str | None = None) -> str:
        with self._token_lock:
            if force and self._token is not None and self._token != stale:
                return self._token  # another thread already replaced the stale token
            if (
                not force
                and self._token is not None
                and time.monotonic() < self._token_expires - TOKEN_REFRESH_MARGIN
            ):
                return self._token
            self._token, lifetime = self._fetch_token()
            self._token_expires = time.monotonic() + lifetime
            self.tokens_fetched += 1
            return self._token

    def _fetch_token(self) -> tuple[str, float]:
        try:
            response = self._http.post(
                self.token_url,
                data={"grant_type": "client_credentials", **self._credentials},
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
        except httpx.TimeoutException as exc:
            raise TokenError(Unavailable(f"USCIS token endpoint timed out ({exc})")) from exc
        except httpx.HTTPError as exc:
            raise TokenError(Unavailable(f"USCIS token endpoint unreachable ({exc})")) from exc
        code = response.status_code
        if code == 429:
            raise TokenError(
                RateLimited(
                    error_message(response.text) or "Spike Arrest Violation",
                    retry_after_seconds(response.headers.get("Retry-After")),
                )
            )
        if code >= 500:
            raise TokenError(
                Unavailable(
                    error_message(response.text) or f"USCIS token endpoint answered {code}",
                    retry_after_seconds(response.headers.get("Retry-After")),
                )
            )
        if code != 200:
            raise TokenError(
                AuthFailed(
                    error_message(response.text) or f"USCIS refused the credentials (HTTP {code})"
                )
            )
        data = _json_or_none(response.text)
        token = data.get("access_token") if isinstance(data, Mapping) else None
        if not isinstance(token, str) or not token:
            raise TokenError(
                Malformed("USCIS token answer has no access_token", response.text[:500])
            )
        try:
            lifetime = float(data.get("expires_in", DEFAULT_TOKEN_LIFETIME))
        except (TypeError, ValueError):
            lifetime = DEFAULT_TOKEN_LIFETIME
        return token, max(lifetime, 1.0)

    def fetch(self, receipt_number: str, *, pace: Pace | None = None) -> Outcome:
        """Ask about one receipt; a 401 fetches a fresh token and asks once more.

        Each lookup waits for `pace` (when given) once its token is in hand, right
        before it goes out: a token fetched meanwhile cannot make it late for its
        slot. A refused first lookup raises `NotSent`; a refused retry leaves the
        401's answer.
        """
        try:
            token = self._token_now()
            if pace is not None and not pace():
                raise NotSent(receipt_number)
            response = self._get(receipt_number, token)
            if isinstance(response, httpx.Response) and response.status_code == 401:
                token = self._token_now(force=True, stale=token)
                if pace is not None and not pace():
                    return self._outcome(response, receipt_number)
                response = self._get(receipt_number, token)
        except TokenError as exc:
            return exc.outcome
        if not isinstance(response, httpx.Response):
            return response
        return self._outcome(response, receipt_number)

    def _get(self, receipt_number: str, token: str) -> httpx.Response | Unavailable:
        try:
            url = f"{self.base_url}/case-status/{receipt_number}"
            if self._transport is None:
                return self._http.get(url, headers={"Authorization": f"Bearer {token}"})
            request = httpx.Request(
                "GET",
                url,
                headers=[*self._lookup_headers, ("Authorization", f"Bearer {token}")],
                extensions=self._extensions,
            )
            response = self._transport.handle_request(request)
            try:
                response.read()
            finally:
                response.close()
            return response
        except httpx.TimeoutException:
            return Unavailable("USCIS did not answer in time")
        except httpx.HTTPError as exc:
            return Unavailable(f"USCIS could not be reached ({type(exc).__name__})")

    def _outcome(self, response: httpx.Response, receipt_number: str) -> Outcome:
        code = response.status_code
        body = response.text
        source: SourceName = "sandbox" if SANDBOX_HEADER in response.headers else "uscis"
        self.source = source
        if code == 200:
            return parse_case_status(body, receipt_number, source)
        retry_after = retry_after_seconds(response.headers.get("Retry-After"))
        message = error_message(body)
        if code == 404:
            return NotFound(message or NOT_FOUND_MESSAGE)
        if code in (400, 422):
            return Invalid(message or "USCIS says the receipt number is not formatted correctly")
        if code == 429:
            return RateLimited(message or "Spike Arrest Violation", retry_after)
        if code in (401, 403):
            return AuthFailed(message or "Invalid Access Token")
        if code >= 500:
            return Unavailable(message or f"USCIS is unavailable (HTTP {code})", retry_after)
        return Malformed(f"USCIS answered with unexpected HTTP status {code}", body[:500])
