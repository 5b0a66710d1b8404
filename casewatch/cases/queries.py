"""Which of a firm's cases a list asks for: search, filters, states and sorts, as data.

Shared by the staff web app's case list and the REST API, so that both offer the same
filters with the same meaning. Search takes a receipt (whole or its beginning, typed
any way) or words of a client's name, found through the blind index
(casewatch.cases.name_index) because names are encrypted. Filters and sorts are tables,
not branches: each reads one query parameter and adds one condition.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from django.contrib.auth.models import User
from django.core.cache import cache
from django.db import connection
from django.db.models import BooleanField, F, Q, QuerySet
from django.db.models.expressions import RawSQL
from django.http import QueryDict
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy

from casewatch.accounts.models import Firm, Role
from casewatch.cases.models import Case
from casewatch.cases.name_index import clients_named, ensure_name_index
from casewatch.cases.sheet import clean_form_type
from casewatch.core.receipts import OFFICES, normalize_receipt
from casewatch.core.statuses import CATEGORIES, URGENCIES

# Form types and tags offered as suggestions are read at most this often per firm.
SUGGESTIONS_SECONDS = 600


# The beginning of a receipt: its three letters and any of its digits.
RECEIPT_START = re.compile(r"[A-Z]{3}\d{0,10}")
RECEIPT_LENGTH = 13
# A receipt's digits alone, for a receipt whose letters were left off.
RECEIPT_DIGITS = re.compile(r"\d{10}")


@dataclass(frozen=True)
class Sort:
    label: Promise
    order: tuple[str, ...]


# Each order is one an index of the case table serves (see Case.Meta.indexes).
SORTS: Mapping[str, Sort] = {
    "recent": Sort(gettext_lazy("Latest status change first"), ("-status_since", "-pk")),
    "oldest": Sort(gettext_lazy("Oldest status first"), ("status_since", "pk")),
    "receipt": Sort(gettext_lazy("Receipt number"), ("receipt_number", "pk")),
    "form": Sort(
        gettext_lazy("Form type, longest in its status first"), ("form_type", "status_since", "pk")
    ),
    "added": Sort(gettext_lazy("Added most recently"), ("-pk",)),
    "archived": Sort(gettext_lazy("Archived most recently"), ("-archived_at", "-pk")),
}
# The order a list takes unless told otherwise: the first rule that applies. Cases without
# a receipt have no status to sort by; receipts looked up are read in receipt order; an
# archive is read by when it grew.
DEFAULT_SORTS: tuple[tuple[Callable[[Mapping[str, str]], bool], str], ...] = (
    (lambda p: p.get("receipt") == "pending", "added"),
    (lambda p: receipt_search(p.get("q", "")) is not None, "receipt"),
    (lambda p: p.get("state") == "archived", "archived"),
)
DEFAULT_SORT = "recent"


def default_sort(parameters: Mapping[str, str]) -> str:
    for applies, sort in DEFAULT_SORTS:
        if applies(parameters):
            return sort
    return DEFAULT_SORT


STATES: Mapping[str, tuple[Promise, Q]] = {
    "active": (gettext_lazy("Active"), Q(archived_at__isnull=True)),
    "archived": (gettext_lazy("Archived"), Q(archived_at__isnull=False)),
    "all": (gettext_lazy("Active and archived"), Q()),
}
DEFAULT_STATE = "active"

RECEIPT_STATES: Mapping[str, tuple[Promise, Q]] = {
    "pending": (gettext_lazy("Receipt pending"), Q(receipt_number__isnull=True)),
    "known": (gettext_lazy("With a receipt number"), Q(receipt_number__isnull=False)),
}

NO_ATTORNEY = "none"


_TAGS_USED = {
    "postgresql": "SELECT DISTINCT t.tag FROM {table}, jsonb_array_elements_text({tags}) "
    "AS t(tag) WHERE firm_id = %s ORDER BY 1 LIMIT 200",
    "sqlite": "SELECT DISTINCT json_each.value FROM {table}, json_each({tags}) "
    "WHERE firm_id = %s ORDER BY 1 LIMIT 200",
}
# SQLite has no test of a JSON list's members: its own JSON functions, after a cheap test of
# the stored text for tags in plain ASCII (written the same way by every writer).
_SQLITE_HAS_TAG = "EXISTS (SELECT 1 FROM json_each({tags}) WHERE json_each.value IN ({spellings}))"
_SQLITE_MENTIONS_TAG = "{tags} LIKE %s ESCAPE '\\'"
_PLAIN_TAG = re.compile(r"[ -~]+")


def _tags_column() -> dict[str, str]:
    quote = connection.ops.quote_name
    table = quote(Case._meta.db_table)
    return {"table": table, "tags": f"{table}.{quote('tags')}"}


def has_tag(spellings: list[str]) -> Q:
    """Cases whose tag list holds one of `spellings`, in SQL, on SQLite and PostgreSQL.

    PostgreSQL tests a member with `@>` (Django's `contains`); text tests there (ILIKE
    on the JSON as text) cost five times as much per case.
    """
    if connection.vendor != "sqlite":
        found = Q()
        for spelling in spellings:
            found |= Q(tags__contains=[spelling])
        return found
    names = _tags_column()
    marks = ", ".join(["%s"] * len(spellings))
    # Only table and column names go into the text; the tags are parameters.
    sql = _SQLITE_HAS_TAG.format(spellings=marks, **names)
    exact = Q(RawSQL(sql, spellings, BooleanField()))  # noqa: S611
    if not all(_PLAIN_TAG.fullmatch(t) and '"' not in t and "\\" not in t for t in spellings):
        return exact
    mentioned = Q()
    for spelling in spellings:
        pattern = '%"' + re.sub(r"([%_])", r"\\\1", spelling) + '"%'
        mentioned |= Q(RawSQL(_SQLITE_MENTIONS_TAG.format(**names), [pattern], BooleanField()))  # noqa: S611
    return mentioned & exact


def tag_spellings(firm: Firm, typed: str) -> list[str]:
    """The ways the firm writes the tag typed ("PRIORITY" → "priority", "Priority")."""
    typed = typed.strip()
    known = [tag for tag in suggestions(firm)["tags"] if tag.casefold() == typed.casefold()]
    return sorted({typed, *known})


@dataclass(frozen=True)
class Search:
    """What the search box asks for: a condition, and whether it is about names."""

    condition: Q
    by_name: bool


def receipt_prefix(prefix: str) -> Q:
    """Receipts starting with `prefix`, as a range the receipt index serves on any database.

    Receipts are upper-case letters and digits, which sort the same way in every
    collation, so padding with "Z" bounds them; `startswith` keeps the meaning exact.
    """
    upper = prefix + "Z" * (RECEIPT_LENGTH - len(prefix))
    return Q(receipt_number__range=(prefix, upper), receipt_number__startswith=prefix)


def receipt_search(text: str) -> Q | None:
    """The receipts `text` asks for, when it is a receipt or the start of one.

    Letters and digits are a receipt ("eac 24", "EAC2490012345"); so are three letters
    that are a USCIS office ("EAC"), and a receipt's ten digits without its letters.
    """
    receipt = normalize_receipt(text)
    if RECEIPT_START.fullmatch(receipt) and (receipt[3:] or receipt in OFFICES):
        return receipt_prefix(receipt)
    if RECEIPT_DIGITS.fullmatch(receipt):
        return Q(receipt_number__in=[office + receipt for office in sorted(OFFICES)])
    return None


def search(firm: Firm, text: str) -> Search | None:
    """Cases matching what was typed in the search box: a receipt, or words of a client's name.

    None: nothing can match.
    """
    receipts = receipt_search(text)
    if receipts is not None:
        return Search(receipts, by_name=False)
    ensure_name_index(firm)
    clients = clients_named(firm, text)
    if clients is None:
        return None
    return Search(Q(client_id__in=clients), by_name=True)


# --- Filters: one query parameter each, read into a condition ----------------------

Reader = Callable[[Firm, str], Q | None]


@dataclass(frozen=True)
class Filter:
    """One query parameter read into a condition; `counted`: an index can count its matches."""

    read: Reader
    counted: bool = True


def _category(firm: Firm, value: str) -> Q | None:
    return Q(category=value) if value in CATEGORIES else None


def _urgency(firm: Firm, value: str) -> Q | None:
    return Q(urgency=value) if value in URGENCIES else None


def _form(firm: Firm, value: str) -> Q | None:
    """Forms as casewatch stores them ("i485" finds I-485); anything else as typed."""
    form_type, problem = clean_form_type(value)
    return Q(form_type=value.strip() if problem else form_type)


def _attorney(firm: Firm, value: str) -> Q | None:
    if value == NO_ATTORNEY:
        return Q(attorney__isnull=True)
    return Q(attorney_id=int(value)) if value.isdigit() else None


def _tag(firm: Firm, value: str) -> Q | None:
    return has_tag(tag_spellings(firm, value)) if value.strip() else None


def _receipt(firm: Firm, value: str) -> Q | None:
    known = RECEIPT_STATES.get(value)
    return known[1] if known else None


FILTERS: Mapping[str, Filter] = {
    "category": Filter(_category),
    "urgency": Filter(_urgency),
    "form": Filter(_form),
    "attorney": Filter(_attorney),
    # Tags live in a JSON list no index reaches: matches are shown a page at a time, uncounted.
    "tag": Filter(_tag, counted=False),
    "receipt": Filter(_receipt),
}
# Every parameter the list understands, in the order a saved view keeps them.
PARAMETERS = ("q", *FILTERS, "state", "sort")


def clean_parameters(query: QueryDict | Mapping[str, str]) -> dict[str, str]:
    """The list's own parameters from a query string, without empty or default ones."""
    cleaned: dict[str, str] = {}
    for name in PARAMETERS:
        value = str(query.get(name, "") or "").strip()[:200]
        if value:
            cleaned[name] = value
    if cleaned.get("state") not in STATES or cleaned.get("state") == DEFAULT_STATE:
        cleaned.pop("state", None)
    if cleaned.get("sort") not in SORTS or cleaned.get("sort") == default_sort(cleaned):
        cleaned.pop("sort", None)
    return cleaned


