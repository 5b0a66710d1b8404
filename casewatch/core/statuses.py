"""The status catalog and the normalizer that maps any USCIS title onto it.

The catalog (data/statuses.toml) lists canonical statuses with their English
and Spanish wordings; the lexicon (data/lexicon.toml) says which words mean the
same thing. A title is matched exactly after cleaning, and otherwise by the
concepts it names, weighted by how rare each concept is in the catalog, so that
a rewording or a Spanish title lands on the status it means. Below the
catalog's threshold the answer is `unknown`, never a guess.
"""

from __future__ import annotations

import html
import math
import re
import tomllib
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources

from rapidfuzz import fuzz, process

# Category → default urgency, exactly as spec/status-categories.md defines them.
CATEGORIES: Mapping[str, str] = {
    "received": "progress",
    "biometrics": "progress",
    "in_review": "progress",
    "evidence_requested": "action",
    "evidence_received": "progress",
    "intent_to_deny": "action",
    "interview_scheduled": "action",
    "interview_completed": "progress",
    "transferred": "action",
    "approved": "progress",
    "document_production": "progress",
    "document_mailed": "progress",
    "document_delivered": "progress",
    "returned_mail": "action",
    "denied": "action",
    "rejected": "action",
    "revoked": "action",
    "withdrawn": "progress",
    "closed": "progress",
    "appeal": "action",
    "on_hold": "progress",
    "admin": "info",
    "unknown": "review",
}
URGENCIES = ("action", "progress", "info", "review")
UNKNOWN = "unknown"

_TAG = re.compile(r"<[^>]*>")
_APOSTROPHES = re.compile(r"[‘’‛′`´ʼ]")
_NOT_WORD = re.compile(r"[^a-z0-9]+")
_FUZZY_CUTOFF = 85.0


class CatalogError(Exception):
    """The catalog data file breaks its own rules; raised at load time, never later."""


@dataclass(frozen=True)
class Status:
    """One canonical USCIS status: what it is called and what it means for the firm."""

    key: str
    title_en: str
    title_es: str
    category: str
    urgency: str
    final: bool
    aliases_en: tuple[str, ...] = ()
    aliases_es: tuple[str, ...] = ()

    @property
    def wordings(self) -> tuple[str, ...]:
        return (self.title_en, self.title_es, *self.aliases_en, *self.aliases_es)


@dataclass(frozen=True)
class Classification:
    """What the normalizer made of one title."""

    input: str
    status: str
    category: str
    urgency: str
    confidence: float
    title_en: str | None = None
    title_es: str | None = None

    @property
    def is_unknown(self) -> bool:
        return self.category == UNKNOWN

    def as_dict(self) -> dict[str, object]:
        return {
            "input": self.input,
            "status": self.status,
            "category": self.category,
            "urgency": self.urgency,
            "confidence": self.confidence,
        }


def clean_title(text: str) -> str:
    """The form titles are compared in: no markup, case, accents, punctuation or apostrophes."""
    previous = None
    while previous != text:  # entities may be escaped twice ("&amp;#39;")
        previous, text = text, html.unescape(text)
    text = _TAG.sub(" ", text)
    text = unicodedata.normalize("NFKC", text)
    text = _APOSTROPHES.sub("'", text).replace("'", "")
    text = "".join(
        ch for ch in unicodedata.normalize("NFD", text) if unicodedata.category(ch) != "Mn"
    )
    return " ".join(_NOT_WORD.sub(" ", text.casefold()).split())


