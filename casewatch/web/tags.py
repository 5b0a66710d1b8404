"""Template filters of the staff app (`{% load casewatch %}`): codes in words, in the page's
language, and figures written the way that language writes them."""

from __future__ import annotations

from datetime import date
from typing import Any

from django import template
from django.utils.formats import number_format
from django.utils.translation import get_language

from casewatch.web.labels import CATEGORY_LABELS, PROBLEM_LABELS, URGENCY_LABELS

register = template.Library()


@register.filter
def category_label(code: str) -> str:
    return str(CATEGORY_LABELS.get(code, code))


@register.filter
def urgency_label(code: str) -> str:
    return str(URGENCY_LABELS.get(code, code))


@register.filter
def problem_label(code: str) -> str:
    return str(PROBLEM_LABELS.get(code, ""))


@register.filter
def title_in_language(item: Any) -> str:
    """USCIS's own title in the page's language when USCIS gave one, else in English."""
    spanish = str(getattr(item, "title_es", "") or "")
    if spanish and _speaking_spanish():
        return spanish
    return str(getattr(item, "title_en", "") or "")


@register.filter
def other_title(item: Any) -> str:
    """The title in the other language, to show beside the first one (may be empty)."""
    spanish = str(getattr(item, "title_es", "") or "")
    if spanish and _speaking_spanish():
        return str(getattr(item, "title_en", "") or "")
    return spanish


def _speaking_spanish() -> bool:
    return (get_language() or "en").startswith("es")


@register.filter
def hours(value: float | None) -> str:
    """A delay as people say it: minutes under an hour, then hours."""
    if value is None:
        return "?"
    if value < 1:
        return f"{number_format(round(value * 60), use_l10n=True)} min"
    return f"{number_format(value, 1 if value < 10 else 0, use_l10n=True)} h"


@register.filter
def days_after(later: date, earlier: date) -> int:
    return (later - earlier).days