def counted(parameters: Mapping[str, str]) -> bool:
    """Whether the matches of these parameters can be counted from indexes alone."""
    return all(FILTERS[name].counted for name in FILTERS if parameters.get(name))


def matching_cases(firm: Firm, parameters: Mapping[str, str]) -> QuerySet[Case] | None:
    """The firm's cases the parameters ask for, in their order; None when a search finds none."""
    text = parameters.get("q", "")
    found = search(firm, text) if text else None
    if text and found is None:
        return None
    cases: QuerySet[Case]
    if found is not None and found.by_name and connection.vendor == "sqlite":
        # A name's clients are the few rows to start from. Written so, the firm's own
        # indexes cannot tempt SQLite (which keeps no statistics unless asked) into
        # walking the firm's whole caseload and testing each case against the names.
        # PostgreSQL knows how many cases a firm has, and plans better without it.
        cases = Case.objects.alias(firm_scope=F("firm_id") + 0).filter(firm_scope=firm.pk)
    else:
        cases = Case.objects.filter(firm=firm)
    cases = cases.filter(STATES[parameters.get("state", DEFAULT_STATE)][1])
    if found is not None:
        cases = cases.filter(found.condition)
    for name, step in FILTERS.items():
        value = parameters.get(name, "")
        condition = step.read(firm, value) if value else None
        if condition is not None:
            cases = cases.filter(condition)
    return cases.order_by(*SORTS[parameters.get("sort") or default_sort(parameters)].order)


