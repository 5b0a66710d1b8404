"""classify_history(): a hist_case_status entry, English or Spanish, finds the status it records.

Every history line the sandbox can render reads back as the status of its title; form
names, receipt numbers and markup change nothing; what cannot be read with certainty
is `unknown`, never a guess.
"""

from __future__ import annotations

import re
from datetime import date, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from casewatch.core.history_text import (
    PhrasebookError,
    classify_history,
    clear_history_cache,
    default_phrasebook,
    history_template,
    load_phrasebook,
)
from casewatch.core.statuses import Classification, default_catalog
from casewatch.uscis.sandbox.texts import StepTexts, date_en, date_es, render_step, texts

CATALOG = default_catalog()
TEMPLATES = texts().templates
FORMS = texts().forms
# Form names with words that also name statuses (card, travel document, appeal,
# waiver, asylum, document), commas, slashes and parentheses.
TRICKY_FORMS = (
    "I-90",
    "I-129F",
    "I-130",
    "I-131",
    "I-212",
    "I-290B",
    "I-360",
    "I-485",
    "I-539",
    "I-589",
    "I-601",
    "I-765",
    "N-400",
    "N-565",
)
CATALOG_TITLES = sorted(
    {wording for s in CATALOG.statuses.values() for wording in (s.title_en, *s.aliases_en)}
)
OFFICIAL_EN = "We approved your Form I-130, Petition for Alien Relative."
OFFICIAL_ES = "Aprobamos su Formulario I-130, …"


def _well_formed(result: Classification) -> Classification:
    assert 0.0 <= result.confidence <= 1.0
    if result.is_unknown:
        assert (result.status, result.urgency) == ("unknown", "review")
        assert result.confidence < CATALOG.threshold
    else:
        assert result.confidence >= CATALOG.threshold
        assert result.category == CATALOG.get(result.status).category
    return result


def _status_of(title: str) -> str:
    status = CATALOG.by_title(title)
    return status.key if status is not None else "unknown"


def _render(title: str, form_type: str = "I-130") -> StepTexts:
    return render_step(
        title,
        form_type=form_type,
        receipt_number="EAC9999103403",
        on=date(2023, 9, 5),
        notice_deadline=date(2023, 10, 5),
        appointment=date(2023, 10, 12),
        location="Chicago Field Office",
    )


def _reads_as(step: StepTexts, expected: str) -> None:
    for args in ((step.history_en, step.history_es), (step.history_en,), (step.history_es,)):
        assert _well_formed(classify_history(*args)).status == expected, args


def test_the_official_example() -> None:
    for args in ((OFFICIAL_EN, OFFICIAL_ES), (OFFICIAL_EN,), (OFFICIAL_ES,)):
        result = _well_formed(classify_history(*args))
        assert (result.status, result.category, result.urgency) == (
            "approved",
            "approved",
            "progress",
        )
        assert result.title_en == "Case Was Approved"


@pytest.mark.parametrize("title", sorted(TEMPLATES))
def test_every_template_history_reads_back_as_its_title(title: str) -> None:
    for form_type in TRICKY_FORMS:
        _reads_as(_render(title, form_type), _status_of(title))


@pytest.mark.parametrize("title", CATALOG_TITLES)
def test_every_catalog_title_renders_a_history_that_reads_back(title: str) -> None:
    for form_type in ("I-130", "I-131", "I-485"):
        _reads_as(_render(title, form_type), _status_of(title))


