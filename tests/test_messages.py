"""Every text casewatch sends: complete in every language, never English in disguise, safe to send.

The completeness checks are driven by the status catalog (core.statuses.CATEGORIES) and by
the English file: a category added to the catalog, or a status text added in English, fails
here until every language has it.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from typing import Any

import pytest
from django.utils.html import escape

from casewatch.core.statuses import CATEGORIES, default_catalog
from casewatch.notify.messages import (
    CLIENT_LANGUAGES,
    DOC,
    STAFF_LANGUAGES,
    STAFF_PARAMS,
    TEST_DATA,
    FaqAnswer,
    MessagesError,
    _check_text,
    client_language,
    explanation,
    faq,
    languages,
    render,
    staff_language,
    template_body,
    whatsapp_doc,
    whatsapp_language,
    whatsapp_templates,
)
from casewatch.notify.messages import _whatsapp_source as whatsapp_source_language
from casewatch.notify.models import MessageKind

NON_ENGLISH = [code for code in CLIENT_LANGUAGES if code != "en"]
NON_LATIN_SCRIPT = {
    "zh": re.compile(r"[\u4e00-\u9fff]"),
    "hi": re.compile(r"[\u0900-\u097f]"),
    "ar": re.compile(r"[\u0600-\u06ff]"),
}
ENTRY_FIELDS = ("title", "happened", "next", "answer")

# What a non-English text may keep in Latin letters: the agency's name, the opt-out keyword,
# form names and receipt numbers. Everything else must be in the language.
ALLOWED_TOKENS = re.compile(r"\bUSCIS\b|\bSTOP\b|\b[A-Z]-\d+[A-Z]?\b|\b[A-Z]{3}\d{10}\b")
PLACEHOLDER = re.compile(r"\{[a-z_]+\}")
# Common English words that are not words of any of the other nine languages (so "a", "an",
# "do", "no", "me", "on", "or", "at", "in", "to", "for", "can", "may", "date", "document",
# "contact", "status", "portal" are left out on purpose: they are Spanish, Portuguese,
# French, Haitian Creole, Tagalog or Vietnamese words too).
ENGLISH_WORDS = frozenset(
    re.findall(
        r"[a-z]+",
        """
    the and you your yours with will would should could this that these those have has had
    was were been being are is it its of from about into not please what when where which
    who why how case cases lawyer lawyers office interview appointment card cards mail mailed
    received approved denied evidence request notice news update updated reply fee fees
    deadline fingerprint fingerprints biometrics application applications step next nothing
    anything need needs more other after before still know must get done they their them our
    we us if than then there here again soon today right away good hard sorry thank thanks
    """,
    )
)
WORD = re.compile(r"[^\W\d_]+")

SAMPLE_PARAMS = {
    "receipt": "IOE0912345678",
    "form_type": "I-485",
    "firm_name": "Example Immigration Law",
    "portal_url": "https://portal.example.com/c/8f3k2q",
    "due_on": "2026-04-14",
    "uscis_title": "Interview Was Scheduled",
}


def _english_words(text: str) -> set[str]:
    cleaned = ALLOWED_TOKENS.sub(" ", PLACEHOLDER.sub(" ", unicodedata.normalize("NFC", text)))
    return {word for word in WORD.findall(cleaned) if word.casefold() in ENGLISH_WORDS}


def _latin_left(text: str) -> str:
    cleaned = ALLOWED_TOKENS.sub(" ", PLACEHOLDER.sub(" ", text))
    return "".join(re.findall(r"[A-Za-z]+", cleaned))


def _texts(language: str) -> Iterator[tuple[str, str]]:
    """Every client text a language file holds, with where it is, in file order."""
    lang = languages()[language]
    for field in (
        "firm_name",
        "subject",
        "body",
        "opt_out",
        "due",
        "portal",
        "test_data",
        "faq_question",
    ):
        value = lang.client[field]
        for n, wording in enumerate(value if isinstance(value, list) else [value]):
            yield f"client.{field}[{n}]", wording
    for group, entries in (("category", lang.categories), ("status", lang.statuses)):
        for key, entry in entries.items():
            for field, text in entry.items():
                yield f"client.{group}.{key}.{field}", text


def _status_of(category: str) -> str:
    """A catalog status of `category` that has no text of its own (else the category's key)."""
    for key, status in default_catalog().statuses.items():
        if status.category == category and key not in languages()["en"].statuses:
            return key
    return category


def _client(status: str, category: str, **params: str) -> dict[str, Any]:
    return {
        "key": "status_change",
        "params": {**SAMPLE_PARAMS, "status": status, "category": category, **params},
    }


# ------------------------------------------------------------------ completeness


@pytest.mark.parametrize("language", CLIENT_LANGUAGES)
@pytest.mark.parametrize("category", list(CATEGORIES))
def test_every_category_has_a_client_message_and_faq_in_every_language(
    category: str, language: str
) -> None:
    entry = languages()[language].categories.get(category)
    assert entry is not None, f"{language}.toml has no client.category.{category}"
    for field in ENTRY_FIELDS:
        assert entry.get(field, "").strip(), f"{language}.toml client.category.{category}.{field}"
    status = _status_of(category)
    rendered = render(_client(status, category), language, audience="client")
    assert entry["happened"] in rendered.text
    assert entry["title"] in rendered.subject
    answer = faq(status, category, language)
    assert isinstance(answer, FaqAnswer)
    assert answer.answer == entry["answer"]
    assert answer.question.strip()


def test_the_english_file_names_no_status_the_catalog_does_not_know() -> None:
    assert set(languages()["en"].statuses) <= set(default_catalog().statuses)


@pytest.mark.parametrize("language", NON_ENGLISH)
def test_every_status_specific_text_exists_in_all_languages(language: str) -> None:
    english = languages()["en"].statuses
    theirs = languages()[language].statuses
    assert sorted(theirs) == sorted(english)
    for key, entry in english.items():
        assert sorted(theirs[key]) == sorted(entry), f"{language}.toml client.status.{key}"


@pytest.mark.parametrize("language", NON_ENGLISH)
def test_every_text_in_a_language_uses_the_same_values_as_the_english(language: str) -> None:
    english = dict(_texts("en"))
    theirs = dict(_texts(language))
    entries = {
        where for where in english if where.startswith(("client.category.", "client.status."))
    }
    assert entries - set(theirs) == set(), f"{language}.toml lacks these English texts"
    for where, text in theirs.items():
        assert where in english, f"{language}.toml has {where}, which English has not"
        assert set(PLACEHOLDER.findall(text)) == set(PLACEHOLDER.findall(english[where])), where


def test_frequent_statuses_get_their_own_text_not_their_categorys() -> None:
    card = render(_client("card_delivered", "document_delivered"), "es", audience="client")
    assert "tarjeta" in card.text
    assert languages()["es"].categories["document_delivered"]["happened"] not in card.text
    interview = faq("interview_scheduled", "interview_scheduled", "en")
    assert interview.question == "What does “Interview Was Scheduled” mean? What do I do now?"


def test_a_status_of_a_category_without_its_own_text_gets_the_categorys() -> None:
    rendered = render(_client("rfe_sent", "evidence_requested"), "pt", audience="client")
    assert languages()["pt"].categories["evidence_requested"]["happened"] in rendered.text
    assert "Prazo para responder ao USCIS: 14 de abril de 2026." in rendered.text


def test_a_category_outside_the_catalog_reads_as_unknown() -> None:
    rendered = render(_client("", "no_such_category"), "fr", audience="client")
    assert languages()["fr"].categories["unknown"]["happened"] in rendered.text


# ------------------------------------------------------------------ no English left


@pytest.mark.parametrize("language", NON_ENGLISH)
def test_no_english_is_left_in_a_non_english_text(language: str) -> None:
    english = dict(_texts("en"))
    for where, text in _texts(language):
        if WORD.search(PLACEHOLDER.sub(" ", text)):  # a bare "{title}" is the same everywhere
            assert text != english[where], f"{language}.toml {where} is the English text"
        assert not _english_words(text), f"{language}.toml {where}: {_english_words(text)}"
        if language in NON_LATIN_SCRIPT and WORD.search(PLACEHOLDER.sub(" ", text)):
            assert not _latin_left(text), f"{language}.toml {where}: Latin letters left"
            assert NON_LATIN_SCRIPT[language].search(text), f"{language}.toml {where}: script"


@pytest.mark.parametrize("language", NON_ENGLISH)
def test_no_english_is_left_in_what_a_client_receives(language: str) -> None:
    """The rendered message, the FAQ and the dates, with the caller's values taken out."""
    for category in CATEGORIES:
        status = _status_of(category)
        rendered = render(_client(status, category), language, audience="client")
        answer = faq(status, category, language)
        for text in (rendered.subject, rendered.text, answer.question, answer.answer):
            for value in SAMPLE_PARAMS.values():
                text = text.replace(value, " ")
            assert not _english_words(text), f"{language} {category}: {_english_words(text)}"
            if language in NON_LATIN_SCRIPT:
                assert not _latin_left(text), f"{language} {category}: {text}"


def test_the_english_word_check_catches_english() -> None:
    assert _english_words("Su caso fue aprobado. Please contact your lawyer.") == {
        "Please",
        "your",
        "lawyer",
    }
    assert not _english_words("USCIS devolvió el Formulario G-28 del caso IOE0912345678.")
    assert _latin_left("USCIS 已收到 I-485，请回复 STOP。") == ""
    assert _latin_left("USCIS 已收到 documents") == "documents"


# ------------------------------------------------------------------ languages


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("es-MX", "es"),
        ("ES", "es"),
        ("spa", "es"),
        ("Español", "es"),
        ("PT_br", "pt"),
        ("pt-PT", "pt"),
        ("zh-Hans", "zh"),
        ("zh_CN", "zh"),
        ("zh-TW", "zh"),
        ("vi-VN", "vi"),
        ("hin", "hi"),
        ("ar-EG", "ar"),
        ("ht", "ht"),
        ("Kreyòl", "ht"),
        ("fr-CA", "fr"),
        ("fil", "tl"),
        ("tl-PH", "tl"),
        ("en-US", "en"),
        ("", "en"),
        ("klingon", "en"),
        ("de", "en"),
    ],
)
def test_client_language_normalizes_what_people_and_files_say(given: str, expected: str) -> None:
    assert client_language(given) == expected


