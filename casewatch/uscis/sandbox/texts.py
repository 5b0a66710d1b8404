"""Description paragraphs the sandbox shows under a title, in English and Spanish.

English texts are USCIS's own templates (data/descriptions.json); Spanish ones
are written in USCIS's style. Placeholders are filled per case and per step.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from functools import cache
from importlib import resources
from typing import Any

from casewatch.core.statuses import default_catalog

MONTHS_ES = (
    "Enero",
    "Febrero",
    "Marzo",
    "Abril",
    "Mayo",
    "Junio",
    "Julio",
    "Agosto",
    "Septiembre",
    "Octubre",
    "Noviembre",
    "Diciembre",
)


def date_en(day: date) -> str:
    return f"{day:%B} {day.day}, {day.year}"


def date_es(day: date) -> str:
    """As USCIS writes it in Spanish: "05 de Septiembre de 2023"."""
    return f"{day.day:02d} de {MONTHS_ES[day.month - 1]} de {day.year}"


@dataclass(frozen=True)
class Texts:
    templates: dict[str, dict[str, str]]
    forms: dict[str, dict[str, str]]
    locations: tuple[str, ...]

    def template_for(self, title: str) -> dict[str, str] | None:
        """The template for a title, or for another wording of the same status."""
        found = self.templates.get(title.strip())
        if found is not None:
            return found
        status = default_catalog().by_title(title)
        if status is None:
            return None
        for wording in (status.title_en, *status.aliases_en):
            if wording in self.templates:
                return self.templates[wording]
        return None

    def form_name(self, form_type: str, lang: str) -> str:
        names = self.forms.get(form_type)
        if names:
            return names[lang]
        return f"Form {form_type}" if lang == "en" else f"Formulario {form_type}"


@cache
def texts() -> Texts:
    path = resources.files("casewatch.uscis.sandbox").joinpath("data", "descriptions.json")
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return Texts(
        templates=data["templates"],
        forms=data["forms"],
        locations=tuple(data.get("locations") or ("National Benefits Center",)),
    )


@dataclass(frozen=True)
class StepTexts:
    description_en: str
    description_es: str
    history_en: str
    history_es: str


def render_step(
    title: str,
    *,
    form_type: str,
    receipt_number: str,
    on: date,
    notice_deadline: date,
    appointment: date,
    location: str,
    description_en: str | None = None,
) -> StepTexts:
    """Fill in the texts USCIS would show for `title` on day `on`."""
    catalog = texts()
    template = catalog.template_for(title)
    values_en = {
        "date": date_en(on),
        "form_long_name": catalog.form_name(form_type, "en"),
        "receipt_number": receipt_number,
        "notice_deadline": date_en(notice_deadline),
        "appointment_date": date_en(appointment),
        "location_name": location,
    }
    values_es = {
        **values_en,
        "date": date_es(on),
        "form_long_name": catalog.form_name(form_type, "es"),
        "notice_deadline": date_es(notice_deadline),
        "appointment_date": date_es(appointment),
    }
    if template is None:
        return _generic_step(title, values_en, values_es, description_en)
    return StepTexts(
        description_en=description_en or template["en"].format(**values_en),
        description_es=template["es"].format(**values_es),
        history_en=template["history_en"].format(**values_en),
        history_es=template["history_es"].format(**values_es),
    )


def _generic_step(
    title: str, values_en: dict[str, str], values_es: dict[str, str], description_en: str | None
) -> StepTexts:
    """Texts for a title without a template: say plainly that the status changed to it.

    The history lines read like USCIS's ("The status of your Form … changed to: …"),
    and the Spanish ones name the catalog's Spanish title when there is one.
    """
    status = default_catalog().by_title(title)
    title_es = status.title_es if status is not None else title
    form_en, form_es = values_en["form_long_name"], values_es["form_long_name"]
    receipt = values_en["receipt_number"]
    return StepTexts(
        description_en=description_en
        or (
            f"On {values_en['date']}, the status of your {form_en}, "
            f"Receipt Number {receipt}, changed to: {title}."
        ),
        description_es=(
            f"El {values_es['date']}, el estado de su {form_es}, "
            f"Número de Recibo {receipt}, cambió a: {title_es}."
        ),
        history_en=f"The status of your {form_en}, changed to: {title}.",
        history_es=f"El estado de su {form_es}, cambió a: {title_es}.",
    )
