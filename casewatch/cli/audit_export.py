"""`casewatch audit export`: the audit chain, or part of it, as CSV or JSON for auditors.

Each entry is written with its place in the chain (`seq`, `prev_hash`) and its
`hash`, so an export can be held against `casewatch audit verify` and against the
database later. Entries are streamed from the database in chunks, so a chain of
millions never sits in memory. The export is itself audited ("audit.exported",
with the filter, not the content) before the first entry is written, and covers
exactly the entries before its own.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import IO, Any

from casewatch.cli.bootstrap import prepare_django
from casewatch.config import ConfigError
from casewatch.core.spreadsheet import safe_cell

FIELDS = (
    "seq",
    "at",
    "action",
    "actor",
    "object_type",
    "object_id",
    "firm",
    "details",
    "prev_hash",
    "hash",
)
EXPORT_CHUNK = 2000
EXPORT_ACTOR = "cli"


@dataclass(frozen=True)
class ExportFilter:
    """Which entries to export. Times are UTC; `start` inclusive, `end` exclusive."""

    start: datetime | None = None
    end: datetime | None = None
    receipt: str | None = None
    firm_slug: str | None = None


def register(actions: Any) -> None:
    export = actions.add_parser(
        "export",
        help="write audit entries as CSV or JSON",
        description=(
            "Write every audit entry in range, for one case or all, as CSV (with a header) "
            "or one JSON array, each with its seq, prev_hash and hash. Dates are ISO 8601, "
            "in UTC, and inclusive. The export itself is audited."
        ),
    )
    export.add_argument("--format", choices=("csv", "json"), default="csv", help="default: csv")
    export.add_argument("--from", dest="date_from", metavar="DATE", help="first day (or time)")
    export.add_argument("--to", dest="date_to", metavar="DATE", help="last day (or time)")
    export.add_argument(
        "--case",
        metavar="RECEIPT",
        help="only this case's entries and those of its events, deadlines and notifications",
    )
    export.add_argument("--firm", metavar="SLUG", help="only this firm's entries")
    export.add_argument("--output", metavar="FILE", help="write here (default: stdout)")
    export.set_defaults(run=run_export)


def run_export(args: argparse.Namespace) -> int:
    start = parse_when(args.date_from, "--from", end=False)
    end = parse_when(args.date_to, "--to", end=True)
    if start is not None and end is not None and start >= end:
        raise ConfigError(f"--from {args.date_from} is after --to {args.date_to}")
    receipt = None
    if args.case is not None:
        from casewatch.core.receipts import InvalidReceipt, parse_receipt

        try:
            receipt = parse_receipt(args.case).number
        except InvalidReceipt as exc:
            raise ConfigError(f"--case {args.case!r}: {exc}") from exc
    output = Path(args.output) if args.output else None
    if output is not None and not output.parent.is_dir():
        raise ConfigError(f"--output {args.output}: the folder {output.parent} does not exist")
    prepare_django()
    chosen = ExportFilter(start=start, end=end, receipt=receipt, firm_slug=args.firm)
    if output is None:
        count = export_audit(sys.stdout, args.format, chosen)
        sys.stdout.flush()
        return 0
    partial = output.with_name(f".{output.name}.partial")
    try:
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    except OSError as exc:
        raise ConfigError(f"--output {args.output}: {exc.strerror}") from exc
    try:
        with open(fd, "w", encoding="utf-8", newline="") as out:
            count = export_audit(out, args.format, chosen)
        os.replace(partial, output)
    finally:
        partial.unlink(missing_ok=True)
    noun = "entry" if count == 1 else "entries"
    print(f"Exported {count} audit {noun} to {output}.", flush=True)
    return 0


def parse_when(text: str | None, option: str, *, end: bool) -> datetime | None:
    """An ISO 8601 date or time, in UTC unless it says otherwise, as a bound.

    A date means the whole day: `--from` its first instant, `--to` the first instant
    of the next day (exclusive), so both are inclusive as people mean them. A time
    given to `--to` is inclusive too (its next microsecond is the exclusive bound).
    """
    if text is None:
        return None
    try:
        day = date.fromisoformat(text.strip())
    except ValueError:
        pass
    else:
        start_of_day = datetime.combine(day, time.min, tzinfo=UTC)
        return start_of_day + timedelta(days=1) if end else start_of_day
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise ConfigError(
            f"{option} {text!r} is not an ISO 8601 date or time (e.g. 2026-03-02)"
        ) from exc
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return moment + timedelta(microseconds=1) if end else moment


def export_audit(out: IO[str], fmt: str, chosen: ExportFilter, *, actor: str = EXPORT_ACTOR) -> int:
    """Audit the export, then write the entries it covers to `out`; return how many.

    Bad `--case`/`--firm` values raise ConfigError before anything is recorded or written.
    """
    from django.db import transaction

    from casewatch.audit.chain import record

    firm_id, where, case_ids = _selection(chosen)
    with transaction.atomic():
        marker = record(
            "audit.exported",
            object_type="audit_log",
            object_id="chain",
            firm_id=firm_id,
            actor=actor,
            details={
                "format": fmt,
                "from": chosen.start.isoformat() if chosen.start else None,
                "to": chosen.end.isoformat() if chosen.end else None,
                "to_exclusive": True,
                "case_ids": case_ids,
                "firm": firm_id,
            },
        )
    rows = _entries(where, before_seq=marker.seq)
    if fmt == "json":
        return write_json(out, rows)
    return write_csv(out, rows)


def _selection(chosen: ExportFilter) -> tuple[int | None, Any, list[int] | None]:
    """(firm id, the Q of entries wanted, the case ids) for a filter; ConfigError when
    the firm or the case does not exist."""
    from django.db.models import Q

    from casewatch.accounts.models import Firm

    where = Q()
    if chosen.start is not None:
        where &= Q(at__gte=chosen.start)
    if chosen.end is not None:
        where &= Q(at__lt=chosen.end)
    firm_id = None
    if chosen.firm_slug is not None:
        firm = Firm.objects.filter(slug=chosen.firm_slug).first()
        if firm is None:
            known = ", ".join(Firm.objects.order_by("slug").values_list("slug", flat=True))
            raise ConfigError(f"no firm with slug {chosen.firm_slug!r} (firms: {known or 'none'})")
        firm_id = firm.pk
        where &= Q(firm_id=firm_id)
    case_ids = None
    if chosen.receipt is not None:
        case_ids, case_where = _case_entries(chosen.receipt, firm_id)
        where &= case_where
    return firm_id, where, case_ids


def _case_entries(receipt: str, firm_id: int | None) -> tuple[list[int], Any]:
    """The entries about a case: its own and those of its events, deadlines,
    notifications, comments and reminders (each recorded under its own object type)."""
    from django.db.models import Q

    from casewatch.cases.models import Case, Comment, Deadline, Reminder, StatusEvent
    from casewatch.notify.models import Notification

    cases = Case.objects.filter(receipt_number=receipt)
    if firm_id is not None:
        cases = cases.filter(firm_id=firm_id)
    case_ids = sorted(cases.values_list("pk", flat=True))
    if not case_ids:
        at_firm = " at that firm" if firm_id is not None else ""
        raise ConfigError(f"--case {receipt}: no case with that receipt number{at_firm}")
    related = {
        "case": case_ids,
        "status_event": StatusEvent.objects.filter(case_id__in=case_ids).values_list(
            "pk", flat=True
        ),
        "deadline": Deadline.objects.filter(case_id__in=case_ids).values_list("pk", flat=True),
        "notification": Notification.objects.filter(case_id__in=case_ids).values_list(
            "pk", flat=True
        ),
        "comment": Comment.objects.filter(case_id__in=case_ids).values_list("pk", flat=True),
        "reminder": Reminder.objects.filter(case_id__in=case_ids).values_list("pk", flat=True),
    }
    where = Q(pk__in=[])
    for object_type, ids in related.items():
        texts = [str(pk) for pk in ids]
        if texts:
            where |= Q(object_type=object_type, object_id__in=texts)
    return case_ids, where


_COLUMNS = (
    "seq",
    "at",
    "action",
    "actor",
    "object_type",
    "object_id",
    "firm_id",
    "details_json",
    "prev_hash",
    "hash",
)


def _entries(where: Any, *, before_seq: int) -> Iterator[tuple[Any, ...]]:
    from casewatch.audit.models import AuditEntry

    query = AuditEntry.objects.filter(where, seq__lt=before_seq).order_by("seq")
    return query.values_list(*_COLUMNS).iterator(chunk_size=EXPORT_CHUNK)


def _at_text(at: datetime) -> str:
    from casewatch.audit.hashing import format_at

    return format_at(at)  # The very text the entry's hash covers.


def write_csv(out: IO[str], rows: Iterable[tuple[Any, ...]]) -> int:
    """A header, then one line per entry; `details` is the canonical JSON the hash covers."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(FIELDS)
    count = 0
    for seq, at, *rest in rows:
        writer.writerow([safe_cell(value) for value in (seq, _at_text(at), *rest)])
        count += 1
    return count


def _details(text: str) -> Any:
    """The details as an object; as stored when that is not JSON (a row altered by hand,
    which `audit verify` reports), so the export still shows what is there."""
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return text


def write_json(out: IO[str], rows: Iterable[tuple[Any, ...]]) -> int:
    """One JSON array, written an entry at a time."""
    out.write("[")
    count = 0
    for seq, at, action, actor, object_type, object_id, firm_id, details, prev, digest in rows:
        entry = {
            "seq": seq,
            "at": _at_text(at),
            "action": action,
            "actor": actor,
            "object_type": object_type,
            "object_id": object_id,
            "firm": firm_id,
            "details": _details(details),
            "prev_hash": prev,
            "hash": digest,
        }
        out.write(("\n" if count == 0 else ",\n") + json.dumps(entry, ensure_ascii=False))
        count += 1
    out.write("\n]\n" if count else "]\n")
    return count