@pytest.mark.parametrize(("given", "expected"), [("es-MX", "es"), ("pt-BR", "en"), ("", "en")])
def test_staff_language_is_english_or_spanish(given: str, expected: str) -> None:
    assert staff_language(given) == expected
    assert staff_language(given) in STAFF_LANGUAGES


def test_an_unknown_language_falls_back_to_english() -> None:
    message = _client("interview_scheduled", "interview_scheduled")
    assert render(message, "xx-YY", audience="client") == render(message, "en", audience="client")
    assert faq("approved", "approved", "qq") == faq("approved", "approved", "en")
    staff = {"key": "digest", "params": {"count": "2"}}
    assert render(staff, "vi", audience="staff") == render(staff, "en", audience="staff")


def test_arabic_html_reads_right_to_left() -> None:
    rendered = render(_client("approved", "approved"), "ar", audience="client")
    assert rendered.html.startswith('<div lang="ar" dir="rtl">')


def test_dates_are_written_the_way_each_language_writes_them() -> None:
    def due_line(language: str) -> str:
        return render(_client("rfe_sent", "evidence_requested"), language, audience="client").text

    assert "April 14, 2026" in due_line("en")
    assert "14 de abril de 2026" in due_line("es")
    assert "2026年4月14日" in due_line("zh")
    assert "ngày 14 tháng 4 năm 2026" in due_line("vi")
    assert "14 avril 2026" in due_line("fr")
    not_a_date = render(
        _client("rfe_sent", "evidence_requested", due_on="soon"), "en", audience="client"
    )
    assert "Deadline to answer USCIS: soon." in not_a_date.text


