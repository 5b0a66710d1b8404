"""Every text casewatch sends, as data, and the one function that renders it.

The texts live in data/messages/<language>.toml (one file per language, so a
translator edits one file) and data/messages/whatsapp.toml (the WhatsApp
templates a firm registers with Meta). A notification stores only a message key
and its parameters; `render` turns them into the subject, plain text, HTML and
WhatsApp template parameters in the recipient's language when it is sent.

Clients hear about status changes in ten languages, in plain words: the text of
the canonical status when it has its own, else its category's. Staff hear about
everything in English or Spanish, with the next step. No text carries a client's
name, address or A-number: the receipt number is the only identifier.

`python -m casewatch.notify.messages` rewrites docs/whatsapp-templates.md from
the data; a test fails while the two disagree.
"""

from __future__ import annotations

import re
import sys
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from django.utils import translation
from django.utils.html import escape, format_html

from casewatch.core.staff_guidance import default_guidance
from casewatch.core.statuses import CATEGORIES, UNKNOWN, default_catalog
from casewatch.notify.channels.base import Rendered

CLIENT_LANGUAGES: tuple[str, ...] = ("en", "es", "pt", "zh", "vi", "hi", "ar", "ht", "fr", "tl")
STAFF_LANGUAGES: tuple[str, ...] = ("en", "es")
DEFAULT_LANGUAGE = "en"

Audience = Literal["client", "staff"]

# The message kinds (notify.models.MessageKind values) and the values each may carry.
# Values a text may name besides these are worked out here (labels, dates, guidance).
STAFF_PARAMS: Mapping[str, tuple[str, ...]] = {
    "status_change": (
        "receipt",
        "form_type",
        "status",
        "category",
        "urgency",
        "uscis_title",
        "due_on",
        "case_url",
        "client_reference",
    ),
    "uscis_outage": ("since", "message"),
    "uscis_recovered": ("since", "message"),
    "receipt_pending": ("reference", "days", "case_url"),
    "escalation": ("receipt", "uscis_title", "hours", "case_url"),
    "card_delivery_check": ("receipt", "days", "case_url"),
    "digest": ("count", "changes", "dashboard_url"),
    "client_reply": ("receipt", "channel", "case_url"),
    "delivery_problem": ("receipt", "channel", "error"),
    # For the firm's webhook endpoints only (their "text"); never alerted to a person.
    "deadline_created": ("receipt", "due_on", "case_url"),
    "notification_delivered": ("receipt", "channel"),
    "notification_failed": ("receipt", "channel", "error"),
    "webhook_test": (),
}
CLIENT_PARAMS: Mapping[str, tuple[str, ...]] = {
    "status_change": (
        "receipt",
        "form_type",
        "status",
        "category",
        "firm_name",
        "portal_url",
        "due_on",
        "uscis_title",
    ),
}
# Values computed for staff texts, on top of the caller's.
_STAFF_DERIVED = ("urgency_label", "category_label", "channel_label", "meaning", "next_step")
# What a client status text may name, and what the frame around it may name.
_ENTRY_FIELDS = ("title", "happened", "next", "due", "answer")
_ENTRY_REQUIRED = ("title", "happened", "next", "answer")
_FRAME_PLACES: Mapping[str, tuple[str, ...]] = {
    "firm_name": (),
    "subject": ("title", "receipt", "form_type"),
    "body": ("firm_name", "receipt", "happened", "next"),
    "opt_out": (),
    "due": ("due_on",),
    "portal": ("portal_url",),
    "test_data": (),
    "faq_question": ("title",),
}
# A message parameter (set by the router for an event whose source is the sandbox) that
# makes every form of the message say first that the data is not from USCIS.
TEST_DATA = "test_data"
_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")
_STRAY_BRACE = re.compile(r"[{}]")


class MessagesError(Exception):
    """A message file breaks its own rules; raised when the texts are loaded."""


@dataclass(frozen=True)
class FaqAnswer:
    """A client's question about a status, and a short answer in plain words."""

    question: str
    answer: str


@dataclass(frozen=True)
class Explanation:
    """What a status means for the client: a short title, what happened, what comes next."""

    title: str
    happened: str
    next_step: str


