"""The portal's own words in the ten client languages, and dates written each language's way.

The words are data (portal/data/portal.toml). The file is checked when first read: it
speaks exactly the client languages of the message files, and every language has every
key of English with the same placeholders, so a missing translation is an error the
tests catch, never English on a client's page. How a language writes a date and which
way it reads, and its own name, come from the message files, the one place that says so.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, time
from functools import cache
from importlib import resources

from casewatch.notify.messages import CLIENT_LANGUAGES, DEFAULT_LANGUAGE, languages

PLACEHOLDER = re.compile(r"\{(\w+)\}")


class PortalTextError(Exception):
    """portal.toml breaks its own rules; the message says which language and key."""


@dataclass(frozen=True)
class PortalTexts:
    """One language's words for the portal page, and how it writes dates."""

    code: str
    words: Mapping[str, str]

    @property
    def name(self) -> str:
        """The language in its own words, for the language switcher."""
        return languages()[self.code].name

    @property
    def direction(self) -> str:
        return languages()[self.code].direction

    def say(self, key: str, **values: str) -> str:
        """A sentence with its placeholders filled in (values are text, escaped later)."""
        return self.words[key].format(**values)

    def write_date(self, day: date) -> str:
        language = languages()[self.code]
        values = {
            "day": str(day.day),
            "month": language.months[day.month - 1],
            "year": str(day.year),
        }
        return PLACEHOLDER.sub(lambda m: values[m.group(1)], language.date_format)

    def write_time(self, moment: time) -> str:
        values = {"hour": f"{moment.hour:02d}", "minute": f"{moment.minute:02d}"}
        return PLACEHOLDER.sub(lambda m: values[m.group(1)], languages()[self.code].time_format)

    def when(self, day: date, at: time | None = None) -> str:
        if at is None:
            return self.write_date(day)
        return self.say("when_at", date=self.write_date(day), time=self.write_time(at))


def _check(code: str, table: Mapping[str, object], english: Mapping[str, object]) -> None:
    missing = set(english) - set(table)
    extra = set(table) - set(english)
    if missing or extra:
        raise PortalTextError(
            f"portal.toml [{code}]: missing {sorted(missing)}, unknown {sorted(extra)}"
        )
    for key, value in table.items():
        if not isinstance(value, str) or not value.strip():
            raise PortalTextError(f"portal.toml [{code}] {key}: needs a text")
        wanted = set(PLACEHOLDER.findall(str(english[key])))
        if set(PLACEHOLDER.findall(value)) != wanted:
            raise PortalTextError(
                f"portal.toml [{code}] {key}: placeholders differ from English ({sorted(wanted)})"
            )


@cache
def all_texts() -> Mapping[str, PortalTexts]:
    """Every client language's portal words, checked, in CLIENT_LANGUAGES order."""
    raw = tomllib.loads(
        resources.files("casewatch.portal").joinpath("data/portal.toml").read_text("utf-8")
    )
    if set(raw) != set(CLIENT_LANGUAGES):
        raise PortalTextError(
            f"portal.toml: languages {sorted(raw)}, the client languages are "
            f"{sorted(CLIENT_LANGUAGES)}"
        )
    english = raw[DEFAULT_LANGUAGE]
    found: dict[str, PortalTexts] = {}
    for code in CLIENT_LANGUAGES:
        _check(code, raw[code], english)
        found[code] = PortalTexts(code=code, words={k: str(v) for k, v in raw[code].items()})
    return found


def texts_for(language: str) -> PortalTexts:
    """The portal's words in `language` (one of CLIENT_LANGUAGES)."""
    return all_texts()[language]