# ------------------------------------------------------------------ safety


def test_html_escapes_every_value() -> None:
    message = _client(
        "approved",
        "approved",
        firm_name='<script>alert("x")</script>',
        receipt="IOE<b>1</b>",
        portal_url="javascript:alert(1)",
    )
    for language in CLIENT_LANGUAGES:
        html = render(message, language, audience="client").html
        assert "<script>" not in html and "<b>" not in html
        assert "&lt;script&gt;" in html
        assert 'href="javascript' not in html
    staff = render(
        {"key": "delivery_problem", "params": {"receipt": "X", "error": "<img src=x>"}},
        "en",
        audience="staff",
    )
    assert "<img" not in staff.html and "&lt;img src=x&gt;" in staff.html


def test_a_web_address_becomes_a_link_in_html() -> None:
    html = render(_client("approved", "approved"), "en", audience="client").html
    url = SAMPLE_PARAMS["portal_url"]
    assert f'<a href="{url}">{url}</a>' in html


def test_messages_carry_no_personal_data_a_caller_passes_by_mistake() -> None:
    extra = {"client_name": "Test Client", "address": "1 Fake St", "a_number": "A123456789"}
    for language in CLIENT_LANGUAGES:
        rendered = render(_client("approved", "approved", **extra), language, audience="client")
        everything = " ".join(
            [rendered.subject, rendered.text, rendered.html, *rendered.template_params]
        )
        for value in extra.values():
            assert value not in everything
    staff = render(
        {"key": "status_change", "params": {**SAMPLE_PARAMS, "status": "approved", **extra}},
        "en",
        audience="staff",
    )
    assert "Test Client" not in staff.text and "A123456789" not in staff.text