def suggestions(firm: Firm) -> dict[str, list[str]]:
    """Form types and tags the firm uses, for the filter fields' suggestion lists."""
    key = f"casewatch:case-list-suggestions:{firm.pk}:{firm.created_at.timestamp()}"
    found: dict[str, list[str]] | None = cache.get(key)
    if found is None:
        forms_used = (
            Case.objects.filter(firm=firm)
            .exclude(form_type="")
            .order_by("form_type")
            .values_list("form_type", flat=True)
            .distinct()[:200]
        )
        found = {"forms": list(forms_used), "tags": _tags_used(firm)}
        cache.set(key, found, SUGGESTIONS_SECONDS)
    return found


def _tags_used(firm: Firm) -> list[str]:
    sql = _TAGS_USED[connection.vendor].format(**_tags_column())
    with connection.cursor() as cursor:
        cursor.execute(sql, [firm.pk])
        return [str(row[0]) for row in cursor.fetchall()]


# Who may be named in each role on a case: the firm's members with these roles.
ASSIGNABLE: Mapping[str, tuple[Role, ...]] = {
    "attorney": (Role.ATTORNEY, Role.ADMIN),
    "paralegal": (Role.PARALEGAL, Role.OPERATIONS, Role.ADMIN),
}


def members(firm: Firm, roles: tuple[Role, ...]) -> QuerySet[User]:
    """The firm's members with one of these roles, by name."""
    return (
        User.objects.filter(memberships__firm=firm, memberships__role__in=roles)
        .order_by("first_name", "last_name", "username")
        .distinct()
    )
