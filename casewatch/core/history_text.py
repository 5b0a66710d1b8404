"""Which canonical status a completed step of hist_case_status stands for.

USCIS words a history entry as the gist of the step's description ("We approved
your Form I-130, Petition for Alien Relative."), not as its title, so the title
classifier alone cannot read it. The phrasings are data (data/history_texts.toml);
this module only cleans a text and matches it. Below certainty the answer is
`unknown`, never a guess.
"""

from __future__ import annotations

import html
import re
import tomllib
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from functools import cache, lru_cache
from importlib import resources

from casewatch.core.statuses import (
    CATEGORIES,
    UNKNOWN,
    CatalogError,
    Classification,
    StatusCatalog,
    clean_title,
    default_catalog,
)

_TAG = re.compile(r"<[^>]*>")
_DASHES = re.compile(r"[\u2010-\u2015\u2212]")
_RECEIPT = re.compile(r"\b[a-z]{3}[ -]?\d{10}\b", re.IGNORECASE)
_RECEIPT_LABEL = re.compile(
    r"\b(?:receipt\s+(?:number|no\b\.?|#)|n[uú]mero\s+de\s+recibo)\s*[:#]?", re.IGNORECASE
)
# A form's long name follows its number after a comma, in title case, with the
# small words of English and Spanish titles between ("Petition for Alien Relative").
_NAME_WORD = r"[A-Z0-9ÁÉÍÓÚÑÜ(][\w()/'’\-]*"
_NAME_LINK = (
    r"(?:of|for|to|and|or|by|as|the|a|an|on|in|into|after|with|from|under|de|del|la|el|"
    r"los|las|un|una|y|o|e|u|para|por|en|al|con|como|sin|sobre)"
)
_FORM_NAME = (
    rf"\s*,\s+{_NAME_WORD}"
    rf"(?:(?:\s+(?:{_NAME_LINK}\s+)*|\s*,\s+(?:(?:or|and|o|y)\s+)?){_NAME_WORD})*"
)
_FORM = re.compile(
    r"\b(?:(?i:form|formulario)\s+(?P<id>[A-Za-z]{1,4}[ -]?\d{1,4}[A-Za-z]{0,4})"
    r"|(?P<bare>[A-Z]{1,4}-\d{1,4}[A-Z]{0,4}))\b"
    rf"(?P<name>{_FORM_NAME})?"
)
# A sentence ends at a period after a lower-case word ("U.S. Citizenship" goes on).
_SENTENCE_END = re.compile(r"(?<=[a-z0-9)áéíóúñü]{2})\.\s+(?=[A-ZÁÉÍÓÚÑ¿¡])")
_FORM_MARK = "formref"
_FORM_END = "formend"
_PIECE = re.compile(r"\{[^}]*\}|\S+")
_ANY_WORDS = r"(?:\S+ )*?"
_FORM_NAME_WORDS = rf"(?:\S+ )*?{_FORM_END} "
_SKIP_FORM_END = rf"(?:{_FORM_END} )?"


class PhrasebookError(CatalogError):
    """history_texts.toml breaks its own rules; raised at load time, never later."""


@dataclass(frozen=True)
class Phrasing:
    """One compiled pattern: the status it means and how specific it is."""

    status: str
    source: str
    regex: re.Pattern[str]
    weight: int


@dataclass(frozen=True)
class Phrasebook:
    """Every known phrasing of history entries, with the openings to skip."""

    phrasings: tuple[Phrasing, ...]
    date_lead_ins: tuple[re.Pattern[str], ...]
    title_lead_ins: tuple[re.Pattern[str], ...]
    confidence: float
    months: tuple[str, ...] = ()
    # Numbers that patterns spell out as words: a text's numbers matter when they are these.
    numbers: frozenset[str] = frozenset()

    def normalize(self, text: str) -> str:
        """The first sentence as patterns see it: forms bracketed, no receipts, no date."""
        sentence = _SENTENCE_END.split(_without_receipts(_plain(text)), maxsplit=1)[0]
        cleaned = clean_title(_mask_forms(sentence))
        for lead_in in self.date_lead_ins:
            cleaned = lead_in.sub("", f"{cleaned} ", count=1).strip()
        return cleaned

    def match(self, text: str) -> str | None:
        """The status whose most specific phrasing starts the text, if exactly one does."""
        subject = f"{self.normalize(text)} "
        best_weight, winners = -1, set[str]()
        for phrasing in self.phrasings:
            if phrasing.weight < best_weight or not phrasing.regex.match(subject):
                continue
            if phrasing.weight > best_weight:
                best_weight, winners = phrasing.weight, set()
            winners.add(phrasing.status)
        return winners.pop() if len(winners) == 1 else None

    def title_after_lead_in(self, text: str) -> str | None:
        """The title in "The status of your Form … changed to: <title>", if the text is that."""
        before, colon, after = _plain(text).partition(":")
        if not colon or not after.strip():
            return None
        opening = f"{self.normalize(before)} "
        if any(lead_in.fullmatch(opening) for lead_in in self.title_lead_ins):
            return after.strip()
        return None