@pytest.mark.parametrize("language", CLIENT_LANGUAGES)
def test_missing_values_never_render_none_or_braces_for_clients(language: str) -> None:
    for params in ({"receipt": "IOE0912345678"}, {"receipt": "IOE0912345678", "due_on": None}):
        for category in CATEGORIES:
            message = {"key": "status_change", "params": {**params, "category": category}}
            rendered = render(message, language, audience="client")
            for text in (rendered.subject, rendered.text, rendered.html, *rendered.template_params):
                assert "None" not in text and "{" not in text and "}" not in text, text
                assert text.strip()


def test_a_client_status_change_needs_its_receipt_number() -> None:
    with pytest.raises(ValueError, match="receipt"):
        render({"key": "status_change", "params": {}}, "en", audience="client")


def test_clients_are_sent_only_the_kinds_written_for_them() -> None:
    with pytest.raises(ValueError, match="no client text for 'digest'"):
        render({"key": "digest", "params": {}}, "en", audience="client")


# ------------------------------------------------------------------ staff


def test_every_message_kind_has_a_staff_text() -> None:
    assert set(STAFF_PARAMS) == set(MessageKind.values)


@pytest.mark.parametrize("language", STAFF_LANGUAGES)
@pytest.mark.parametrize("kind", MessageKind.values)
def test_staff_kinds_render_in_english_and_spanish(kind: str, language: str) -> None:
    full = {
        "receipt": "IOE0912345678",
        "form_type": "I-485",
        "status": "rfe_sent",
        "category": "evidence_requested",
        "urgency": "action",
        "uscis_title": "Request for Additional Evidence Was Sent",
        "due_on": "2026-04-14",
        "case_url": "https://casewatch.example.com/cases/7",
        "client_reference": "C-0042",
        "since": "2026-03-02T15:00:00+00:00",
        "message": "HTTP 503 from the USCIS API",
        "hours": "4",
        "days": "12",
        "count": "2",
        "changes": [
            {"receipt": "IOE0912345678", "uscis_title": "Case Was Approved"},
            {"receipt": "IOE0912345679", "uscis_title": "Card Was Mailed To Me"},
        ],
        "dashboard_url": "https://casewatch.example.com/",
        "channel": "whatsapp",
        "error": "131026 undeliverable",
        "reference": "C-0042",
    }
    params = {name: full[name] for name in STAFF_PARAMS[kind]}
    rendered = render({"key": kind, "params": params}, language, audience="staff")
    english = render({"key": kind, "params": params}, "en", audience="staff")
    assert rendered.subject and rendered.text and rendered.html
    assert "Next step" in english.text
    if language == "es":
        assert "Próximo paso" in rendered.text
        assert rendered.text != english.text
    assert rendered.template == "" and rendered.template_params == ()
    if "receipt" in params:
        assert "IOE0912345678" in rendered.text


