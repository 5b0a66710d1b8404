"""Dates in a USCIS status description: when the notice went out, when the appointment is.

Part of the Interpret step: text in, dates out, no Django and no I/O. USCIS writes
"On September 5, 2023, we …" and "El 05 de Septiembre de 2023, …"; reworded or
hand-made texts also say "Sept. 5th", "09/05/2023" or "2023-09-05". A date is read
only where the wording says what it is: a wrong deadline is worse than none, so
anything unclear (an ambiguous numeric date, a weekday that does not fit) gives None.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, time, timedelta
from typing import Final, Literal

RFE_RESPONSE_DAYS: Final = 87  # 84 days to respond + 3 for mailing
NOID_RESPONSE_DAYS: Final = 33  # 30 days to respond + 3 for mailing


@dataclass(frozen=True)
class DeadlineRule:
    """How a status category sets a deadline: days after its notice, or its appointment."""

    kind: str
    counted_from: Literal["notice", "appointment"]
    label: str
    days: int = 0
    appointments: frozenset[str] = frozenset()  # which appointments count, for "appointment"


# Category (casewatch.core.statuses.CATEGORIES) → the deadline it sets.
DEADLINE_RULES: Mapping[str, DeadlineRule] = {
    "evidence_requested": DeadlineRule("rfe_response", "notice", "RFE notice", RFE_RESPONSE_DAYS),
    "intent_to_deny": DeadlineRule(
        "noid_response", "notice", "Notice of intent", NOID_RESPONSE_DAYS
    ),
    "interview_scheduled": DeadlineRule(
        "interview",
        "appointment",
        "interview",
        appointments=frozenset({"interview", "oath ceremony", "appointment"}),
    ),
    "biometrics": DeadlineRule(
        "biometrics",
        "appointment",
        "biometrics appointment",
        appointments=frozenset({"biometrics appointment", "appointment"}),
    ),
}


@dataclass(frozen=True)
class AppointmentTime:
    """When the client must appear; `at` only when the text gives a time of day."""

    on: date
    at: time | None = None


@dataclass(frozen=True)
class Deadline:
    """A date the firm must meet, and the date it was counted from, in words."""

    kind: str
    due_on: date
    due_at: time | None
    basis: date
    basis_text: str


# --- Words, as data. Matching happens on casefolded text without accents. ---------

MONTHS: Mapping[str, int] = {
    "january": 1, "jan": 1, "february": 2, "feb": 2, "march": 3, "mar": 3,
    "april": 4, "apr": 4, "may": 5, "june": 6, "jun": 6, "july": 7, "jul": 7,
    "august": 8, "aug": 8, "september": 9, "sept": 9, "sep": 9, "october": 10,
    "oct": 10, "november": 11, "nov": 11, "december": 12, "dec": 12,
    "enero": 1, "ene": 1, "febrero": 2, "marzo": 3, "abril": 4, "abr": 4,
    "mayo": 5, "junio": 6, "julio": 7, "agosto": 8, "ago": 8, "septiembre": 9,
    "setiembre": 9, "set": 9, "octubre": 10, "noviembre": 11, "diciembre": 12, "dic": 12,
}  # fmt: skip

WEEKDAYS: Mapping[str, int] = {
    "monday": 0, "mon": 0, "tuesday": 1, "tues": 1, "tue": 1, "wednesday": 2, "wed": 2,
    "thursday": 3, "thurs": 3, "thur": 3, "thu": 3, "friday": 4, "fri": 4,
    "saturday": 5, "sat": 5, "sunday": 6, "sun": 6,
    "lunes": 0, "martes": 1, "miercoles": 2, "jueves": 3, "viernes": 4, "sabado": 5,
    "domingo": 6,
}  # fmt: skip

# Which (first, second) readings of "09/05/2023" a language's writers use. USCIS's
# English is US order; Spanish writers use either, so only an unambiguous one is read.
NUMERIC_ORDERS: Mapping[str, tuple[Literal["month_day", "day_month"], ...]] = {
    "en": ("month_day",),
    "es": ("month_day", "day_month"),
}

# Four-digit years outside this range are typos, not dates to count a deadline from.
YEARS: Final = range(1900, 2200)

# How AM and PM are written → hours to add to a 12-hour clock reading (12 counts as 0).
MERIDIEMS: tuple[tuple[str, int], ...] = (
    (r"a\.?\s?m\b\.?", 0),
    (r"p\.?\s?m\b\.?", 12),
    (r"de la manana", 0),
    (r"de la (?:tarde|noche)", 12),
)

# "at 3:00" with no AM/PM could be 3:00 or 15:00; no office opens 1-6 AM, so the writer
# probably meant the afternoon in 12-hour time, but we do not guess.
AMBIGUOUS_HOURS: Final = range(1, 7)

# How a description opens when it starts with the date of its action.
LEAD_INS: tuple[tuple[str, str], ...] = (
    ("en", r"on"),
    ("en", r"as of"),
    ("es", r"el"),
    ("es", r"a partir del?"),
    ("es", r"desde el"),
    ("es", r"con fecha(?: del?)?"),
)

_NOTICE_EN = r"(?:notice|letter|rfe|noid|request for (?:additional |initial )?evidence)"
_NOTICE_ES = r"(?:aviso|carta|solicitud de evidencia)"

# When there is no leading date: what must come right before the first date in the
# text (in its sentence) for that date to be the notice's.
_SENT_EN = r"(?:sent|mailed|emailed|issued)"
_SENT_ES = r"(?:enviad[oa]|emitid[oa]|envio|emitio)"
NOTICE_CUES: tuple[tuple[str, str], ...] = (
    ("en", rf"\b{_NOTICE_EN} dated (?:on )?$"),
    ("en", r"\bnotice date(?: of| is| was|:)? $"),
    ("en", rf"\b{_SENT_EN}(?: (?:to )?you)? (?:[a-z-]+ ){{0,3}}{_NOTICE_EN} on $"),
    ("en", rf"\b{_NOTICE_EN} (?:was|were) {_SENT_EN}(?: to you)? on $"),
    ("es", rf"\b{_NOTICE_ES} (?:con fecha|fechad[oa])(?: del?| el)? $"),
    ("es", r"\bfecha del aviso(?: es|:)?(?: el)? $"),
    ("es", rf"\b(?:enviamos|emitimos)(?: [a-z]+){{0,4}} {_NOTICE_ES}(?: [a-z]+){{0,3}} el $"),
    ("es", rf"\b{_NOTICE_ES} (?:fue|se) {_SENT_ES}(?: por correo)? el $"),
)  # fmt: skip

# Wordings that put an appointment's date after them, in the same sentence:
# (language, what, pattern). <date> is the date, with an optional "at 10:00 AM" after
# it; <time> is an optional "at 10:00 AM" before the "on" that introduces the date.
_THEN_EN = r"\b[^.]*?\b<time>(?:on|for) <date>"
_THEN_ES = r"\b[^.]*?\b<time>(?:para )?el <date>"
_IS_SCHEDULED = r" (?:is|was|has been)(?: now)? (?:re)?scheduled"
_ESTA_PROGRAMADA = r" (?:ahora )?(?:esta|fue|ha sido|queda)(?: ahora)? (?:re)?programada"
_WE_SCHEDULED = r"\b(?:re)?scheduled (?:you for )?(?:an|the|your) "
_PROGRAMAMOS = r"\b(?:re)?programamos (?:una|la|su) "
APPOINTMENT_WORDINGS: tuple[tuple[str, str, str], ...] = (
    ("en", "biometrics appointment", r"\b(?:biometrics?|fingerprint) appointment" + _THEN_EN),
    ("en", "interview", _WE_SCHEDULED + "interview" + _THEN_EN),
    ("en", "interview", r"\binterview" + _IS_SCHEDULED + _THEN_EN),
    ("en", "oath ceremony", _WE_SCHEDULED + "(?:naturalization )?oath ceremony" + _THEN_EN),
    ("en", "oath ceremony", r"\boath ceremony" + _IS_SCHEDULED + _THEN_EN),
    ("en", "appointment", r"\bappointment" + _IS_SCHEDULED + _THEN_EN),
    ("es", "biometrics appointment", r"\bcitas?\b[^.]*?\bbiometric\w*" + _THEN_ES),
    ("es", "interview", _PROGRAMAMOS + "entrevista" + _THEN_ES),
    ("es", "interview", r"\bentrevista" + _ESTA_PROGRAMADA + _THEN_ES),
    ("es", "oath ceremony", _PROGRAMAMOS + "ceremonia de juramento" + _THEN_ES),
    ("es", "oath ceremony", r"\bceremonia de juramento" + _ESTA_PROGRAMADA + _THEN_ES),
    ("es", "appointment", r"\bcita" + _ESTA_PROGRAMADA + _THEN_ES),
)  # fmt: skip

# A sentence with one of these speaks of an appointment that will not take place as said.
NOT_AN_APPOINTMENT: Final = re.compile(
    r"\b(?:cancel(?:l?ed)?|deschedul\w*|missed|no one (?:came|appeared)"
    r"|did not (?:come|appear|attend)|request to reschedule"
    r"|cancelamos|cancelo|cancelad[ao]|desprogram\w*|nadie|no se presento|no asistio"
    r"|solicitud (?:para|de) reprogramar)\b"
)

# --- Date and time patterns, built from the tables above. ------------------------


def _alternation(words: Iterable[str]) -> str:
    return "|".join(re.escape(w) for w in sorted(words, key=lambda w: (-len(w), w)))


_ORDINAL = r"(?:\s?(?:st|nd|rd|th|ro|er)|\.?o)?"  # 5th, 5 th (from <sup>), 1ro, 1er, 1.º
_BEFORE_YEAR = r"(?:\s*,\s*|\s+)(?:del?\s+)?"  # "5, 2023", "5 2023", "septiembre de 2023"
_WEEKDAY = r"(?:<wd>\b\.?\s*,?\s+)?"
_FIELDS: Mapping[str, str] = {
    "wd": _alternation(WEEKDAYS),
    "mn": _alternation(MONTHS),
    "d": r"\d{1,2}",
    "m": r"\d{1,2}",
    "first": r"\d{1,2}",
    "second": r"\d{1,2}",
    "y": r"\d{4}",
}
# Shapes a date is written in; each field <name> becomes a group "<shape>_<name>".
DATE_SHAPES: tuple[tuple[str, str], ...] = (
    ("month_day_year", _WEEKDAY + r"<mn>\b\.?\s+<d>" + _ORDINAL + _BEFORE_YEAR + "<y>"),
    ("day_month_year",
     _WEEKDAY + r"(?:the\s+)?<d>" + _ORDINAL + r"\s+(?:(?:of|de)\s+)?<mn>\b\.?"
     + _BEFORE_YEAR + "<y>"),
    ("numeric_slashes", _WEEKDAY + "<first>/<second>/<y>"),
    ("numeric_dashes", _WEEKDAY + "<first>-<second>-<y>"),
    ("iso", "<y>-<m>-<d>"),
)  # fmt: skip
_DATE_START = r"(?<![\w/.-])"
_DATE_END = r"(?!\d|[/-]\d|(?!t\d)[a-z_])"  # "2023-09-05T10:00" still ends at the date


def _shape_regex(shape: str, template: str, *, named: bool) -> str:
    def field(match: re.Match[str]) -> str:
        name = match.group(1)
        if named:
            return f"(?P<{shape}_{name}>{_FIELDS[name]})"
        return f"(?:{_FIELDS[name]})"

    return re.sub(r"<(\w+)>", field, template)


def _date_regex(*, named: bool) -> str:
    shapes = "|".join(_shape_regex(s, t, named=named) for s, t in DATE_SHAPES)
    return f"{_DATE_START}(?:{shapes}){_DATE_END}"


_DATE: Final = re.compile(_date_regex(named=True))
_MERIDIEM = "|".join(pattern for pattern, _ in MERIDIEMS)
_HOURS = r"(?:\s*(?:h|hrs?|horas)\b)?"  # "a las 14:00 horas"
_TIME: Final = re.compile(
    rf"(?P<hour>\d{{1,2}})(?::(?P<minute>\d{{2}}))?\s*(?P<meridiem>{_MERIDIEM})?{_HOURS}"
)
_MERIDIEMS: Final = tuple((re.compile(pattern), hours) for pattern, hours in MERIDIEMS)
# A time needs minutes or AM/PM: "at 10" alone is too easily something else.
_TIME_TEXT = rf"\d{{1,2}}(?::\d{{2}}(?:\s*(?:{_MERIDIEM}))?|\s*(?:{_MERIDIEM}))(?!\d){_HOURS}"
_AT = r"(?:at|a\s+las?|@)"


def _appointment_regex(template: str) -> re.Pattern[str]:
    date_part = (
        rf"(?P<date>{_date_regex(named=False)})(?:\s*,?\s*{_AT}\s+(?P<time_after>{_TIME_TEXT}))?"
    )
    time_part = rf"(?:{_AT}\s+(?P<time_before>{_TIME_TEXT})\s*,?\s+)?"
    return re.compile(template.replace("<date>", date_part).replace("<time>", time_part))


_LEAD_INS: Final = tuple((lang, re.compile(rf"^\W*{words}\s+")) for lang, words in LEAD_INS)
_NOTICE_CUES: Final = tuple((lang, re.compile(cue)) for lang, cue in NOTICE_CUES)
_APPOINTMENTS: Final = tuple(
    (lang, what, _appointment_regex(template)) for lang, what, template in APPOINTMENT_WORDINGS
)

_TAG = re.compile(r"<[^>]*>")
_DASHES = str.maketrans(dict.fromkeys("‐‑‒–—―−", "-"))


# --- Reading. -------------------------------------------------------------------


class _Unreadable(Exception):
    """A date-shaped text that is not one date: invalid, ambiguous or self-contradicting."""


def _plain(text: str) -> str:
    """The text as matched: no markup or entities, no accents, folded case, single spaces."""
    previous = None
    while previous != text:  # entities may be escaped twice ("&amp;nbsp;")
        previous, text = text, html.unescape(text)
    text = unicodedata.normalize("NFKD", _TAG.sub(" ", text))  # NFKD: "1.º" → "1.o"
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    return " ".join(text.translate(_DASHES).casefold().split())


def _candidate(year: int, month: int, day: int) -> date | None:
    if year not in YEARS:
        return None
    try:
        return date(year, month, day)
    except ValueError:
        return None


def _read_date(match: re.Match[str], lang: str) -> date:
    """The one date a match of `_DATE` names, read as `lang`'s writers mean it."""
    shape = next(s for s, _ in DATE_SHAPES if match.group(f"{s}_y") is not None)
    fields = {
        k[len(shape) + 1 :]: v for k, v in match.groupdict().items() if k.startswith(f"{shape}_")
    }
    year = int(fields["y"])
    if fields.get("mn"):
        readings = [(MONTHS[fields["mn"]], int(fields["d"]))]
    elif fields.get("first"):
        first, second = int(fields["first"]), int(fields["second"])
        readings = [
            (first, second) if order == "month_day" else (second, first)
            for order in NUMERIC_ORDERS[lang]
        ]
    else:
        readings = [(int(fields["m"]), int(fields["d"]))]
    found = {d for month, day in readings if (d := _candidate(year, month, day)) is not None}
    if len(found) != 1:
        raise _Unreadable(match.group(0))
    (result,) = found
    weekday = fields.get("wd")
    if weekday and WEEKDAYS[weekday] != result.weekday():
        raise _Unreadable(match.group(0))
    return result


