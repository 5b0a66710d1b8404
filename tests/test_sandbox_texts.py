"""The sandbox's description texts: every status it can show has USCIS-style English and Spanish."""

from __future__ import annotations

import re
import string
import tomllib
from datetime import date
from importlib import resources
from pathlib import Path

import pytest

from casewatch.uscis.sandbox.texts import render_step, texts

ALLOWED_PLACEHOLDERS = {
    "date",
    "form_long_name",
    "receipt_number",
    "notice_deadline",
    "appointment_date",
    "location_name",
}
FIELDS = ("en", "es", "history_en", "history_es")
REQUIRED_FORMS = (
    "I-90",
    "I-129",
    "I-129F",
    "I-130",
    "I-131",
    "I-140",
    "I-360",
    "I-485",
    "I-526",
    "I-539",
    "I-589",
    "I-751",
    "I-765",
    "I-821",
    "I-821D",
    "I-817",
    "I-824",
    "I-829",
    "N-400",
    "N-565",
    "N-600",
)
REFERENCE_TITLES_FILE = Path(__file__).parent / "data" / "reference_description_titles.txt"


def placeholders(text: str) -> set[str]:
    """The field names `str.format` would look up in `text` (raises on a stray brace)."""
    return {field for _, field, _, _ in string.Formatter().parse(text) if field is not None}


def reference_titles() -> list[str]:
    lines = REFERENCE_TITLES_FILE.read_text(encoding="utf-8").splitlines()
    return [line for line in lines if line.strip() and not line.startswith("#")]


def path_titles() -> list[str]:
    data_dir = resources.files("casewatch.uscis.sandbox").joinpath("data", "paths.toml")
    book = tomllib.loads(data_dir.read_text(encoding="utf-8"))
    titles: list[str] = []
    for path in book["path"]:
        for step in path["steps"]:
            if step["title"] not in titles:
                titles.append(step["title"])
    return titles


def render(title: str, form_type: str = "I-130"):
    return render_step(
        title,
        form_type=form_type,
        receipt_number="EAC9999103403",
        on=date(2023, 9, 5),
        notice_deadline=date(2023, 10, 5),
        appointment=date(2023, 10, 12),
        location="Chicago Field Office",
    )


TEMPLATES = texts().templates


@pytest.mark.parametrize("title", sorted(TEMPLATES))
def test_every_template_has_all_four_texts(title: str) -> None:
    template = TEMPLATES[title]
    for field in FIELDS:
        assert isinstance(template.get(field), str), field
        assert template[field].strip(), f"{title!r}: {field} is empty"


@pytest.mark.parametrize("title", sorted(TEMPLATES))
def test_templates_use_only_the_allowed_placeholders(title: str) -> None:
    for field in FIELDS:
        unknown = placeholders(TEMPLATES[title][field]) - ALLOWED_PLACEHOLDERS
        assert not unknown, f"{title!r}: {field} uses {sorted(unknown)}"


@pytest.mark.parametrize("title", sorted(TEMPLATES))
def test_english_and_spanish_fill_the_same_placeholders(title: str) -> None:
    template = TEMPLATES[title]
    assert placeholders(template["en"]) == placeholders(template["es"])


@pytest.mark.parametrize("title", sorted(TEMPLATES))
def test_texts_carry_no_stray_characters(title: str) -> None:
    template = TEMPLATES[title]
    assert "¿" not in template["en"]
    assert not re.search(r"[^\x00-\x7f]", template["en"]), "English is plain ASCII"
    assert "  " not in template["en"] and "  " not in template["es"]


def test_history_lines_are_one_undated_uscis_style_sentence() -> None:
    # As hist_case_status words them: "We approved your Form I-130, Petition for Alien
    # Relative." The entry carries its own date, and USCIS leaves the receipt out.
    for title, template in TEMPLATES.items():
        for lang in ("en", "es"):
            history = template[f"history_{lang}"]
            assert history[0].isupper() and history.endswith("."), (title, lang)
            assert not re.search(r"\.\s+[A-Z]", history), (title, lang)
            assert len(history) <= 260, (title, lang)
            undated = ALLOWED_PLACEHOLDERS - {"date", "receipt_number", "notice_deadline"}
            assert placeholders(history) <= undated, (title, lang)
        assert not re.search(r"[^\x00-\x7f]", template["history_en"]), title


def test_every_title_of_the_sandbox_paths_has_its_own_template() -> None:
    missing = [title for title in path_titles() if title not in TEMPLATES]
    assert not missing
    for title in path_titles():
        assert texts().template_for(title) is TEMPLATES[title]


def test_every_reference_title_has_a_template() -> None:
    titles = reference_titles()
    assert len(titles) == 91
    missing = [title for title in titles if title not in TEMPLATES]
    assert not missing


def test_scheduled_appointments_say_when_and_where() -> None:
    for title in (
        "Biometrics Appointment Was Scheduled",
        "Interview Was Scheduled",
        "Interview Was Rescheduled",
        "Oath Ceremony Notice Was Mailed",
    ):
        for lang in ("en", "es"):
            assert {"appointment_date", "location_name"} <= placeholders(TEMPLATES[title][lang])


def test_requests_for_evidence_say_when_they_were_sent() -> None:
    for title in (
        "Request for Evidence Was Sent",
        "Request for Additional Evidence Was Sent",
        "Request for Initial Evidence Was Sent",
        "Notice Of Intent To Deny Was Sent",
    ):
        assert {"date", "notice_deadline"} <= placeholders(TEMPLATES[title]["en"])


def test_an_approval_renders_in_both_languages() -> None:
    step = render("Case Was Approved")
    assert step.description_en.startswith(
        "On September 5, 2023, we approved your Form I-130, Petition for Alien Relative, "
        "Receipt Number EAC9999103403."
    )
    assert step.description_es.startswith(
        "El 05 de Septiembre de 2023, aprobamos su Formulario I-130, "
        "Petición de Familiar Extranjero, Número de Recibo EAC9999103403."
    )
    assert "05 de Octubre de 2023" in step.description_es
    assert (step.history_en, step.history_es) == (
        "We approved your Form I-130, Petition for Alien Relative.",
        "Aprobamos su Formulario I-130, Petición de Familiar Extranjero.",
    )


def test_an_interview_notice_names_the_day_and_the_office() -> None:
    step = render("Interview Was Scheduled", form_type="I-485")
    assert "October 12, 2023, at our Chicago Field Office location" in step.description_en
    assert "el 12 de Octubre de 2023 en nuestra oficina Chicago Field Office" in step.description_es
    assert "Formulario I-485, Solicitud de Registro de Residencia Permanente" in step.description_es


@pytest.mark.parametrize("title", sorted(TEMPLATES))
def test_every_template_renders_without_leftover_braces(title: str) -> None:
    step = render(title)
    for text in (step.description_en, step.description_es, step.history_en, step.history_es):
        assert "{" not in text and "}" not in text
    assert "Septiembre" not in step.description_en


def test_every_form_has_english_and_spanish_long_names() -> None:
    forms = texts().forms
    assert set(REQUIRED_FORMS) <= set(forms)
    for form_type, names in forms.items():
        assert names["en"].startswith(f"Form {form_type}, "), form_type
        assert names["es"].startswith(f"Formulario {form_type}, "), form_type


def test_locations_include_the_service_centers() -> None:
    locations = texts().locations
    assert len(set(locations)) == len(locations)
    assert "National Benefits Center" in locations
    assert {"Nebraska Service Center", "Texas Service Center", "Potomac Service Center"} <= set(
        locations
    )