@dataclass(frozen=True)
class WhatsAppTemplate:
    """One template a firm registers with Meta, with a translation per language.

    `bodies`, `footers` and `samples` are keyed by Meta's language code; `languages`
    says which Meta code each casewatch language is sent in (Haitian Creole has none
    at Meta, so it is sent in its fallback). Placeholders are {{1}}, {{2}}… in the
    order of `params`.
    """

    kind: str
    name: str
    category: str
    params: tuple[str, ...]
    bodies: Mapping[str, str]
    footers: Mapping[str, str]
    samples: Mapping[str, tuple[str, ...]]
    languages: Mapping[str, str]


@dataclass(frozen=True)
class Language:
    """One language file, checked."""

    code: str
    name: str
    aliases: tuple[str, ...]
    direction: str
    whatsapp_code: str
    whatsapp_fallback: str
    months: tuple[str, ...]
    date_format: str
    time_format: str
    client: Mapping[str, Any]
    categories: Mapping[str, Mapping[str, str]]
    statuses: Mapping[str, Mapping[str, str]]
    staff: Mapping[str, Any] | None


# ------------------------------------------------------------------ loading


def _read(name: str) -> dict[str, Any]:
    path = resources.files("casewatch.notify").joinpath("data", "messages", name)
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError as exc:
        raise MessagesError(f"message file {name} is missing") from exc
    except tomllib.TOMLDecodeError as exc:
        raise MessagesError(f"message file {name} is not valid TOML: {exc}") from exc


def _check_text(value: object, where: str, allowed: Iterable[str]) -> None:
    """A text (or list of alternative wordings) names only values it may name."""
    given = value if isinstance(value, list) else [value]
    wordings = [w for w in given if isinstance(w, str) and w.strip()]
    if not wordings or len(wordings) != len(given):
        raise MessagesError(f"{where}: needs non-empty text (or a list of wordings)")
    allowed = set(allowed)
    for wording in wordings:
        for name in _PLACEHOLDER.findall(wording):
            if name not in allowed:
                raise MessagesError(
                    f"{where}: {{{name}}} is not a value this text can use "
                    f"(it can use {', '.join(sorted(allowed)) or 'none'})"
                )
        if _STRAY_BRACE.search(_PLACEHOLDER.sub("", wording)):
            raise MessagesError(f"{where}: a brace that is not a {{value}}: {wording!r}")