def _read_time(text: str | None) -> time | None:
    """A clock time, or None when there is none or it could be either AM or PM."""
    if not text:
        return None
    match = _TIME.fullmatch(text)
    if match is None:
        return None
    hour, minute = int(match["hour"]), int(match["minute"] or 0)
    meridiem = match["meridiem"]
    if meridiem:
        if not 1 <= hour <= 12:
            return None
        hour = hour % 12 + next(add for form, add in _MERIDIEMS if form.fullmatch(meridiem))
    elif hour in AMBIGUOUS_HOURS:
        return None
    if hour > 23 or minute > 59:
        return None
    return time(hour, minute)


def _sentence(text: str, start: int, end: int) -> str:
    first = text.rfind(". ", 0, start)
    last = text.find(". ", end)
    return text[first + 2 if first >= 0 else 0 : last if last >= 0 else len(text)]


def _notice_date(text: str) -> date | None:
    for lang, lead_in in _LEAD_INS:
        opening = lead_in.match(text)
        if opening is None:
            continue
        leading = _DATE.match(text, opening.end())
        if leading is not None:
            return _read_date(leading, lang)
    first = _DATE.search(text)
    if first is None:
        return None
    before = text[: first.start()]
    before = before[before.rfind(". ") + 2 if ". " in before else 0 :]
    for lang, cue in _NOTICE_CUES:
        if cue.search(before):
            return _read_date(first, lang)
    return None


