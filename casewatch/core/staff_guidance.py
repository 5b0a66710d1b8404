"""What each change of status means for the firm and what the firm does next, as data.

The texts live in data/staff_guidance.toml, one pair per category and one for each
frequent status whose category says too little; this module reads and checks them.
They are English gettext msgids: the staff app translates them (casewatch.web.guidance),
this module stays free of Django.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources

from casewatch.core.statuses import CATEGORIES, URGENCIES, CatalogError, default_catalog

FIELDS = ("meaning", "next_step")


@dataclass(frozen=True)
class Guidance:
    """A change's plain-language meaning and the firm's next step (English msgids)."""

    meaning: str
    next_step: str


@dataclass(frozen=True)
class StaffGuidance:
    by_category: Mapping[str, Guidance]
    by_status: Mapping[str, Guidance]
    urgency_order: tuple[str, ...]
    category_order: tuple[str, ...]

    def for_change(self, status: str, category: str) -> Guidance:
        """The status's own guidance if it has one, else its category's (else `unknown`'s)."""
        special = self.by_status.get(status)
        if special is not None:
            return special
        return self.by_category.get(category) or self.by_category["unknown"]

    def texts(self) -> list[str]:
        """Every text once, in file order: what the translation catalog must hold."""
        seen: dict[str, None] = {}
        for guidance in (*self.by_category.values(), *self.by_status.values()):
            seen.setdefault(guidance.meaning)
            seen.setdefault(guidance.next_step)
        return list(seen)


def load_guidance(data: Mapping[str, object]) -> StaffGuidance:
    """Check the data and build the guidance; CatalogError names the first problem."""
    categories = _table(data.get("category", {}), "category")
    missing = [c for c in CATEGORIES if c not in categories]
    unknown = [c for c in categories if c not in CATEGORIES]
    if missing or unknown:
        raise CatalogError(f"staff guidance: categories missing {missing}, unknown {unknown}")
    by_category = {
        code: _guidance(_table(categories[code], code), code, None) for code in CATEGORIES
    }
    statuses = default_catalog().statuses
    by_status: dict[str, Guidance] = {}
    for key, entry in _table(data.get("status", {}), "status").items():
        status = statuses.get(key)
        if status is None:
            raise CatalogError(f"staff guidance for {key!r}, which is not a catalog status")
        by_status[key] = _guidance(_table(entry, key), key, by_category[status.category])
    order = _table(data.get("order", {}), "order")
    return StaffGuidance(
        by_category=by_category,
        by_status=by_status,
        urgency_order=_permutation(order.get("urgencies"), URGENCIES, "order.urgencies"),
        category_order=_permutation(order.get("categories"), CATEGORIES, "order.categories"),
    )


def _guidance(entry: Mapping[str, object], where: str, fallback: Guidance | None) -> Guidance:
    extra = set(entry) - set(FIELDS)
    if extra:
        raise CatalogError(f"staff guidance for {where!r} has unknown fields {sorted(extra)}")
    texts: dict[str, str] = {}
    for name in FIELDS:
        value = entry.get(name)
        if value is None and fallback is not None:
            texts[name] = getattr(fallback, name)
            continue
        if not isinstance(value, str) or not value.strip():
            raise CatalogError(f"staff guidance for {where!r} needs a {name}")
        if "%" in value or '"' in value or "<" in value:
            raise CatalogError(f"staff guidance for {where!r}: no %, double quotes or markup")
        texts[name] = " ".join(value.split())
    return Guidance(**texts)


def _table(value: object, where: str) -> dict[str, object]:
    if not isinstance(value, dict):
        raise CatalogError(f"staff guidance: {where} must be a table")
    return value


def _permutation(value: object, expected: Iterable[str], where: str) -> tuple[str, ...]:
    """An order must name each code exactly once, so nothing sorts by accident."""
    codes = sorted(expected)
    if not isinstance(value, list) or sorted(map(str, value)) != codes:
        raise CatalogError(f"staff guidance: {where} must list each of {codes} once")
    return tuple(map(str, value))


@cache
def default_guidance() -> StaffGuidance:
    """The guidance shipped with casewatch, loaded once per process."""
    with resources.files("casewatch.core").joinpath("data", "staff_guidance.toml").open("rb") as f:
        return load_guidance(tomllib.load(f))
