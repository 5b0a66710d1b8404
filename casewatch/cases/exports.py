"""The firm's cases and status events as CSV, for the systems firms use (and for Excel).

One place for the file's content, shared by the staff web app (casewatch.web.exports)
and the REST API (casewatch.api.exports): the same columns, in the same order, with
the same meaning, whoever asks.

The file: UTF-8 with a byte-order mark (Excel reads UTF-8 only with one), a header
row of the column names below, then one row per case or per status event. Every
cell passes through `casewatch.core.spreadsheet.safe_cell`, so a value a spreadsheet
would run as a formula (a client named "=HYPERLINK(…)", a phone "+1…") starts with
a "'" and is shown as text. Times are ISO 8601 in UTC to the second
("2026-03-02T15:00:00Z"), dates ISO 8601 ("2026-03-02"), yes/no "true"/"false",
an unknown value an empty cell. The rows are streamed: querysets are read in chunks
of CHUNK rows with their client and staff joined in, so 50,000 cases never sit in
memory and cost no query per row.

Personal data: clients' names, e-mails and phones, and case notes, are in the file
only for a caller who may see them (`personal=True`). For anyone else those columns
are LEFT OUT, header and all, never written empty: a system syncing the file must not
read an empty cell as "no e-mail on file" and wipe its own copy. Nothing personal is
even decrypted for a file without them.

Cases (CASE_COLUMNS, one row per case; `*`: personal, only with `personal=True`):
id, receipt_number (empty while pending), form_type, status, category, urgency,
title_en, title_es, status_since (when casewatch saw the status begin),
uscis_status_since (when USCIS says it began), filed_on, client_reference (the firm's
own client id), client_name*, client_email*, client_phone* (E.164), client_language
(ISO 639-1), attorney_id, attorney, paralegal_id, paralegal (a member's name), tags
(", " between them, as the import reads them), notes*, archived_at, last_checked_at,
created_at, updated_at, case_url (the case's page in the staff app).

Status events (EVENT_COLUMNS, one row per change, oldest first): id, case_id,
receipt_number, form_type, client_reference, client_name*, status, previous_status,
category, urgency, title_en, title_es, description_en, description_es, uscis_date
(the date USCIS gives the change), observed_at (when casewatch saw it), initial (the
first status casewatch saw for the case), recovered (read from USCIS history: it
happened between two checks), case_url.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, date, datetime
from typing import Any

from django.contrib.auth.models import User
from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from django.urls import reverse

from casewatch.cases.models import Case, StatusEvent
from casewatch.cases.queries import receipt_search
from casewatch.core.spreadsheet import safe_cell

# Rows read from the database at a time.
CHUNK = 2000
# Text sent to the client at a time: enough rows to fill a network write, not a file.
SEND_AT = 64 * 1024
BOM = "\ufeff"
CONTENT_TYPE = "text/csv; charset=utf-8"

Cell = Callable[[Any], object]


def utc(value: datetime | date | None) -> str:
    """A time as ISO 8601 in UTC to the second ("…Z"), a date as ISO 8601, None as ""."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    return value.isoformat()


def _yes(value: bool) -> str:
    return "true" if value else "false"


def _member(user: User | None) -> str:
    return "" if user is None else user.get_full_name() or user.username


def _client(name: str) -> Cell:
    return lambda case: getattr(case.client, name) if case.client_id else ""


def _site_url(site: str) -> Cell:
    return lambda case: site + reverse("case-detail", args=[case.pk])


def case_cells(site: str) -> Mapping[str, Cell]:
    """Every column of the cases file and how a case fills it, in the file's order."""
    return {
        "id": lambda case: case.pk,
        "receipt_number": lambda case: case.receipt_number,
        "form_type": lambda case: case.form_type,
        "status": lambda case: case.status,
        "category": lambda case: case.category,
        "urgency": lambda case: case.urgency,
        "title_en": lambda case: case.title_en,
        "title_es": lambda case: case.title_es,
        "status_since": lambda case: utc(case.status_since),
        "uscis_status_since": lambda case: utc(case.uscis_status_since),
        "filed_on": lambda case: utc(case.filed_on),
        "client_reference": _client("reference"),
        "client_name": _client("name"),
        "client_email": _client("email"),
        "client_phone": _client("phone"),
        "client_language": lambda case: (case.client.language or "en") if case.client_id else "",
        "attorney_id": lambda case: case.attorney_id,
        "attorney": lambda case: _member(case.attorney),
        "paralegal_id": lambda case: case.paralegal_id,
        "paralegal": lambda case: _member(case.paralegal),
        "tags": lambda case: ", ".join(str(tag) for tag in case.tags),
        "notes": lambda case: case.notes,
        "archived_at": lambda case: utc(case.archived_at),
        "last_checked_at": lambda case: utc(case.last_checked_at),
        "created_at": lambda case: utc(case.created_at),
        "updated_at": lambda case: utc(case.updated_at),
        "case_url": _site_url(site),
    }


