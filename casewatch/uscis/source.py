"""What asking USCIS about one receipt can give back, whoever answers.

Every reader of case status (the official API client against USCIS or a
sandbox) returns one of these outcomes. A fault is never a status: callers
can only record a change from `Found`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Literal, Protocol

SourceName = Literal["uscis", "sandbox"]
# Blocks until the caller's rate limit lets one more request go; False: none may go.
Pace = Callable[[], bool]


class NotSent(Exception):
    """`fetch` asked `pace` for its first request and was refused: nothing was asked."""


# Control characters other than tab and line breaks: never meaningful in a USCIS text,
# and NUL cannot be stored in PostgreSQL at all.
_CONTROL = dict.fromkeys(c for c in range(32) if chr(c) not in "\t\n\r") | {0x7F: None}


def _keep_printable(answer: object, names: tuple[str, ...]) -> None:
    """Drop control characters from an answer's texts, whichever way it was made."""
    for name in names:
        text = getattr(answer, name)
        if isinstance(text, str):
            object.__setattr__(answer, name, text.translate(_CONTROL))


@dataclass(frozen=True)
class HistoryEntry:
    """One line of `hist_case_status`: an earlier step and when it happened."""

    date: date | None
    text_en: str
    text_es: str

    def __post_init__(self) -> None:
        _keep_printable(self, ("text_en", "text_es"))


@dataclass(frozen=True)
class CaseStatus:
    """A successful answer: the case as USCIS shows it right now."""

    receipt_number: str
    form_type: str
    title_en: str
    title_es: str
    description_en: str
    description_es: str
    submitted_at: datetime | None
    modified_at: datetime | None
    history: tuple[HistoryEntry, ...]
    message: str
    source: SourceName

    def __post_init__(self) -> None:
        _keep_printable(
            self,
            ("form_type", "title_en", "title_es", "description_en", "description_es", "message"),
        )


@dataclass(frozen=True)
class Found:
    status: CaseStatus
    error: None = None


@dataclass(frozen=True)
class NotFound:
    """USCIS does not recognize the number (or the case is protected: it cannot tell us)."""

    message: str
    error: Literal["not_found"] = "not_found"


@dataclass(frozen=True)
class Invalid:
    """USCIS says the receipt is not formatted correctly (or has an unknown prefix)."""

    message: str
    error: Literal["invalid_receipt"] = "invalid_receipt"


@dataclass(frozen=True)
class RateLimited:
    """Spike arrest or daily quota: stop, and come back after `retry_after` seconds."""

    message: str
    retry_after: float | None = None
    error: Literal["rate_limited"] = "rate_limited"


@dataclass(frozen=True)
class Unavailable:
    """USCIS is down, closed, slow past the timeout or unreachable."""

    message: str
    retry_after: float | None = None
    error: Literal["unavailable"] = "unavailable"


@dataclass(frozen=True)
class AuthFailed:
    """The credentials were refused, even after fetching a fresh token."""

    message: str
    error: Literal["auth_failed"] = "auth_failed"


@dataclass(frozen=True)
class Malformed:
    """An answer that cannot be read as a status; kept for the log, never recorded as one."""

    message: str
    detail: str = field(default="", repr=False)
    error: Literal["malformed_response"] = "malformed_response"


Outcome = Found | NotFound | Invalid | RateLimited | Unavailable | AuthFailed | Malformed
Fault = NotFound | Invalid | RateLimited | Unavailable | AuthFailed | Malformed


class CaseStatusSource(Protocol):
    """Anything that can tell the status of one receipt number."""

    def fetch(self, receipt_number: str, *, pace: Pace | None = None) -> Outcome:
        """Ask about one normalized, valid receipt number.

        Each request the source sends for this answer (the lookup, a retry with a
        fresh token) waits for `pace` right before it goes out, after anything
        else it needs (a token); without `pace` the caller paces the lookup. When
        `pace` refuses the first request, `NotSent` is raised; a refused retry
        leaves the answer already had.
        """
        ...

    def close(self) -> None: ...