def notice_date(description: str) -> date | None:
    """The date of the action the description reports, which is its notice's date.

    Read from the opening "On {date}, we …" / "As of …" / "El …" / "A partir del …";
    failing that, the first date in the text only if it is called the notice's date.
    """
    try:
        return _notice_date(_plain(description))
    except _Unreadable:
        return None


def _appointments(text: str) -> Iterator[tuple[str, AppointmentTime]]:
    for lang, what, pattern in _APPOINTMENTS:
        for found in pattern.finditer(text):
            if NOT_AN_APPOINTMENT.search(_sentence(text, found.start(), found.end())):
                continue
            day = _DATE.match(text, found.start("date"))
            assert day is not None  # the same pattern matched there, named instead
            at = _read_time(found["time_after"] or found["time_before"])
            yield what, AppointmentTime(_read_date(day, lang), at)


def _appointment(
    description: str, kinds: frozenset[str] | None
) -> tuple[str, AppointmentTime] | None:
    """The one appointment the text schedules (of `kinds`), or None if none or several."""
    try:
        found = [
            (w, a) for w, a in _appointments(_plain(description)) if kinds is None or w in kinds
        ]
    except _Unreadable:
        return None
    days = {a.on for _, a in found}
    if len(days) != 1:
        return None
    times = {a.at for _, a in found if a.at is not None}
    what = next((w for w, _ in found if w != "appointment"), found[0][0])
    return what, AppointmentTime(days.pop(), times.pop() if len(times) == 1 else None)