def _table(value: object, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise MessagesError(f"{where} must be a table")
    return value


def _entries(value: object, where: str, known: Iterable[str]) -> dict[str, dict[str, str]]:
    known = set(known)
    entries: dict[str, dict[str, str]] = {}
    for key, entry in _table(value, where).items():
        if key not in known:
            raise MessagesError(f"{where}.{key}: not a known key")
        entry = _table(entry, f"{where}.{key}")
        extra = set(entry) - set(_ENTRY_FIELDS)
        if extra:
            raise MessagesError(f"{where}.{key}: unknown fields {sorted(extra)}")
        for field, text in entry.items():
            _check_text(text, f"{where}.{key}.{field}", ("due_on",) if field == "due" else ())
        entries[key] = entry
    return entries


def _load_language(code: str) -> Language:
    data = _read(f"{code}.toml")
    where = f"{code}.toml"
    if data.get("code") != code:
        raise MessagesError(f"{where}: code must be {code!r}")
    dates = _table(data.get("dates"), f"{where} [dates]")
    months = dates.get("months")
    if not isinstance(months, list) or len(months) != 12:
        raise MessagesError(f"{where} [dates]: months must list twelve names")
    _check_text(dates.get("date"), f"{where} dates.date", ("day", "month", "year"))
    _check_text(dates.get("time"), f"{where} dates.time", ("hour", "minute"))
    client = _table(data.get("client"), f"{where} [client]")
    for field, places in _FRAME_PLACES.items():
        _check_text(client.get(field), f"{where} client.{field}", places)
    if len(client["opt_out"]) > 60:
        raise MessagesError(
            f"{where} client.opt_out: a WhatsApp footer holds 60 characters at most"
        )
    if not isinstance(client["body"], str):
        raise MessagesError(f"{where} client.body: one text, not a list of wordings")
    catalog = default_catalog()
    categories = _entries(client.get("category", {}), f"{where} client.category", CATEGORIES)
    statuses = _entries(client.get("status", {}), f"{where} client.status", catalog.statuses)
    staff = data.get("staff")
    if staff is not None:
        _check_staff(_table(staff, f"{where} [staff]"), where)
    aliases = data.get("aliases", [])
    if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
        raise MessagesError(f"{where}: aliases must be a list of strings")
    direction = data.get("direction", "ltr")
    if direction not in ("ltr", "rtl"):
        raise MessagesError(f"{where}: direction must be ltr or rtl")
    return Language(
        code=code,
        name=str(data.get("name", code)),
        aliases=tuple(_normalize(a) for a in aliases),
        direction=direction,
        whatsapp_code=str(data.get("whatsapp_code", "")),
        whatsapp_fallback=str(data.get("whatsapp_fallback", "")),
        months=tuple(map(str, months)),
        date_format=dates["date"],
        time_format=dates["time"],
        client=client,
        categories=categories,
        statuses=statuses,
        staff=staff,
    )


def _check_staff(staff: Mapping[str, Any], where: str) -> None:
    _check_text(staff.get(TEST_DATA), f"{where} staff.{TEST_DATA}", ())
    for group, codes in (
        ("categories", CATEGORIES),
        ("urgencies", ("action", "progress", "info", "review")),
        ("channels", ("whatsapp", "sms", "email", "in_app", "webhook")),
    ):
        labels = _table(staff.get(group), f"{where} staff.{group}")
        for code in codes:
            _check_text(labels.get(code), f"{where} staff.{group}.{code}", ())
    for kind, params in STAFF_PARAMS.items():
        message = _table(staff.get(kind), f"{where} staff.{kind}")
        allowed = (*params, *_STAFF_DERIVED)
        _check_text(message.get("subject"), f"{where} staff.{kind}.subject", allowed)
        lines = message.get("lines")
        if not isinstance(lines, list) or not lines:
            raise MessagesError(f"{where} staff.{kind}.lines must list the lines")
        for n, line in enumerate(lines, start=1):
            _check_text(line, f"{where} staff.{kind}.lines[{n}]", allowed)
        if kind == "digest":
            _check_text(
                message.get("change"), f"{where} staff.digest.change", ("receipt", "uscis_title")
            )
            _check_text(message.get("more"), f"{where} staff.digest.more", ("count",))


@cache
def languages() -> Mapping[str, Language]:
    """Every client language's file, loaded and checked once per process."""
    return {code: _load_language(code) for code in CLIENT_LANGUAGES}


@cache
def _whatsapp_data() -> dict[str, Any]:
    data = _read("whatsapp.toml")
    templates = _table(data.get("template"), "whatsapp.toml [template]")
    for kind, entry in templates.items():
        entry = _table(entry, f"whatsapp.toml template.{kind}")
        if kind not in CLIENT_PARAMS:
            raise MessagesError(f"whatsapp.toml: {kind!r} is not a client message kind")
        if entry.get("category") != "UTILITY":
            raise MessagesError(f"whatsapp.toml template.{kind}: category must be UTILITY")
        if not re.fullmatch(r"[a-z0-9_]{1,512}", str(entry.get("name", ""))):
            raise MessagesError(
                f"whatsapp.toml template.{kind}: name must be lowercase a-z, 0-9, _"
            )
    return templates


# ------------------------------------------------------------------ languages


def _normalize(value: str) -> str:
    return value.strip().casefold().replace("_", "-")


@cache
def _alias_index() -> Mapping[str, str]:
    index: dict[str, str] = {}
    for code, language in languages().items():
        for alias in (code, *language.aliases):
            index.setdefault(alias, code)
    return index


def client_language(preferred: str) -> str:
    """One of CLIENT_LANGUAGES for whatever a person or a file said: "es-MX", "PT_br", "spa"…

    Anything not recognized is English, the language every text exists in.
    """
    wanted = _normalize(preferred or "")
    index = _alias_index()
    if wanted in index:
        return index[wanted]
    primary = wanted.split("-", 1)[0]
    return index.get(primary, DEFAULT_LANGUAGE)


def staff_language(preferred: str) -> str:
    """English or Spanish: the languages the staff messages are written in."""
    language = client_language(preferred)
    return language if language in STAFF_LANGUAGES else DEFAULT_LANGUAGE


def whatsapp_language(language: str) -> str:
    """Meta's language code a client template in `language` is sent with.

    A language Meta has no templates for (Haitian Creole) is sent in its file's
    `whatsapp_fallback` language, and `render` fills the parameters in that language.
    """
    return languages()[_whatsapp_source(client_language(language))].whatsapp_code


def _whatsapp_source(code: str) -> str:
    """The casewatch language whose texts fill a WhatsApp template for `code`."""
    language = languages()[code]
    if language.whatsapp_code:
        return code
    fallback = language.whatsapp_fallback or DEFAULT_LANGUAGE
    if not languages()[fallback].whatsapp_code:
        raise MessagesError(f"{code}.toml: whatsapp_fallback {fallback!r} has no whatsapp_code")
    return fallback


# ------------------------------------------------------------------ filling texts


def _clean(value: object) -> str:
    """A caller's value as one line of text: no newlines (WhatsApp refuses them), no None."""
    if value is None:
        return ""
    return " ".join(str(value).split())


def _fill(
    text: str | Sequence[str],
    values: Mapping[str, str],
    *,
    html: Mapping[str, str] | None = None,
) -> str | None:
    """The first wording whose values are all known, filled in; None when none is.

    With `html`, the wording's own words are escaped and each value is taken from
    `html` (already safe) instead of `values`.
    """
    wordings = [text] if isinstance(text, str) else list(text)
    for wording in wordings:
        names = _PLACEHOLDER.findall(wording)
        if not all(values.get(name) for name in names):
            continue
        if html is None:
            return _PLACEHOLDER.sub(lambda m: values[m.group(1)], wording)
        parts: list[str] = []
        last = 0
        for match in _PLACEHOLDER.finditer(wording):
            parts.append(escape(wording[last : match.start()]))
            parts.append(html[match.group(1)])
            last = match.end()
        parts.append(escape(wording[last:]))
        return "".join(parts)
    return None


def _html_value(name: str, value: str) -> str:
    """A value for HTML: escaped, and a link when it is a web address the message points to."""
    if name.endswith("_url") and value.startswith(("https://", "http://")):
        return str(format_html('<a href="{}">{}</a>', value, value))
    return str(escape(value))


def _format_date(value: str, language: Language) -> str:
    """An ISO date (or date-time) written the language's way; anything else kept as given."""
    try:
        moment: date = date.fromisoformat(value)
    except ValueError:
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
    written = _PLACEHOLDER.sub(
        lambda m: {
            "day": str(moment.day),
            "month": language.months[moment.month - 1],
            "year": str(moment.year),
        }[m.group(1)],
        language.date_format,
    )
    if isinstance(moment, datetime):
        clock = _PLACEHOLDER.sub(
            lambda m: {"hour": f"{moment.hour:02d}", "minute": f"{moment.minute:02d}"}[m.group(1)],
            language.time_format,
        )
        written = f"{written} {clock}{_zone(moment)}"
    return written


def _zone(moment: datetime) -> str:
    offset = moment.utcoffset()
    if offset is None:
        return ""
    if offset == timedelta(0):
        return " UTC"
    sign = "+" if offset >= timedelta(0) else "-"
    minutes = abs(int(offset.total_seconds())) // 60
    return f" UTC{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def _wrap_html(paragraphs: Iterable[str], language: Language) -> str:
    body = "\n".join(f"<p>{p}</p>" for p in paragraphs)
    return f'<div lang="{language.code}" dir="{language.direction}">\n{body}\n</div>'


# ------------------------------------------------------------------ client texts


def _entry(language: Language, status: str, category: str) -> dict[str, str]:
    """The status's own texts over its category's, over `unknown`'s, in that language.

    A language file missing an entry falls back to English; the tests make sure none does.
    """
    english = languages()[DEFAULT_LANGUAGE]
    if category not in CATEGORIES:
        category = UNKNOWN
    merged: dict[str, str] = {}
    for source in (
        english.categories.get(UNKNOWN, {}),
        english.categories.get(category, {}),
        language.categories.get(category, {}),
        english.statuses.get(status, {}),
        language.statuses.get(status, {}),
    ):
        merged.update(source)
    missing = [f for f in _ENTRY_REQUIRED if f not in merged]
    if missing:
        raise MessagesError(f"en.toml: client.category.unknown needs {', '.join(missing)}")
    return merged


def _category_of(status: str, category: str) -> str:
    if category in CATEGORIES:
        return category
    known = default_catalog().statuses.get(status)
    return known.category if known is not None else UNKNOWN


def explanation(status: str, category: str, language: str) -> Explanation:
    """What a status means for the client, in their language (for the portal and messages)."""
    lang = languages()[client_language(language)]
    entry = _entry(lang, status, _category_of(status, category))
    return Explanation(title=entry["title"], happened=entry["happened"], next_step=entry["next"])


def faq(status: str, category: str, language: str) -> FaqAnswer:
    """The client's question about a status and its short answer, in their language.

    The question reads "What does “Interview Was Scheduled” mean? What do I do now?".

    In English and Spanish the question quotes USCIS's own title of the status; in the
    other languages it names the status in that language.
    """
    code = client_language(language)
    lang = languages()[code]
    entry = _entry(lang, status, _category_of(status, category))
    title = entry["title"]
    known = default_catalog().statuses.get(status)
    if known is not None and code == "en":
        title = known.title_en
    elif known is not None and code == "es":
        title = known.title_es
    question = _fill(lang.client["faq_question"], {"title": title})
    assert question is not None  # checked at load: the question names only {title}
    return FaqAnswer(question=question, answer=entry["answer"])


_FULL_WIDTH_STOPS = ("。", "！", "？", "：", "；")


def _sentences(parts: Iterable[str]) -> str:
    """Sentences one after the other: a space between them, none after a full-width stop."""
    joined = ""
    for part in parts:
        if joined and not joined.endswith(_FULL_WIDTH_STOPS):
            joined += " "
        joined += part
    return joined


def _client_values(
    lang: Language, params: Mapping[str, str]
) -> tuple[dict[str, str], dict[str, str], str]:
    """The body's values in `lang` (plain and HTML-safe) and the entry's title."""
    status, category = params.get("status", ""), params.get("category", "")
    entry = _entry(lang, status, _category_of(status, category))
    frame = lang.client
    pieces: list[tuple[str, str]] = [(entry["next"], str(escape(entry["next"])))]
    if params.get("due_on"):
        due_values = {"due_on": _format_date(params["due_on"], lang)}
        due_text = _fill(entry.get("due") or frame["due"], due_values)
        due_html = _fill(
            entry.get("due") or frame["due"],
            due_values,
            html={"due_on": str(escape(due_values["due_on"]))},
        )
        if due_text and due_html:
            pieces.append((due_text, due_html))
    if params.get("portal_url"):
        url = params["portal_url"]
        text = _fill(frame["portal"], {"portal_url": url})
        html = _fill(
            frame["portal"],
            {"portal_url": url},
            html={"portal_url": _html_value("portal_url", url)},
        )
        if text and html:
            pieces.append((text, html))
    firm = params.get("firm_name") or _fill(frame["firm_name"], {}) or ""
    happened: list[tuple[str, str]] = [(entry["happened"], str(escape(entry["happened"])))]
    if params.get(TEST_DATA):
        # First, inside a sentence the WhatsApp template already has: its parameters stay.
        notice = frame[TEST_DATA]
        happened.insert(0, (notice, str(format_html("<strong>{}</strong>", notice))))
    values = {
        "firm_name": firm,
        "receipt": params["receipt"],
        "happened": _sentences(text for text, _ in happened),
        "next": _sentences(text for text, _ in pieces),
    }
    html_values = {
        "firm_name": str(escape(firm)),
        "receipt": str(escape(params["receipt"])),
        "happened": _sentences(html for _, html in happened),
        "next": _sentences(html for _, html in pieces),
    }
    return values, html_values, entry["title"]


def _render_client_status_change(lang: Language, params: Mapping[str, str]) -> Rendered:
    if not params.get("receipt"):
        raise ValueError("a client status_change message needs its receipt number")
    values, html_values, title = _client_values(lang, params)
    frame = lang.client
    body = _fill(frame["body"], values)
    body_html = _fill(frame["body"], values, html=html_values)
    subject = _fill(frame["subject"], {**params, "title": title}) or title
    assert body is not None and body_html is not None  # every body value is always known
    text = "\n".join([*(line for line in body.splitlines() if line.strip()), frame["opt_out"]])
    paragraphs = [line for line in body_html.splitlines() if line.strip()]
    template = _whatsapp_data().get("status_change", {})
    template_params: tuple[str, ...] = ()
    source = languages()[_whatsapp_source(lang.code)]
    if template:
        wa_values = values if source is lang else _client_values(source, params)[0]
        template_params = tuple(wa_values[name] for name in template["params"])
    return Rendered(
        subject=subject,
        text=text,
        html=_wrap_html(paragraphs, lang),
        template=str(template.get("name", "")),
        template_params=template_params,
        template_language=source.whatsapp_code if template else "",
    )


# ------------------------------------------------------------------ staff texts


def _staff_values(kind: str, lang: Language, params: Mapping[str, str]) -> dict[str, str]:
    staff = lang.staff or {}
    values = dict(params)
    for name in ("due_on", "since"):
        if values.get(name):
            values[name] = _format_date(values[name], lang)
    status, category = values.get("status", ""), values.get("category", "")
    if status or category:
        category = _category_of(status, category)
        values["category_label"] = staff["categories"].get(category, "")
        guidance = default_guidance().for_change(status, category)
        with translation.override(lang.code):
            values["meaning"] = translation.gettext(guidance.meaning)
            values["next_step"] = translation.gettext(guidance.next_step)
    urgency = values.get("urgency") or (
        default_catalog().statuses[status].urgency
        if status in default_catalog().statuses
        else CATEGORIES.get(category, "")
    )
    if urgency:
        values["urgency_label"] = staff["urgencies"].get(urgency, "")
    if values.get("channel"):
        values["channel_label"] = staff["channels"].get(values["channel"], values["channel"])
    if values.get("uscis_title"):
        values["uscis_title"] = _uscis_title(values["uscis_title"], status, lang.code)
    return values


def _uscis_title(title: str, status: str, code: str) -> str:
    """USCIS's title in Spanish for Spanish readers when the catalog knows it."""
    if code != "es":
        return title
    catalog = default_catalog()
    known = catalog.statuses.get(status) or catalog.by_title(title)
    return known.title_es if known is not None else title


def _render_staff(
    kind: str, lang: Language, params: Mapping[str, str], changes: list[Any]
) -> Rendered:
    message = (lang.staff or {})[kind]
    values = _staff_values(kind, lang, params)
    html_values = {name: _html_value(name, value) for name, value in values.items()}
    lines: list[tuple[str, str]] = []
    for line in message["lines"]:
        text = _fill(line, values)
        if text is not None:
            html = _fill(line, values, html=html_values)
            assert html is not None
            lines.append((text, html))
    if kind == "digest":
        lines = _with_changes(lines, message, lang, changes)
    if params.get(TEST_DATA):
        notice = (lang.staff or {})[TEST_DATA]
        lines.insert(0, (notice, str(format_html("<strong>{}</strong>", notice))))
    subject = _fill(message["subject"], values) or _fill(message["subject"], {}) or kind
    paragraphs = [html for _, html in lines]
    return Rendered(
        subject=subject,
        text="\n".join(text for text, _ in lines),
        html=_wrap_html(paragraphs, lang),
    )


DIGEST_LIMIT = 20


def _with_changes(
    lines: list[tuple[str, str]], message: Mapping[str, Any], lang: Language, changes: list[Any]
) -> list[tuple[str, str]]:
    """The digest's list of changes after its first line, at most DIGEST_LIMIT of them."""
    items: list[tuple[str, str]] = []
    for change in changes[:DIGEST_LIMIT]:
        if not isinstance(change, Mapping):
            continue
        values = {
            "receipt": _clean(change.get("receipt")),
            "uscis_title": _uscis_title(
                _clean(change.get("uscis_title")), _clean(change.get("status")), lang.code
            ),
        }
        text = _fill(message["change"], values)
        if text is not None:
            html = _fill(
                message["change"], values, html={k: str(escape(v)) for k, v in values.items()}
            )
            assert html is not None
            items.append((f"• {text}", f"• {html}"))
    if len(changes) > DIGEST_LIMIT:
        more = {"count": str(len(changes) - DIGEST_LIMIT)}
        text = _fill(message["more"], more)
        if text is not None:
            items.append((text, str(escape(text))))
    if not items:
        return lines
    listing = (
        "\n".join(text for text, _ in items),
        "<br>\n".join(html for _, html in items),
    )
    return [*lines[:1], listing, *lines[1:]]


# ------------------------------------------------------------------ render


def render(message: Mapping[str, Any], language: str, *, audience: Audience) -> Rendered:
    """A notification's message ({"key": kind, "params": {...}}) in `language`, in every form.

    Clients: status changes, in any of CLIENT_LANGUAGES (else English). Staff: every
    kind, in English or Spanish. A value the caller leaves out is left out of the text:
    never "None", never "{x}". WhatsApp's template and parameters come with client texts
    (staff are never alerted on WhatsApp, so theirs are empty).
    """
    kind = str(message.get("key", ""))
    raw = message.get("params") or {}
    if not isinstance(raw, Mapping):
        raise ValueError(f"message params must be a mapping, not {type(raw).__name__}")
    given = raw.get("changes")
    changes: list[Any] = given if isinstance(given, list) else []
    params = {
        name: _clean(value) for name, value in raw.items() if name != "changes" and _clean(value)
    }
    if audience == "client":
        if kind not in CLIENT_PARAMS:
            raise ValueError(
                f"no client text for {kind!r}: clients are sent {', '.join(CLIENT_PARAMS)}"
            )
        return _render_client_status_change(languages()[client_language(language)], params)
    if audience == "staff":
        if kind not in STAFF_PARAMS:
            raise ValueError(
                f"no staff text for {kind!r}: staff kinds are {', '.join(STAFF_PARAMS)}"
            )
        return _render_staff(kind, languages()[staff_language(language)], params, changes)
    raise ValueError(f"audience must be 'client' or 'staff', not {audience!r}")


# ------------------------------------------------------------------ WhatsApp templates


def _positional(body: str, params: Sequence[str], where: str) -> str:
    """The body with {name} turned into Meta's {{n}}; each value once, in `params` order."""
    found = _PLACEHOLDER.findall(body)
    if found != list(params):
        raise MessagesError(
            f"{where}: the WhatsApp body must use {', '.join(params)} once each, in that "
            f"order (found {', '.join(found) or 'none'})"
        )
    position = {name: n for n, name in enumerate(params, start=1)}
    return _PLACEHOLDER.sub(lambda m: "{{" + str(position[m.group(1)]) + "}}", body)


@cache
def _templates() -> tuple[WhatsAppTemplate, ...]:
    result: list[WhatsAppTemplate] = []
    for kind, entry in _whatsapp_data().items():
        params = tuple(entry["params"])
        sample = {name: _clean(value) for name, value in entry.get("sample", {}).items()}
        bodies: dict[str, str] = {}
        footers: dict[str, str] = {}
        samples: dict[str, tuple[str, ...]] = {}
        sent_as: dict[str, str] = {}
        for code, lang in languages().items():
            source = languages()[_whatsapp_source(code)]
            sent_as[code] = source.whatsapp_code
            if source is not lang:
                continue
            meta = lang.whatsapp_code
            if meta in bodies:
                raise MessagesError(f"{code}.toml: whatsapp_code {meta!r} is used twice")
            body = lang.client["body"]
            bodies[meta] = _positional(body, params, f"{code}.toml client.body")
            footers[meta] = lang.client["opt_out"]
            rendered = _render_client_status_change(lang, sample)
            samples[meta] = rendered.template_params
        result.append(
            WhatsAppTemplate(
                kind=kind,
                name=entry["name"],
                category=entry["category"],
                params=params,
                bodies=bodies,
                footers=footers,
                samples=samples,
                languages=sent_as,
            )
        )
    return tuple(result)


def whatsapp_templates() -> list[WhatsAppTemplate]:
    """Every template a firm must register with Meta, with all its translations."""
    return list(_templates())


def template_body(template: WhatsAppTemplate, meta_code: str, values: Sequence[str]) -> str:
    """The body as WhatsApp shows it once `values` fill {{1}}, {{2}}… (for fakes and tests)."""
    return re.sub(
        r"\{\{(\d+)\}\}", lambda m: values[int(m.group(1)) - 1], template.bodies[meta_code]
    )


# ------------------------------------------------------------------ the doc

DOC = Path(__file__).resolve().parents[2] / "docs" / "whatsapp-templates.md"


def whatsapp_doc() -> str:
    """docs/whatsapp-templates.md as it must read for the templates shipped today."""
    out: list[str] = [
        "# WhatsApp templates to register with Meta",
        "",
        "<!-- Generated by `python -m casewatch.notify.messages` from",
        "casewatch/notify/data/messages/*.toml; do not edit by hand. -->",
        "",
        "Outside the 24-hour window that opens when a client writes to the firm, WhatsApp",
        "delivers only templates that Meta approved. Before casewatch can message clients on",
        "WhatsApp, register each template below in WhatsApp Manager (or with the Business",
        "Management API) under the firm's WhatsApp Business Account: the same name, category",
        "UTILITY, one translation per language code, the body and footer exactly as written",
        "here, and the sample values when Meta asks for examples. A translation that is not",
        "approved is a message that is not delivered.",
        "",
        "The templates are strictly transactional (a change in the client's own case), which",
        "keeps them in the UTILITY category: do not add offers, promotions or links to",
        "anything but the client's case page, or Meta files them as MARKETING, which is not",
        "delivered to US numbers. casewatch sends each template with the language code",
        "listed here (`casewatch.notify.messages.whatsapp_language`) and exactly as many",
        "parameters as its body has. Opt-out replies (STOP, BAJA, PARAR…) are handled by",
        "casewatch, not by Meta.",
        "",
    ]
    for template in _templates():
        fallbacks = {
            code: meta
            for code, meta in template.languages.items()
            if languages()[code].whatsapp_code != meta
        }
        out += [
            f"## `{template.name}`",
            "",
            f"- Message kind: `{template.kind}`",
            f"- Category: `{template.category}`",
            "- Language codes: " + ", ".join(f"`{code}`" for code in template.bodies),
            "- Body parameters, in order: "
            + ", ".join(f"{{{{{n}}}}} {name}" for n, name in enumerate(template.params, start=1)),
            "- Header: none. Buttons: none. Footer: the opt-out line given per language.",
        ]
        for code, meta in fallbacks.items():
            out.append(
                f"- {languages()[code].name} (`{code}`) has no template language at Meta: "
                f"clients who read it get the `{meta}` translation on WhatsApp, and their own "
                "language by SMS, e-mail and inside the 24-hour window."
            )
        out.append("")
        for meta, body in template.bodies.items():
            name = next(
                languages()[c].name
                for c, m in template.languages.items()
                if m == meta and languages()[c].whatsapp_code == meta
            )
            out += [f"### {name} — `{meta}`", "", "Body:", "", "```text", body.strip(), "```", ""]
            out += [f"Footer: `{template.footers[meta]}`", "", "Sample values:", ""]
            for n, value in enumerate(template.samples[meta], start=1):
                out.append(f"{n}. {value}")
            out.append("")
    return "\n".join(out).rstrip() + "\n"


def main(argv: Sequence[str] = ()) -> int:
    """Rewrite docs/whatsapp-templates.md from the message files."""
    import django

    django.setup()
    DOC.write_text(whatsapp_doc(), encoding="utf-8")
    print(f"wrote {DOC}")
    return 0


if __name__ == "__main__":  # pragma: no cover - a maintenance command
    import os

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "casewatch.settings")
    sys.exit(main(sys.argv[1:]))