def _stem(word: str) -> str:
    for suffix in ("ing", "ed", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 4:
            return word[: -len(suffix)]
    return word


@dataclass(frozen=True)
class Lexicon:
    """Which words and phrases mean the same concept, and which mean nothing."""

    stopwords: frozenset[str]
    phrases: tuple[tuple[str, str], ...]  # (phrase, concept), longest phrase first
    words: Mapping[str, str]

    @classmethod
    def from_toml(cls, data: Mapping[str, object]) -> Lexicon:
        stopwords = frozenset(_strings(data.get("stopwords", []), "stopwords"))
        phrases: list[tuple[str, str]] = []
        for concept, items in _table(data.get("phrases", {}), "phrases").items():
            phrases += [(clean_title(p), concept) for p in _strings(items, f"phrases.{concept}")]
        phrases.sort(key=lambda pair: (-len(pair[0].split()), pair[0]))
        words: dict[str, str] = {}
        for concept, items in _table(data.get("concepts", {}), "concepts").items():
            for word in _strings(items, f"concepts.{concept}"):
                cleaned = clean_title(word)
                if cleaned in words and words[cleaned] != concept:
                    raise CatalogError(f"lexicon word {word!r} is in two concepts")
                words[cleaned] = concept
        return cls(stopwords=stopwords, phrases=tuple(phrases), words=words)

    def concepts(self, cleaned: str) -> list[str]:
        """The concepts a cleaned title names, in order; unknown words are stemmed."""
        padded = f" {cleaned} "
        for phrase, concept in self.phrases:
            if f" {phrase} " in padded:
                padded = padded.replace(f" {phrase} ", f" \x00{concept} ")
        found: list[str] = []
        for token in padded.split():
            if token.startswith("\x00"):
                found.append(token[1:])
            elif token in self.words:
                found.append(self.words[token])
            elif token not in self.stopwords:
                found.append(_stem(token))
        return found


def _strings(value: object, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise CatalogError(f"{where} must be a list of strings")
    return list(value)


def _table(value: object, where: str) -> dict[str, object]:
    if not isinstance(value, dict):
        raise CatalogError(f"{where} must be a table")
    return value


MEMO_SIZE = 20_000


class StatusCatalog:
    """Canonical statuses, indexed for exact and by-meaning lookup."""

    def __init__(self, statuses: Iterable[Status], lexicon: Lexicon, threshold: float) -> None:
        self.statuses: dict[str, Status] = {}
        self.lexicon = lexicon
        self.threshold = threshold
        self._exact: dict[str, Status] = {}
        self._by_concepts: list[tuple[frozenset[str], Status]] = []
        for status in statuses:
            if status.key in self.statuses:
                raise CatalogError(f"status key {status.key!r} appears twice")
            self.statuses[status.key] = status
            for wording in status.wordings:
                cleaned = clean_title(wording)
                other = self._exact.get(cleaned)
                if other is not None and other.key != status.key:
                    raise CatalogError(
                        f"wording {wording!r} belongs to both {other.key!r} and {status.key!r}"
                    )
                self._exact[cleaned] = status
                concepts = frozenset(lexicon.concepts(cleaned))
                if concepts:
                    self._by_concepts.append((concepts, status))
        document_frequency: dict[str, int] = {}
        for status in self.statuses.values():
            seen: set[str] = set()
            for concepts, owner in self._by_concepts:
                if owner is status:
                    seen |= concepts
            for concept in seen:
                document_frequency[concept] = document_frequency.get(concept, 0) + 1
        total = len(self.statuses)
        self._weights = {
            concept: 1.0 + math.log((total + 1) / (count + 1))
            for concept, count in document_frequency.items()
        }
        self._unseen_weight = 1.0 + math.log(total + 1)
        self._known_words = sorted(
            set(lexicon.words)
            | lexicon.stopwords
            | {word for phrase, _ in lexicon.phrases for word in phrase.split()}
            | {word for wording in self._exact for word in wording.split()}
        )
        self._known_set = frozenset(self._known_words)
        # Numbers that can change an answer: a text's other numbers are words nobody knows.
        self.known_numbers = frozenset(
            token
            for token in self._known_set
            | {concept for concepts, _ in self._by_concepts for concept in concepts}
            | set(lexicon.words.values())
            | {concept for _, concept in lexicon.phrases}
            if token.isdigit()
        )
        self._memo: dict[str, Classification] = {}

    def get(self, key: str) -> Status:
        return self.statuses[key]

    def by_title(self, title: str) -> Status | None:
        """The status whose wording is exactly `title` after cleaning, if any."""
        return self._exact.get(clean_title(title))

    def _weight(self, concept: str) -> float:
        return self._weights.get(concept, self._unseen_weight)

    def _correct_spelling(self, cleaned: str) -> tuple[str, float]:
        """Replace misspelt words by the known word they are closest to.

        Returns the corrected text and the lowest similarity of any replacement,
        which discounts the confidence: a guessed spelling is less certain.
        """
        words: list[str] = []
        certainty = 1.0
        for word in cleaned.split():
            if word in self._known_set or len(word) < 4 or word.isdigit():
                words.append(word)
                continue
            match = process.extractOne(
                word, self._known_words, scorer=fuzz.ratio, score_cutoff=_FUZZY_CUTOFF
            )
            if match is None:
                words.append(word)
            else:
                words.append(match[0])
                certainty = min(certainty, match[1] / 100.0)
        return " ".join(words), certainty

    def _score(self, query: frozenset[str], candidate: frozenset[str]) -> float:
        shared = sum(self._weight(c) for c in candidate & query)
        total = sum(self._weight(c) for c in query) + sum(self._weight(c) for c in candidate)
        return 2.0 * shared / total if total else 0.0

    def classify(self, text: str) -> Classification:
        """Classify `text`; answers are remembered, since the same titles come back all day."""
        found = self._memo.get(text)
        if found is None:
            if len(self._memo) >= MEMO_SIZE:
                self._memo.clear()
            found = self._memo[text] = self._classify(text)
        return found

    def _classify(self, text: str) -> Classification:
        cleaned = clean_title(text)
        exact = self._exact.get(cleaned)
        if exact is not None:
            return self._result(text, exact, 1.0)
        corrected, certainty = self._correct_spelling(cleaned)
        exact = self._exact.get(corrected)
        if exact is not None and certainty >= self.threshold:
            return self._result(text, exact, round(certainty, 3))
        query = frozenset(self.lexicon.concepts(corrected))
        best: Status | None = None
        best_score = 0.0
        for candidate, status in self._by_concepts:
            score = self._score(query, candidate)
            if score > best_score:
                best, best_score = status, score
        confidence = round(best_score * certainty, 3)
        if best is None or confidence < self.threshold:
            return Classification(
                input=text,
                status=UNKNOWN,
                category=UNKNOWN,
                urgency=CATEGORIES[UNKNOWN],
                confidence=confidence,
            )
        return self._result(text, best, confidence)

    @staticmethod
    def _result(text: str, status: Status, confidence: float) -> Classification:
        return Classification(
            input=text,
            status=status.key,
            category=status.category,
            urgency=status.urgency,
            confidence=confidence,
            title_en=status.title_en,
            title_es=status.title_es,
        )


def _load_status(entry: Mapping[str, object]) -> Status:
    key = entry.get("key")
    if not isinstance(key, str) or not key:
        raise CatalogError(f"a status has no key: {entry!r}")
    category = entry.get("category")
    if category not in CATEGORIES:
        raise CatalogError(f"status {key!r} has unknown category {category!r}")
    assert isinstance(category, str)
    urgency = entry.get("urgency", CATEGORIES[category])
    if urgency not in URGENCIES:
        raise CatalogError(f"status {key!r} has unknown urgency {urgency!r}")
    assert isinstance(urgency, str)
    title_en, title_es = entry.get("title_en"), entry.get("title_es")
    if not isinstance(title_en, str) or not isinstance(title_es, str):
        raise CatalogError(f"status {key!r} needs title_en and title_es")
    return Status(
        key=key,
        title_en=title_en.strip(),
        title_es=title_es.strip(),
        category=category,
        urgency=urgency,
        final=bool(entry.get("final", False)),
        aliases_en=tuple(a.strip() for a in _strings(entry.get("aliases_en", []), key)),
        aliases_es=tuple(a.strip() for a in _strings(entry.get("aliases_es", []), key)),
    )


def _read_data(name: str) -> dict[str, object]:
    with resources.files("casewatch.core").joinpath("data", name).open("rb") as handle:
        return tomllib.load(handle)


@cache
def default_catalog() -> StatusCatalog:
    """The catalog shipped with casewatch, loaded once per process."""
    data = _read_data("statuses.toml")
    lexicon = Lexicon.from_toml(_read_data("lexicon.toml"))
    entries = data.get("status", [])
    if not isinstance(entries, list):
        raise CatalogError("statuses.toml must hold [[status]] tables")
    threshold = data.get("threshold", 0.8)
    if not isinstance(threshold, float | int) or not 0 < threshold <= 1:
        raise CatalogError("threshold must be a number in (0, 1]")
    return StatusCatalog((_load_status(e) for e in entries), lexicon, float(threshold))


def classify(text: str) -> Classification:
    """Map one USCIS title (English or Spanish, any wording) to a canonical status."""
    return default_catalog().classify(text)