@pytest.mark.parametrize("form_type", sorted(FORMS))
def test_a_form_name_is_one_mention_whatever_its_words(form_type: str) -> None:
    # "We rejected your Form …." is the bare rejection only if nothing but the
    # form's whole name follows, so this fails if a name is cut short.
    expected = "g28_rejected" if form_type == "G-28" else "rejected_improperly_filed"
    english, spanish = FORMS[form_type]["en"], FORMS[form_type]["es"]
    for text in (f"We rejected your {english}.", f"Rechazamos su {spanish}."):
        assert _well_formed(classify_history(text)).status == expected, text
    for text in (f"We approved your {english}.", f"Aprobamos su {spanish}."):
        assert _well_formed(classify_history(text)).status == "approved", text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("We received your Form I-485, Application to Register…", "case_received"),
        ("We took fingerprints for your Form I-485, Application to…", "fingerprints_taken"),
        ("We sent you a request for evidence…", "rfe_sent"),
        ("We scheduled an interview…", "interview_scheduled"),
        ("We mailed your new card…", "card_mailed"),
        ("The Post Office delivered your new card…", "card_delivered"),
        ("Case Was Approved", "approved"),
        ("Request For Evidence Was Sent", "rfe_sent"),
    ],
)
def test_usual_phrasings_and_bare_titles(text: str, expected: str) -> None:
    assert _well_formed(classify_history(text)).status == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Recibimos su Formulario I-485, Solicitud de Registro…", "case_received"),
        ("Le enviamos una solicitud de evidencia para su Formulario I-765.", "rfe_sent"),
        (
            "Enviamos una solicitud de evidencia inicial para su Formulario I-130.",
            "initial_evidence_requested",
        ),
        ("La Oficina de Correos entregó su nueva tarjeta.", "card_delivered"),
        (
            "Programamos una entrevista para su Formulario N-400, Solicitud de Naturalización.",
            "interview_scheduled",
        ),
        ("Denegamos su solicitud de trámite acelerado de su Formulario I-131.", "expedite_denied"),
        ("Tarjeta Me Fue Entregada Por El Servicio Postal De EE.UU.", "card_delivered"),
        ("Caso Recibido Y Notificación De Recibo Enviada", "case_received"),
        (
            "El 05 de Septiembre de 2023, aprobamos su Formulario I-130, Petición de Familiar "
            "Extranjero, Número de Recibo EAC9999103403.",
            "approved",
        ),
    ],
)
def test_spanish_texts(text: str, expected: str) -> None:
    assert _well_formed(classify_history("", text)).status == expected
    assert _well_formed(classify_history(text)).status == expected


@pytest.mark.parametrize(
    "text",
    [
        "<p>We approved your <strong>Form I-130</strong>, Petition for Alien Relative.</p>",
        '<p>We approved your <a href="https://www.uscis.gov/i-130">Form I-130</a>.</p>',
        "We&nbsp;approved your Form&nbsp;I&#8209;130, Petition for Alien Relative&#46;",
        "&lt;p&gt;We approved your Form I-130, Petition for Alien Relative.&lt;/p&gt;",
        "<div>\n  WE APPROVED YOUR FORM I-130,\n  PETITION FOR ALIEN RELATIVE.\n</div>",
    ],
)
def test_texts_with_html(text: str) -> None:
    assert _well_formed(classify_history(text)).status == "approved"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("We approved your Form I-131, Application for Travel Document.", "approved"),
        ("We denied your Form I-290B, Notice of Appeal or Motion.", "denied"),
        (
            "We received your Form I-601, Application for Waiver of Grounds of Inadmissibility, "
            "and sent you the receipt notice.",
            "case_received",
        ),
        (
            "We mailed your new card for your Form I-90, Application to Replace Permanent "
            "Resident Card, to the address you gave us.",
            "card_mailed",
        ),
        (
            "We transferred your Form I-589, Application for Asylum and for Withholding of "
            "Removal, to another office for processing.",
            "transferred_another_office",
        ),
        (
            "We received your Form I-485, Receipt Number LIN9999106498, and mailed you a "
            "receipt notice.",
            "case_received",
        ),
        (
            "On September 5, 2023, we destroyed your card for Receipt Number EAC-9999103403, "
            "that you returned to us with a letter of explanation.",
            "card_destroyed",
        ),
        (
            "As of October 1, 2024, we are actively reviewing your I-765, Receipt Number "
            "ioe0912345678.",
            "actively_reviewed",
        ),
        (
            "We rejected the Form G-28, Notice of Entry of Appearance as Attorney or "
            "Accredited Representative, filed with your Form I-130.",
            "g28_rejected",
        ),
        (
            "We rejected your Form I-130, Petition for Alien Relative, because you sent us "
            "the incorrect fee.",
            "rejected_incorrect_fee",
        ),
    ],
)
def test_form_names_and_receipt_numbers_do_not_disturb(text: str, expected: str) -> None:
    assert _well_formed(classify_history(text)).status == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "CASE STATUS",
        "Lorem ipsum dolor sit amet.",
        "We looked at your case and found a problem.",
        "We took action on your Form I-765, Application for Employment Authorization.",
        "We rejected your Form I-130, Petition for Alien Relative, because we felt like it.",
        "The status of your Form I-130, Petition for Alien Relative, changed to: Nothing Known.",
        "At this time USCIS cannot provide you with information for your case.",
        "Hemos recibido algo.",
    ],
)
def test_unknown_texts_are_unknown(text: str) -> None:
    result = _well_formed(classify_history(text, text))
    assert result.is_unknown
    assert result.confidence < CATALOG.threshold