def test_a_staff_status_change_says_what_it_means_and_what_to_do_next() -> None:
    params = {
        "receipt": "IOE0912345678",
        "status": "rfe_sent",
        "category": "evidence_requested",
        "uscis_title": "Request for Additional Evidence Was Sent",
        "due_on": "2026-04-14",
    }
    english = render({"key": "status_change", "params": params}, "en", audience="staff")
    assert english.subject == "Action needed · Evidence requested: IOE0912345678"
    assert "Key date: April 14, 2026" in english.text
    assert "Next step: Get the notice, tell the client what is needed" in english.text
    spanish = render({"key": "status_change", "params": params}, "es", audience="staff")
    assert "Estado en USCIS: Se Envió una Solicitud de Evidencia Adicional" in spanish.text
    assert "Próximo paso: Obtenga el aviso" in spanish.text


def test_a_digest_lists_the_changes_and_stops_at_a_readable_length() -> None:
    changes = [
        {"receipt": f"IOE09123456{n:02d}", "uscis_title": "Case Was Approved"} for n in range(25)
    ]
    rendered = render(
        {"key": "digest", "params": {"count": "25", "changes": changes}}, "es", audience="staff"
    )
    assert rendered.text.count("Caso Fue Aprobado") == 20
    assert "Y 5 más en el panel." in rendered.text


@pytest.mark.parametrize("language", STAFF_LANGUAGES)
@pytest.mark.parametrize("kind", MessageKind.values)
def test_missing_values_never_render_none_or_braces_for_staff(kind: str, language: str) -> None:
    for params in ({}, {"receipt": "", "channel": None}):
        rendered = render({"key": kind, "params": params}, language, audience="staff")
        for text in (rendered.subject, rendered.text, rendered.html):
            assert text.strip()
            assert "None" not in text and "{" not in text and "}" not in text, text


# ------------------------------------------------------------------ WhatsApp


def test_there_is_one_utility_template_per_client_message_kind() -> None:
    templates = whatsapp_templates()
    assert [t.kind for t in templates] == ["status_change"]
    assert all(t.category == "UTILITY" for t in templates)
    assert len({t.name for t in templates}) == len(templates)


def test_template_params_match_every_translation_and_what_render_fills() -> None:
    for template in whatsapp_templates():
        for meta, body in template.bodies.items():
            numbers = [int(n) for n in re.findall(r"\{\{(\d+)\}\}", body)]
            assert numbers == list(range(1, len(template.params) + 1)), meta
            assert not body.strip().startswith("{{") and not body.strip().endswith("}}"), meta
            assert len(template.footers[meta]) <= 60, meta
        assert set(template.languages) == set(CLIENT_LANGUAGES)
        assert set(template.languages.values()) == set(template.bodies)
        for language in CLIENT_LANGUAGES:
            for category in CATEGORIES:
                rendered = render(
                    _client(_status_of(category), category), language, audience="client"
                )
                assert rendered.template == template.name
                assert rendered.template_language == template.languages[language]
                assert len(rendered.template_params) == len(template.params)
                for value in rendered.template_params:
                    assert value.strip() and "\n" not in value and "\t" not in value
                    assert "    " not in value
                filled = template_body(
                    template, template.languages[language], rendered.template_params
                )
                assert len(filled) <= 1024, (language, category)


