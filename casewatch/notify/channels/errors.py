"""What a provider's refusal means for a notification, read from data/provider_errors.toml.

The adapters classify errors in a send's answer with it, and delivery receipts can
classify errors that arrive later (a WhatsApp `failed` status, a Twilio
`undelivered` one) with the same table, so "131026 means try the next channel"
is written down once. Addresses never reach a result's detail: `scrub` removes them.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from functools import cache
from importlib import resources
from typing import Any, get_args

from casewatch.notify.channels.base import Outcome, SendResult

# How much of a provider's answer an attempt keeps.
DETAIL_LIMIT = 500
_RULE_FIELDS = frozenset({"outcome", "meaning", "fall_back", "opted_out", "alert_operator"})
_CLASSES = ("4xx", "5xx")
# Phone numbers (7 or more digits, maybe grouped) and e-mail addresses, wherever they are.
_PHONE = re.compile(r"\+?\d[\d ().-]{5,}\d")
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")


@dataclass(frozen=True)
class ErrorRule:
    """One row of the table: what to do about one provider error code."""

    outcome: Outcome
    meaning: str = ""
    fall_back: bool = False
    opted_out: bool = False
    alert_operator: bool = False


class ErrorTableError(ValueError):
    """data/provider_errors.toml is malformed; the message says where."""


def _rule(where: str, row: Any) -> ErrorRule:
    if not isinstance(row, dict):
        raise ErrorTableError(f"provider_errors.toml: [{where}] must be a table")
    unknown = sorted(set(row) - _RULE_FIELDS)
    if unknown:
        raise ErrorTableError(f"provider_errors.toml: [{where}] has unknown field {unknown[0]!r}")
    if row.get("outcome") not in get_args(Outcome)[1:]:
        raise ErrorTableError(
            f"provider_errors.toml: [{where}] outcome must be transient or permanent"
        )
    flags = {key: row.get(key, False) for key in ("fall_back", "opted_out", "alert_operator")}
    if not all(isinstance(value, bool) for value in flags.values()):
        raise ErrorTableError(f"provider_errors.toml: [{where}] flags must be true or false")
    return ErrorRule(outcome=row["outcome"], meaning=str(row.get("meaning", "")), **flags)


def load_error_table(text: str) -> dict[str, dict[str, ErrorRule]]:
    """Parse the table; every channel must say what its 4xx and 5xx answers mean."""
    table: dict[str, dict[str, ErrorRule]] = {}
    for channel, rows in tomllib.loads(text).items():
        if not isinstance(rows, dict):
            raise ErrorTableError(f"provider_errors.toml: [{channel}] must be a table")
        table[channel] = {str(code): _rule(f"{channel}.{code}", row) for code, row in rows.items()}
        missing = [name for name in _CLASSES if name not in table[channel]]
        if missing:
            raise ErrorTableError(
                f"provider_errors.toml: [{channel}] needs a [{channel}.{missing[0]}] rule"
            )
    return table


@cache
def error_table() -> dict[str, dict[str, ErrorRule]]:
    source = resources.files("casewatch.notify").joinpath("data", "provider_errors.toml")
    return load_error_table(source.read_text(encoding="utf-8"))


TOO_MANY_REQUESTS = ErrorRule(outcome="transient", meaning="too many requests")


def rule_for(channel: str, code: str | int | None, status: int | None) -> ErrorRule:
    """The rule for an error `code` (provider's) answered with `status` (HTTP or SMTP).

    A listed code decides; otherwise HTTP 429 is transient, and the channel's rule
    for the status class (4xx, 5xx) applies; with neither, the error is transient.
    """
    rows = error_table()[channel]
    if code not in (None, "") and str(code) in rows:
        return rows[str(code)]
    if status == 429 and channel != "email":
        return TOO_MANY_REQUESTS
    if status is not None and 400 <= status < 600:
        return rows[f"{status // 100}xx"]
    return rows["5xx"]


def scrub(text: str, *addresses: str) -> str:
    """`text` trimmed, without the recipient's address or anything shaped like one."""
    for address in addresses:
        if address:
            text = text.replace(address, "…")
    text = _EMAIL.sub("…", _PHONE.sub("…", text))
    text = " ".join(text.split())
    return text if len(text) <= DETAIL_LIMIT else text[: DETAIL_LIMIT - 1] + "…"


def refusal(
    channel: str,
    *,
    code: str | int | None,
    status: int | None,
    detail: str,
    retry_after: float | None = None,
    address: str = "",
    force_transient: bool = False,
) -> SendResult:
    """A SendResult for a provider's refusal, as the table says."""
    rule = rule_for(channel, code, status)
    meaning = f" ({rule.meaning})" if rule.meaning else ""
    return SendResult(
        outcome="transient" if force_transient else rule.outcome,
        http_status=status,
        error_code="" if code in (None, "") else str(code),
        detail=scrub(f"{detail}{meaning}", address),
        retry_after=retry_after,
        alert_operator=rule.alert_operator,
        fall_back=rule.fall_back,
        opted_out=rule.opted_out,
    )


def unreachable(detail: str, *, code: str = "connection", address: str = "") -> SendResult:
    """No answer at all (timeout, refused connection): try again later."""
    return SendResult(outcome="transient", error_code=code, detail=scrub(detail, address))


def retry_after_seconds(value: str | None) -> float | None:
    """A Retry-After header (seconds, or an HTTP date) in seconds; None when absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        return None
    return max(0.0, (moment - datetime.now(UTC)).total_seconds())


__all__ = [
    "ErrorRule",
    "ErrorTableError",
    "error_table",
    "load_error_table",
    "refusal",
    "retry_after_seconds",
    "rule_for",
    "scrub",
    "unreachable",
]