def test_languages_that_disagree_are_unknown() -> None:
    result = classify_history(OFFICIAL_EN, "Denegamos su Formulario I-130.")
    assert _well_formed(result).is_unknown


def test_a_title_without_template_reads_back_in_both_languages() -> None:
    step = _render("Case Remains Pending")
    assert step.history_en == (
        "The status of your Form I-130, Petition for Alien Relative, changed to: "
        "Case Remains Pending."
    )
    assert step.history_es.endswith(f"cambió a: {CATALOG.get('remains_pending').title_es}.")
    _reads_as(step, "remains_pending")


def _book(statuses: dict[str, object]) -> dict[str, object]:
    return {
        "confidence": 0.95,
        "lead_ins": {"months": [], "date": [], "title": []},
        "status": statuses,
    }


@pytest.mark.parametrize(
    ("statuses", "message"),
    [
        ({"no_such_status": {"en": ["we did it"]}}, "unknown status"),
        (
            {
                "approved": {"en": ["we approved your {form}"]},
                "denied": {"en": ["We approved your {form}."]},
            },
            "belongs to",
        ),
        ({"approved": {"en": ["we approved your {receipt}"]}}, "placeholder"),
        ({"approved": {"en": ["* $"]}}, "no words"),
        ({"approved": {"en": "we approved your {form}"}}, "list"),
    ],
)
def test_the_phrasebook_refuses_bad_data(statuses: dict[str, object], message: str) -> None:
    with pytest.raises(PhrasebookError, match=message):
        load_phrasebook(_book(statuses), CATALOG)


def test_a_tie_between_two_statuses_is_no_answer() -> None:
    book = load_phrasebook(
        _book({"approved": {"en": ["we decided * {form}"]}, "denied": {"en": ["we decided your"]}}),
        CATALOG,
    )
    assert book.match("We decided your Form I-130.") is None
    assert default_phrasebook().match("We decided your Form I-130.") is None


# --- remembering answers by template: texts that differ only in their dates ----------------


def _fresh(text_en: str, text_es: str = "") -> Classification:
    """The answer as if the text had never been seen: nothing remembered."""
    clear_history_cache()
    try:
        return classify_history(text_en, text_es)
    finally:
        clear_history_cache()


def _after(seen: tuple[str, str], text_en: str, text_es: str = "") -> Classification:
    """The answer once a text of the same template (`seen`) was classified first."""
    clear_history_cache()
    classify_history(*seen)
    return classify_history(text_en, text_es)


def _dated(title: str, form_type: str, on: date) -> StepTexts:
    return render_step(
        title,
        form_type=form_type,
        receipt_number="EAC9999103403",
        on=on,
        notice_deadline=on + timedelta(days=30),
        appointment=on + timedelta(days=33),
        location="Chicago Field Office",
    )


# Which texts of a step are read together: the history line in both languages or in one,
# and the description (which carries notice and appointment dates).
_READ_TOGETHER = (
    ("history_en", "history_es"),
    ("history_en", ""),
    ("", "history_es"),
    ("description_en", "description_es"),
)


def _texts(step: StepTexts, names: tuple[str, str]) -> tuple[str, str]:
    english, spanish = (getattr(step, name) if name else "" for name in names)
    return english, spanish