def test_haitian_creole_goes_to_whatsapp_in_french_and_stays_creole_elsewhere() -> None:
    assert whatsapp_language("ht") == "fr"
    assert whatsapp_language("pt-BR") == "pt_BR"
    assert whatsapp_language("tl") == "fil"
    creole = render(_client("approved", "approved"), "ht", audience="client")
    french = render(_client("approved", "approved"), "fr", audience="client")
    assert creole.template_params == french.template_params
    assert creole.text != french.text


def test_the_sms_text_stays_within_twilios_limit() -> None:
    long_url = "https://portal.example.com/c/" + "x" * 120
    for language in CLIENT_LANGUAGES:
        for category in CATEGORIES:
            message = _client(_status_of(category), category, portal_url=long_url)
            assert len(render(message, language, audience="client").text) <= 1600


def test_the_template_doc_matches_the_data() -> None:
    assert DOC.read_text(encoding="utf-8") == whatsapp_doc(), (
        "docs/whatsapp-templates.md is out of date: run `python -m casewatch.notify.messages`"
    )


# ------------------------------------------------------------------ the data's own rules


def test_a_text_that_names_a_value_it_cannot_have_is_refused() -> None:
    with pytest.raises(MessagesError, match=r"\{client_name\} is not a value"):
        _check_text("Hello {client_name}", "xx.toml client.body", ("receipt",))
    with pytest.raises(MessagesError, match="brace"):
        _check_text("Case {receipt", "xx.toml client.body", ("receipt",))
    with pytest.raises(MessagesError, match="non-empty"):
        _check_text("", "xx.toml client.opt_out", ())


def test_explanation_gives_the_portal_the_same_words_as_the_message() -> None:
    said = explanation("card_mailed", "document_mailed", "vi")
    rendered = render(_client("card_mailed", "document_mailed"), "vi", audience="client")
    assert said.happened in rendered.text and said.next_step in rendered.text
    assert said.title in rendered.subject


# ------------------------------------------------------------------ sandbox data

TEST_DATA_LINES = {
    "en": "Test data — not from USCIS",
    "es": "Datos de prueba: no vienen de USCIS",
}


@pytest.mark.parametrize("language", CLIENT_LANGUAGES)
def test_a_client_message_about_sandbox_data_says_so_in_text_html_and_whatsapp(
    language: str,
) -> None:
    notice = languages()[language].client[TEST_DATA]
    wa_notice = languages()[whatsapp_source_language(language)].client[TEST_DATA]
    for category in CATEGORIES:
        status = _status_of(category)
        test = render(_client(status, category, test_data="1"), language, audience="client")
        assert test.text.splitlines()[1].startswith(notice), (language, category)
        assert f"<strong>{escape(notice)}</strong>" in test.html
        assert any(wa_notice in value for value in test.template_params)
        real = render(_client(status, category), language, audience="client")
        assert notice not in real.text and escape(notice) not in real.html
        assert not any(wa_notice in value for value in real.template_params)
        assert len(test.template_params) == len(real.template_params)
    if language in TEST_DATA_LINES:
        assert notice.startswith(TEST_DATA_LINES[language])


@pytest.mark.parametrize("language", STAFF_LANGUAGES)
@pytest.mark.parametrize("kind", ["status_change", "escalation"])
def test_a_staff_message_about_sandbox_data_says_so_first(kind: str, language: str) -> None:
    notice = languages()[language].staff[TEST_DATA]  # type: ignore[index]
    assert notice.startswith(TEST_DATA_LINES[language])
    params = {"receipt": "IOE0912345678", "status": "rfe_sent", "category": "evidence_requested"}
    test = render({"key": kind, "params": {**params, "test_data": "1"}}, language, audience="staff")
    assert test.text.splitlines()[0] == notice
    assert f"<p><strong>{escape(notice)}</strong></p>" in test.html
    real = render({"key": kind, "params": params}, language, audience="staff")
    assert notice not in real.text and escape(notice) not in real.html