def appointment_date(description: str) -> AppointmentTime | None:
    """When the biometrics appointment, interview or oath ceremony the text schedules is.

    Only a date the wording ties to the appointment counts, never the notice date or
    the "If you do not receive … by {date}" date; two different appointment dates give None.
    """
    found = _appointment(description, None)
    return found[1] if found else None


def response_deadline(
    category: str, description: str, *, received_on: date | None = None
) -> Deadline | None:
    """The deadline a status of `category` sets, per DEADLINE_RULES, or None.

    Response deadlines count from the notice date; when the text does not give it, from
    `received_on` (the day casewatch first saw the status), so an RFE never goes untracked.
    """
    rule = DEADLINE_RULES.get(category)
    if rule is None:
        return None
    if rule.counted_from == "appointment":
        found = _appointment(description, rule.appointments)
        if found is None:
            return None
        what, when = found
        clock = f" at {when.at:%H:%M}" if when.at is not None else ""
        return Deadline(rule.kind, when.on, when.at, when.on, f"{what} on {when.on}{clock}")
    sent = notice_date(description)
    if sent is not None:
        due = sent + timedelta(days=rule.days)
        return Deadline(rule.kind, due, None, sent, f"{rule.label} dated {sent} + {rule.days} days")
    if received_on is None:
        return None
    return Deadline(
        rule.kind,
        received_on + timedelta(days=rule.days),
        None,
        received_on,
        f"{rule.label} date not in the description; counted from {received_on}, "
        f"when the status was first seen, + {rule.days} days",
    )