@pytest.mark.parametrize("title", sorted(TEMPLATES))
def test_texts_that_differ_only_in_their_dates_read_exactly_as_if_read_afresh(title: str) -> None:
    for form_type in ("I-130", "I-485", "G-28"):
        first = _dated(title, form_type, date(2023, 9, 5))
        for on in (date(2024, 2, 29), date(2023, 9, 28), date(2026, 12, 1)):
            later = _dated(title, form_type, on)
            for names in _READ_TOGETHER:
                pair = _texts(later, names)
                assert _after(_texts(first, names), *pair) == _fresh(*pair), pair


@pytest.mark.parametrize(
    ("text", "hidden", "kept"),
    [
        ("We scheduled an interview on May 15, 2026, at our office.", {"15", "2026"}, set()),
        ("Programamos una entrevista el 15 de Mayo de 2026 en la oficina.", {"15", "2026"}, set()),
        ("On Mayo 15, 2026, we approved it.", {"15", "2026"}, set()),
        ("We approved your Form I-130, Petition for Alien Relative.", set(), {"130"}),
        # 28 is a number the catalog knows (G-28); 15 also counts documents here.
        ("On May 28, 2026, we did it.", {"2026"}, {"28"}),
        ("On May 15, 2026, we received 15 documents.", {"2026"}, {"15"}),
        # After "Form", a date could read as a form; entities, markup and compatibility
        # forms change what the readers see.
        ("We filed Form May 15, 2026.", set(), {"15", "2026"}),
        ("On May&nbsp;15, 2026, we approved it.", set(), {"15", "2026"}),
        ("On May 15, 2026, <b>we approved it</b>.", set(), {"15", "2026"}),
        ("On May 15, 2026, ｗe approved it.", set(), {"15", "2026"}),
    ],
)
def test_only_numbers_that_cannot_change_an_answer_are_made_anonymous(
    text: str, hidden: set[str], kept: set[str]
) -> None:
    templated, template = history_template(text)
    assert templated is bool(hidden)
    shown = set(re.findall(r"[0-9]+", re.sub(r"\x00[0-9.]+\x00", " ", template)))
    assert kept <= shown and not hidden & shown, template


# Any day, and often one whose number also appears around it or in the catalog (G-28).
_DAYS = st.one_of(
    st.dates(min_value=date(2000, 1, 1), max_value=date(2039, 12, 31)),
    st.builds(
        date,
        st.integers(2000, 2039),
        st.integers(1, 12),
        st.sampled_from([2, 5, 15, 28]),
    ),
)
_SURROUNDINGS = st.sampled_from(
    [
        ("On {d}, we approved your Form I-130, Petition for Alien Relative.", "en"),
        ("We scheduled an interview for your Form I-485 on {d}, at our office.", "en"),
        ("The status of your Form I-130, changed to: Case Was Approved on {d}.", "en"),
        ("We sent a request for evidence on {d}; respond within 87 days.", "en"),
        ("We approved your case on {d}.", "en"),
        ("Approved {d}", "en"),
        ("{d}", "en"),
        ("Card {d} Mailed 2 To Me", "en"),
        ("Case Was Received {d} With 15 Documents", "en"),
        ("We rejected your Form G-28 on {d}.", "en"),
        ("Fees Were Waived {d}", "en"),
        ("El {d}, aprobamos su Formulario I-130, Petición de Familiar Extranjero.", "es"),
        ("Programamos una entrevista para su Formulario N-400 el {d} en nuestra oficina.", "es"),
        ("Caso Fue Aprobado {d}", "es"),
    ]
)


def _written(day: date, lang: str) -> str:
    return date_en(day) if lang == "en" else date_es(day)


@settings(max_examples=300, deadline=None)
@given(surrounding=_SURROUNDINGS, first=_DAYS, second=_DAYS)
def test_any_two_dates_in_a_text_give_the_same_answer_as_reading_it_afresh(
    surrounding: tuple[str, str], first: date, second: date
) -> None:
    pattern, lang = surrounding
    seen = pattern.format(d=_written(first, lang))
    text = pattern.format(d=_written(second, lang))
    for pair, seen_pair in (((text, ""), (seen, "")), (("", text), ("", seen))):
        assert _after(seen_pair, *pair) == _fresh(*pair)