def _plain(text: str) -> str:
    """Markup and entities out, one kind of dash, so regular expressions see plain prose."""
    previous = None
    while previous != text:  # entities may be escaped twice ("&amp;#39;")
        previous, text = text, html.unescape(text)
    text = unicodedata.normalize("NFKC", _TAG.sub(" ", text))
    return _DASHES.sub("-", text)


def _without_receipts(text: str) -> str:
    """Receipt numbers say which case, never which status: drop them and their label."""
    return _RECEIPT_LABEL.sub(" ", _RECEIPT.sub(" ", text))


def _form_key(form_id: str) -> str:
    return _FORM_MARK + re.sub(r"[^a-z0-9]", "", form_id.casefold())


def _mask_forms(text: str) -> str:
    """Bracket each form and its long name with tokens, so that `{form}` takes the
    whole name ("Form I-131, Application for Travel Document") as one mention.

    The name's words stay in the text: where the title-case guess runs too long
    ("… Extranjero a la Oficina Ejecutiva …"), a pattern can still read them.
    """
    return _FORM.sub(
        lambda m: f" {_form_key(m['id'] or m['bare'])} {m['name'] or ''} {_FORM_END} ", text
    )


def _compile(pattern: str, months: str) -> tuple[str, int]:
    """A pattern as a regular expression over normalized text, and its specificity."""
    parts: list[str] = []
    weight = 0
    for piece in _PIECE.findall(pattern):
        if piece == "*":
            parts.append(_ANY_WORDS)
        elif piece == "$":
            parts.append("$")
        elif piece == "{date}":
            parts.append(
                rf"(?:(?:{months}) \d{{1,2}} \d{{4}}|\d{{1,2}} de (?:{months}) de \d{{4}}"
                r"|\d{4} \d{1,2} \d{1,2}|\d{1,2} \d{1,2} \d{4}) "
            )
        elif piece == "{form}":
            parts.append(rf"{_FORM_MARK}[a-z0-9]+ {_FORM_NAME_WORDS}")
            weight += 1
        elif piece.startswith("{form ") and piece.endswith("}"):
            parts.append(re.escape(_form_key(piece[6:-1])) + " " + _FORM_NAME_WORDS)
            weight += 2
        elif piece.startswith("{"):
            raise PhrasebookError(f"unknown placeholder {piece} in {pattern!r}")
        else:
            words = [clean_title(choice) for choice in piece.split("|")]
            if not any(words):
                continue  # punctuation: texts are compared without it
            if not all(words):
                raise PhrasebookError(f"empty choice in {piece!r} of {pattern!r}")
            parts.append(_SKIP_FORM_END + "(?:" + "|".join(re.escape(w) for w in words) + ") ")
            weight += 1
    if not weight:
        raise PhrasebookError(f"pattern {pattern!r} has no words")
    return "^" + "".join(parts), weight


def _literal_numbers(patterns: Iterable[str]) -> set[str]:
    """The numbers that patterns name word for word (not inside a placeholder)."""
    found: set[str] = set()
    for pattern in patterns:
        for piece in _PIECE.findall(pattern):
            if not piece.startswith("{"):
                words = (w for choice in piece.split("|") for w in clean_title(choice).split())
                found.update(w for w in words if w.isdigit())
    return found