def event_cells(site: str) -> Mapping[str, Cell]:
    """Every column of the status events file and how an event fills it, in order."""
    of_case = _site_url(site)
    return {
        "id": lambda event: event.pk,
        "case_id": lambda event: event.case_id,
        "receipt_number": lambda event: event.case.receipt_number,
        "form_type": lambda event: event.case.form_type,
        "client_reference": lambda event: _client("reference")(event.case),
        "client_name": lambda event: _client("name")(event.case),
        "status": lambda event: event.status,
        "previous_status": lambda event: event.previous_status,
        "category": lambda event: event.category,
        "urgency": lambda event: event.urgency,
        "title_en": lambda event: event.title_en,
        "title_es": lambda event: event.title_es,
        "description_en": lambda event: event.description_en,
        "description_es": lambda event: event.description_es,
        "uscis_date": lambda event: utc(event.uscis_date),
        "observed_at": lambda event: utc(event.observed_at),
        "initial": lambda event: _yes(event.initial),
        "recovered": lambda event: _yes(event.recovered),
        "case_url": lambda event: of_case(event.case),
    }


CASE_COLUMNS: tuple[str, ...] = tuple(case_cells(""))
EVENT_COLUMNS: tuple[str, ...] = tuple(event_cells(""))
# Left out of the file for a caller who may not see clients' personal data.
PERSONAL_COLUMNS = frozenset({"client_name", "client_email", "client_phone", "notes"})


def columns(all_columns: tuple[str, ...], *, personal: bool) -> tuple[str, ...]:
    """The columns a caller gets: all of them, or all but the personal ones."""
    return tuple(c for c in all_columns if personal or c not in PERSONAL_COLUMNS)


class _Line:
    """What csv.writer writes to: it hands each formatted line back instead of keeping it."""

    def write(self, text: str) -> str:
        return text


def _lines(
    rows: Iterable[Any], cells: Mapping[str, Cell], chosen: tuple[str, ...]
) -> Iterator[str]:
    writer = csv.writer(_Line())
    yield BOM + str(writer.writerow(chosen))
    fill = [cells[name] for name in chosen]
    for row in rows:
        yield str(writer.writerow([safe_cell(cell(row)) for cell in fill]))


def case_lines(cases: QuerySet[Case] | None, *, personal: bool, site: str) -> Iterator[str]:
    """The cases file, a line at a time, in the queryset's order (None: header only).

    `site` is where the staff app answers ("https://casewatch.example.com"), for case_url.
    """
    rows: Iterable[Case] = ()
    if cases is not None:
        found = cases.select_related("client", "attorney", "paralegal").defer(
            "last_problem", "claimed_by", "client__time_zone"
        )
        if not personal:
            found = found.defer("notes", "client__personal")
        rows = found.iterator(chunk_size=CHUNK)
    return _lines(rows, case_cells(site), columns(CASE_COLUMNS, personal=personal))


def firm_events(
    firm_id: int, since: datetime | None = None, until: datetime | None = None
) -> QuerySet[StatusEvent]:
    """The firm's status events casewatch saw at or after `since` and before `until`,
    oldest first (the order of the index on firm and observed_at)."""
    events = StatusEvent.objects.filter(firm_id=firm_id)
    if since is not None:
        events = events.filter(observed_at__gte=since)
    if until is not None:
        events = events.filter(observed_at__lt=until)
    return events.order_by("observed_at", "pk")


def event_lines(events: QuerySet[StatusEvent], *, personal: bool, site: str) -> Iterator[str]:
    """The status events file, a line at a time, in the queryset's order."""
    found = events.select_related("case", "case__client").defer(
        "case__notes", "case__last_problem", "case__claimed_by", "case__client__time_zone"
    )
    if not personal:
        found = found.defer("case__client__personal")
    rows = found.iterator(chunk_size=CHUNK)
    return _lines(rows, event_cells(site), columns(EVENT_COLUMNS, personal=personal))


def audit_details(
    *, personal: bool, filters: Mapping[str, str] | None = None, **window: datetime | None
) -> dict[str, Any]:
    """What the audit chain keeps of an export: its format, whether it held personal
    columns, and what was asked for; never the rows, and never search words (they may be
    a client's name), only whether the search was for a receipt or a name."""
    details: dict[str, Any] = {"format": "csv", "personal": personal}
    if filters is not None:
        asked = {name: value for name, value in filters.items() if name != "q"}
        if filters.get("q"):
            asked["search"] = "receipt" if receipt_search(filters["q"]) is not None else "name"
        details["filters"] = asked
    for name, value in window.items():
        details[name] = utc(value) or None
    return details


def in_parts(lines: Iterable[str]) -> Iterator[str]:
    """The lines joined into parts of about SEND_AT characters, each sent in one write."""
    part: list[str] = []
    size = 0
    for line in lines:
        part.append(line)
        size += len(line)
        if size >= SEND_AT:
            yield "".join(part)
            part, size = [], 0
    if part:
        yield "".join(part)


def csv_response(lines: Iterable[str], filename: str) -> StreamingHttpResponse:
    """A streamed download of the lines, named `filename`, kept by no cache on the way."""
    response = StreamingHttpResponse(in_parts(lines), content_type=CONTENT_TYPE)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["Cache-Control"] = "no-store"
    return response


def file_name(slug: str, what: str, at: datetime) -> str:
    """`alpha-cases-20260302-1500.csv`: the firm, what, and when (UTC)."""
    return f"{slug}-{what}-{at.astimezone(UTC):%Y%m%d-%H%M}.csv"
