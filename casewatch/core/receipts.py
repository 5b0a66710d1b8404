"""USCIS receipt numbers: what people type, what USCIS accepts, and what the digits say.

A receipt is three letters and ten digits. People paste them with dashes, spaces,
lower case and asterisks; we clean that up before validating, and never send a
malformed one to USCIS (it costs quota and only returns 422).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta

from casewatch.core.wording import Wording

# ASCII only: Python's \d also matches Arabic-Indic and other digits, which USCIS does not take.
RECEIPT_PATTERN = re.compile(r"^[A-Z]{3}[0-9]{10}$")

# Characters people put inside receipts that carry no meaning: spaces of every
# kind, dashes of every kind, asterisks, dots, slashes and invisible marks.
_NOISE = re.compile(r"[\s\-‐‑‒–—―−*·./\\_#\u200b\u200c\u200d\ufeff]+")

OFFICES: dict[str, str] = {
    "EAC": "Vermont Service Center",
    "VSC": "Vermont Service Center",
    "WAC": "California Service Center",
    "CSC": "California Service Center",
    "LIN": "Nebraska Service Center",
    "NSC": "Nebraska Service Center",
    "SRC": "Texas Service Center",
    "TSC": "Texas Service Center",
    "MSC": "National Benefits Center",
    "NBC": "National Benefits Center",
    "YSC": "Potomac Service Center",
    "IOE": "USCIS Electronic Immigration System (ELIS)",
}

# Prefixes whose digits follow the service-center pattern (fiscal year, workday, serial).
SERVICE_CENTER_PREFIXES = frozenset(OFFICES) - {"IOE"}


# What parse_receipt says, by message id: the English of the CLI and of `--json`.
# Pages word them in their own language (casewatch.web.labels.WORDINGS).
MESSAGES: Mapping[str, str] = {
    "receipt.empty": "empty receipt number",
    "receipt.length": (
        "a receipt number has 13 characters (3 letters and 10 digits); {number} has {length}"
    ),
    "receipt.letters": "a receipt number starts with 3 letters; {number} does not",
    "receipt.digits": "a receipt number ends with 10 digits; {number} does not",
    "receipt.unknown_prefix": (
        "unknown receipt prefix {prefix}: not a USCIS office casewatch knows"
    ),
}


def _said(code: str, **params: object) -> Wording:
    return Wording(code, MESSAGES[code], **params)


class InvalidReceipt(ValueError):
    """The text cannot be a receipt number; the message says why, in plain words."""

    @property
    def wording(self) -> Wording | None:
        """The reason as a message id and values, for a page in another language."""
        reason = self.args[0] if self.args else None
        return reason if isinstance(reason, Wording) else None


@dataclass(frozen=True)
class Receipt:
    """A validated receipt number and what can be read from it."""

    number: str
    office: str | None
    fiscal_year: int | None = None
    workday: int | None = None
    serial: int | None = None
    lockbox: bool = False
    warnings: tuple[str, ...] = field(default=())

    @property
    def prefix(self) -> str:
        return self.number[:3]

    @property
    def is_elis(self) -> bool:
        """IOE receipts come from online filing; USCIS omits their dates."""
        return self.prefix == "IOE"

    @property
    def approx_received_on(self) -> date | None:
        """The fee-intake day the workday digits point at (weekdays from 1 October)."""
        if self.fiscal_year is None or self.workday is None or not 1 <= self.workday <= 366:
            return None
        day = date(self.fiscal_year - 1, 10, 1)
        while day.weekday() >= 5:
            day += timedelta(days=1)
        # Five weekdays on from a weekday is the same weekday a week later.
        weeks, remaining = divmod(self.workday - 1, 5)
        day += timedelta(weeks=weeks)
        while remaining:
            day += timedelta(days=1)
            if day.weekday() < 5:
                remaining -= 1
        return day

    def formatted(self) -> str:
        """The number as USCIS prints it on notices: EAC-24-901-23456."""
        n = self.number
        return f"{n[:3]}-{n[3:5]}-{n[5:8]}-{n[8:]}"


# Passes of normalization at most: one almost always suffices (see normalize_receipt).
_NORMALIZE_PASSES = 4
# How much of a refused text a message repeats: enough to find it, not a pasted page.
_SHOWN = 40


def normalize_receipt(text: str) -> str:
    """Upper-case and strip the noise people type; does not validate.

    Idempotent: removing a space can join a stray accent to a letter, and upper
    case can undo Unicode normalization, so the clean-up repeats until it changes
    nothing (one pass for anything a person types).
    """
    for _ in range(_NORMALIZE_PASSES):
        cleaned = _NOISE.sub("", unicodedata.normalize("NFKC", text)).upper()
        if cleaned == text:
            break
        text = cleaned
    return text


def _shown(number: str) -> str:
    """The refused text as a message quotes it, cut short when it is long."""
    return repr(number if len(number) <= _SHOWN else number[:_SHOWN] + "…")


def parse_receipt(text: str) -> Receipt:
    """Normalize and validate `text`, or raise InvalidReceipt saying what is wrong."""
    number = normalize_receipt(text)
    if not number:
        raise InvalidReceipt(_said("receipt.empty"))
    if len(number) != 13:
        raise InvalidReceipt(_said("receipt.length", number=_shown(number), length=len(number)))
    if not RECEIPT_PATTERN.match(number):
        if not number[:3].isalpha() or not number[:3].isascii():
            raise InvalidReceipt(_said("receipt.letters", number=_shown(number)))
        raise InvalidReceipt(_said("receipt.digits", number=_shown(number)))
    prefix = number[:3]
    office = OFFICES.get(prefix)
    warnings: list[str] = []
    if office is None:
        warnings.append(_said("receipt.unknown_prefix", prefix=repr(prefix)))
    if prefix not in SERVICE_CENTER_PREFIXES:
        return Receipt(number=number, office=office, warnings=tuple(warnings))
    digits = number[3:]
    fiscal_year = 2000 + int(digits[:2])
    lockbox = digits[2] == "9"
    if lockbox:
        workday, serial = int(digits[3:6]), int(digits[6:])
    else:
        workday, serial = int(digits[2:5]), int(digits[5:])
    return Receipt(
        number=number,
        office=office,
        fiscal_year=fiscal_year,
        workday=workday,
        serial=serial,
        lockbox=lockbox,
        warnings=tuple(warnings),
    )


def is_valid_receipt(text: str) -> bool:
    try:
        parse_receipt(text)
    except InvalidReceipt:
        return False
    return True


_LIST_SEPARATORS = re.compile(r"[,;\t|]+")


def split_receipt_list(text: str) -> list[str]:
    """Receipts from pasted text or a file: one per line, or separated by , ; | or tabs.

    Spaces inside one receipt are kept (they are noise `parse_receipt` removes);
    blank lines and lines starting with # are skipped.
    """
    items: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        pieces = [p.strip() for p in _LIST_SEPARATORS.split(stripped) if p.strip()]
        for piece in pieces:
            # "EAC9999103403 LIN9999106498" on one line is two receipts, while
            # "EAC 99 991 03403" is one: split on spaces only when every part is whole.
            words = piece.split()
            if len(words) > 1 and all(is_valid_receipt(w) for w in words):
                items.extend(words)
            else:
                items.append(piece)
    return items