def _strings(value: object, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise PhrasebookError(f"{where} must be a list of non-empty strings")
    return list(value)


def _table(value: object, where: str) -> Mapping[str, object]:
    if not isinstance(value, dict):
        raise PhrasebookError(f"{where} must be a table")
    return value


def _phrasings(
    statuses: Mapping[str, object], catalog: StatusCatalog, months: str
) -> Iterable[Phrasing]:
    owner: dict[str, str] = {}
    for key, entry in statuses.items():
        if key not in catalog.statuses:
            raise PhrasebookError(f"history phrasings for unknown status {key!r}")
        table = _table(entry, f"status.{key}")
        for lang in ("en", "es"):
            for pattern in _strings(table.get(lang, []), f"status.{key}.{lang}"):
                regex, weight = _compile(pattern, months)
                if owner.setdefault(regex, key) != key:
                    raise PhrasebookError(f"{pattern!r} belongs to {owner[regex]!r} and {key!r}")
                yield Phrasing(key, pattern, re.compile(regex), weight)


def load_phrasebook(data: Mapping[str, object], catalog: StatusCatalog) -> Phrasebook:
    """Check and compile history_texts.toml against the status catalog."""
    lead_ins = _table(data.get("lead_ins", {}), "lead_ins")
    month_names = tuple(clean_title(m) for m in _strings(lead_ins.get("months", []), "months"))
    months = "|".join(month_names)
    confidence = data.get("confidence", 0.95)
    if not isinstance(confidence, float | int) or not catalog.threshold <= confidence <= 1:
        raise PhrasebookError("confidence must be between the catalog's threshold and 1")

    def lead_in_regexes(name: str, suffix: str) -> tuple[re.Pattern[str], ...]:
        patterns = _strings(lead_ins.get(name, []), f"lead_ins.{name}")
        return tuple(re.compile(_compile(p, months)[0] + suffix) for p in patterns)

    phrasings = tuple(_phrasings(_table(data.get("status", {}), "status"), catalog, months))
    lead_in_patterns = [
        pattern
        for name in ("date", "title")
        for pattern in _strings(lead_ins.get(name, []), f"lead_ins.{name}")
    ]
    return Phrasebook(
        phrasings=phrasings,
        date_lead_ins=lead_in_regexes("date", ""),
        title_lead_ins=lead_in_regexes("title", "$"),
        confidence=float(confidence),
        months=month_names,
        numbers=frozenset(_literal_numbers([p.source for p in phrasings] + lead_in_patterns)),
    )


@cache
def default_phrasebook() -> Phrasebook:
    """The phrasings shipped with casewatch, loaded once per process."""
    path = resources.files("casewatch.core").joinpath("data", "history_texts.toml")
    with path.open("rb") as handle:
        return load_phrasebook(tomllib.load(handle), default_catalog())


def _known(text: str, key: str, confidence: float) -> Classification:
    status = default_catalog().get(key)
    return Classification(
        input=text,
        status=status.key,
        category=status.category,
        urgency=status.urgency,
        confidence=confidence,
        title_en=status.title_en,
        title_es=status.title_es,
    )


def _unknown(text: str, confidence: float) -> Classification:
    return Classification(
        input=text,
        status=UNKNOWN,
        category=UNKNOWN,
        urgency=CATEGORIES[UNKNOWN],
        confidence=confidence,
    )


def _classify_one(text: str) -> Classification:
    """One language's text: a verbatim title, a "changed to: <title>" line, a known
    phrasing, or a reworded title, in that order of certainty."""
    catalog, book = default_catalog(), default_phrasebook()
    if catalog.by_title(text) is not None:
        return catalog.classify(text)
    title = book.title_after_lead_in(text)
    if title is not None:
        found = catalog.classify(title)
        if found.is_unknown:
            return _unknown(text, found.confidence)
        return _known(text, found.status, found.confidence)
    key = book.match(text)
    if key is not None:
        return _known(text, key, book.confidence)
    return catalog.classify(text)


# Classifications by the template of their texts (`history_template`), at most this many.
TEMPLATE_MEMO_SIZE = 20_000
# Each with the text its `input` came from: 0 the English one, 1 the Spanish one.
_by_template: dict[tuple[tuple[bool, str], tuple[bool, str]], tuple[Classification, int]] = {}
# Before a date, "form" would make its month and day read as a form's number ("Form May 15").
_FORM_BEFORE = re.compile(r"(?i:\b(?:form|formulario))\s+$")
_DIGITS = re.compile(r"[0-9]+")


@cache
def _dates() -> re.Pattern[str]:
    """A date as USCIS writes one ("May 15, 2026", "15 de Mayo de 2026"), month in any case."""
    months = "|".join(re.escape(m) for m in default_phrasebook().months)
    edge = r"(?<![^\s(])"  # starts the text, or follows a space or "(": never "&#" or "I-"
    end = r"(?![\w-])"
    return re.compile(
        rf"{edge}(?i:{months}) (?P<day>[0-9]{{1,2}}), (?P<year>[0-9]{{4}}){end}"
        rf"|{edge}(?P<day_es>[0-9]{{1,2}}) de (?i:{months}) de (?P<year_es>[0-9]{{4}}){end}"
    )


@cache
def _known_numbers() -> frozenset[str]:
    return default_catalog().known_numbers | default_phrasebook().numbers


def history_template(text: str) -> tuple[bool, str]:
    """The text with the day and year of its dates made anonymous, where that cannot matter.

    Two texts with the same template are classified alike (but for `input`): the
    readers see a date's day and year only as numbers of so many digits, unknown to
    the catalog and the phrasebook, equal or not to the text's other numbers. So a
    date is left as it is when its numbers are known ones or occur elsewhere in the
    text, when it follows "Form", or when markup, entities or Unicode compatibility
    forms could change what the readers see. Months stay (misspelt words are
    corrected by likeness, and month names are no known words). (True, template),
    or (False, text) when nothing was made anonymous.
    """
    if not any(c.isdigit() for c in text) or "&" in text or "<" in text or "\x00" in text:
        return False, text
    if not text.isascii() and unicodedata.normalize("NFKC", text) != text:
        return False, text
    spans: list[tuple[int, int]] = []
    for found in _dates().finditer(text):
        if _FORM_BEFORE.search(text, 0, found.start()):
            continue
        for group in ("day", "year", "day_es", "year_es"):
            if found.start(group) >= 0:
                spans.append(found.span(group))
    if not spans:
        return False, text
    known = _known_numbers()
    hidden = set(spans)
    elsewhere = {m.group() for m in _DIGITS.finditer(text) if m.span() not in hidden}
    names: dict[str, str] = {}
    pieces: list[str] = []
    at = 0
    for start, end in spans:
        number = text[start:end]
        if number in known or number in elsewhere:
            continue
        name = names.setdefault(number, f"\x00{len(number)}.{len(names)}\x00")
        pieces += [text[at:start], name]
        at = end
    if not names:
        return False, text
    pieces.append(text[at:])
    return True, "".join(pieces)


def clear_history_cache() -> None:
    """Forget every classification remembered (tests compare against fresh answers)."""
    classify_history.cache_clear()
    _by_template.clear()


@lru_cache(maxsize=20_000)
def classify_history(text_en: str, text_es: str = "") -> Classification:
    """Map a hist_case_status entry (completed_text_en, completed_text_es) to a canonical status.

    Either text may be empty. When both are read and disagree, the answer is
    `unknown`: a person must look rather than trust one side. Answers are
    remembered by the texts' templates: a date in a history text makes nearly
    every text new, though it never changes what the text says.
    """
    key = (history_template(text_en), history_template(text_es))
    remembered = _by_template.get(key)
    if remembered is None:
        found = _classify_pair(text_en, text_es)
        if len(_by_template) >= TEMPLATE_MEMO_SIZE:
            _by_template.clear()
        _by_template[key] = (found, 0 if found.input == text_en else 1)
        return found
    found, side = remembered
    shown = (text_en, text_es)[side]
    return found if found.input == shown else replace(found, input=shown)


def _classify_pair(text_en: str, text_es: str) -> Classification:
    results = [_classify_one(text) for text in (text_en, text_es) if text.strip()]
    if not results:
        return _unknown(text_en, 0.0)
    known = [result for result in results if not result.is_unknown]
    if not known:
        return _unknown(results[0].input, max(result.confidence for result in results))
    if len({result.status for result in known}) > 1:
        return _unknown(results[0].input, 0.0)
    return known[0]
