"""The case list: search, filters, sorting, pages and each member's saved views.

Search takes a receipt (whole or its beginning, typed any way) or words of a
client's name, found through the blind index (casewatch.cases.name_index)
because names are encrypted. Filters and sorts are tables, not branches: each
reads one query parameter and adds one condition. A page shows PAGE_SIZE cases
and counts matches only up to COUNT_CAP, so a firm of 100,000 cases never waits
for a full count.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlencode

from django import forms
from django.contrib import messages
from django.contrib.auth.models import User
from django.core.cache import cache
from django.db import connection
from django.db.models import BooleanField, F, Q, QuerySet
from django.db.models.expressions import RawSQL
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.functional import Promise
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from casewatch.accounts.models import Firm, Membership
from casewatch.accounts.permissions import Action, may
from casewatch.cases.models import Case, SavedView
from casewatch.cases.name_index import clients_named, ensure_name_index
from casewatch.cases.sheet import clean_form_type
from casewatch.core.receipts import OFFICES, normalize_receipt
from casewatch.core.statuses import CATEGORIES
from casewatch.web.access import staff_view
from casewatch.web.access_log import records_access
from casewatch.web.labels import URGENCY_LABELS
from casewatch.web.views import uscis_panel

PAGE_SIZE = 50
# Matches are counted up to here; beyond, the page says "more than".
COUNT_CAP = 1000
# Form types and tags offered as suggestions are read at most this often per firm.
SUGGESTIONS_SECONDS = 600
MAX_PAGE = 10_000

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
    known = [tag for tag in _suggestions(firm)["tags"] if tag.casefold() == typed.casefold()]
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
    return Q(urgency=value) if value in URGENCY_LABELS else None


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


@dataclass(frozen=True)
class ListPage:
    """One page of the list; `count` is None when matches are not counted, and counts
    stop at COUNT_CAP (`more`: there are more than that)."""

    cases: list[Case]
    number: int
    has_next: bool
    count: int | None = None
    more: bool = False

    @property
    def has_previous(self) -> bool:
        return self.number > 1

    @property
    def last(self) -> int | None:
        if self.count is None or self.more:
            return None
        return max(1, -(-self.count // PAGE_SIZE))

    @property
    def first_shown(self) -> int:
        return (self.number - 1) * PAGE_SIZE + 1 if self.cases else 0

    @property
    def last_shown(self) -> int:
        return (self.number - 1) * PAGE_SIZE + len(self.cases)


def list_page(cases: QuerySet[Case] | None, number: int, *, count: bool = True) -> ListPage:
    """The page `number` of `cases`: one row more than shown is read to know if one follows."""
    if cases is None:
        return ListPage([], 1, has_next=False, count=0)
    total = None
    if count:
        total = cases.order_by()[: COUNT_CAP + 1].count()
        if total <= COUNT_CAP:
            number = min(number, max(1, -(-total // PAGE_SIZE)))
    start = (number - 1) * PAGE_SIZE
    # The page's ids first, then its rows: the database sorts narrow rows and joins the
    # client and attorney to the 50 shown only, whatever it guessed of the filters.
    ids = list(cases.values_list("pk", flat=True)[start : start + PAGE_SIZE + 1])
    found = (
        Case.objects.select_related("client", "attorney")
        .defer("notes", "last_problem", "claimed_by", "client__time_zone")
        .in_bulk(ids)
    )
    rows = [found[pk] for pk in ids if pk in found]
    return ListPage(
        rows[:PAGE_SIZE],
        number,
        has_next=len(rows) > PAGE_SIZE,
        count=None if total is None else min(total, COUNT_CAP),
        more=total is not None and total > COUNT_CAP,
    )


def _page_number(text: str | None) -> int:
    return min(max(int(text), 1), MAX_PAGE) if text and text.isdigit() else 1


def _suggestions(firm: Firm) -> dict[str, list[str]]:
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


def attorneys(firm: Firm) -> list[User]:
    """Who may be named as a case's attorney or paralegal: the firm's members."""
    return list(
        User.objects.filter(memberships__firm=firm).order_by("first_name", "last_name", "username")
    )


@staff_view(Action.VIEW_CASES)
@records_access()
def case_list(request: HttpRequest, membership: Membership) -> HttpResponse:
    """The firm's cases, searched, filtered, sorted and a page at a time."""
    firm = membership.firm
    parameters = clean_parameters(request.GET)
    page = list_page(
        matching_cases(firm, parameters),
        _page_number(request.GET.get("page")),
        count=counted(parameters),
    )
    query = urlencode(parameters)
    return render(
        request,
        "cases/list.html",
        {
            "firm": firm,
            "page": page,
            "p": parameters,
            "query": query,
            "filtered": bool(parameters.keys() - {"sort"}),
            "categories": [c for c in CATEGORIES if c != "unknown"] + ["unknown"],
            "urgencies": list(URGENCY_LABELS),
            "states": [(key, label) for key, (label, _q) in STATES.items()],
            "receipt_states": [(key, label) for key, (label, _q) in RECEIPT_STATES.items()],
            "sorts": [(key, sort.label) for key, sort in SORTS.items()],
            "sort": parameters.get("sort") or default_sort(parameters),
            "attorneys": attorneys(firm),
            "no_attorney": NO_ATTORNEY,
            "suggestions": _suggestions(firm),
            "saved_views": SavedView.objects.filter(firm=firm, owner=membership.user).order_by(
                "name"
            ),
            "may_save_views": may(membership.role, Action.CHANGE_CASES),
            "count_cap": COUNT_CAP,
            "uscis": uscis_panel(),
        },
    )


class SavedViewForm(forms.Form):
    name = forms.CharField(label=gettext_lazy("Name of this view"), max_length=100)
    query = forms.CharField(required=False, max_length=2000, widget=forms.HiddenInput)


@staff_view(Action.CHANGE_CASES, change=Action.CHANGE_CASES)
def save_view(request: HttpRequest, membership: Membership) -> HttpResponse:
    """Keep the list's current filters under a name, for this member only (same name: replaced)."""
    form = SavedViewForm(request.POST if request.method == "POST" else None)
    if request.method != "POST" or not form.is_valid():
        messages.error(request, _("Give the view a name to save it."))
        return redirect("case-list")
    query = urlencode(clean_parameters(QueryDict(form.cleaned_data["query"])))
    name = form.cleaned_data["name"].strip()
    SavedView.objects.update_or_create(
        firm=membership.firm, owner=membership.user, name=name, defaults={"query": query}
    )
    messages.success(request, _("View “%(name)s” saved.") % {"name": name})
    return redirect(reverse("case-list") + (f"?{query}" if query else ""))


@staff_view(Action.CHANGE_CASES, change=Action.CHANGE_CASES)
def delete_view(request: HttpRequest, membership: Membership, pk: int) -> HttpResponse:
    """Forget one of this member's saved views; anyone else's is not found."""
    view = get_object_or_404(SavedView, pk=pk, firm=membership.firm, owner=membership.user)
    if request.method == "POST":
        view.delete()
        messages.success(request, _("View “%(name)s” deleted.") % {"name": view.name})
    return redirect("case-list")
