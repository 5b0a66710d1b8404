"""Bringing a caseload in from a spreadsheet: the Intake step of the flow.

The sheet is read and every row validated first (casewatch.cases.sheet); then
everything valid is written in one transaction, with one audit entry per case
created or changed and one for the import. Re-importing the same file changes
nothing: a known receipt is only filled in where its fields are still empty.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.utils import timezone

from casewatch.accounts.models import Firm, Membership, Role
from casewatch.audit.chain import PendingEntry, record_many
from casewatch.audit.chain import record as audit
from casewatch.bulk import insert_records
from casewatch.cases.models import Case, Client, ImportRun
from casewatch.cases.name_index import index_names
from casewatch.cases.sheet import RowResult, Sheet, validate_sheet

# SQLite allows a limited number of query parameters; look rows up in slices.
LOOKUP_CHUNK = 900
# User.email's length: a longer "attorney" cell is a name, not an address.
EMAIL_MAX_LENGTH = 254


@dataclass
class ImportSummary:
    """The JSON summary of cli.md, plus what was added to the firm's staff."""

    rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    staff_added: list[str] = field(default_factory=list)
    dry_run: bool = False
    # Every row as validated, for a caller that shows rows (the web import); not in the JSON.
    results: list[RowResult] = field(default_factory=list, repr=False)

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "rejected": self.rejected,
            "errors": self.errors,
            "staff_added": self.staff_added,
            "dry_run": self.dry_run,
        }


class _Rollback(Exception):
    """Raised inside the transaction to undo a dry run after counting it."""


def import_sheet(
    firm: Firm,
    sheet: Sheet,
    *,
    file_name: str,
    actor: str = "import",
    dry_run: bool = False,
    now: datetime | None = None,
) -> ImportSummary:
    results = validate_sheet(sheet)
    summary = ImportSummary(rows=len(results), dry_run=dry_run, results=results)
    for result in results:
        summary.errors.extend(error.as_dict() for error in result.errors)
    summary.rejected = sum(1 for r in results if r.receipt_number is None and r.rejected)
    valid = [r for r in results if r.receipt_number]
    try:
        with transaction.atomic():
            _write(firm, valid, summary, file_name, actor, now or timezone.now())
            if dry_run:
                raise _Rollback
    except _Rollback:
        pass
    summary.errors.sort(key=lambda e: (e["row"], e["column"] or ""))
    return summary


class DuplicateCase(Exception):
    """The firm already tracks this receipt; nothing was added."""

    def __init__(self, case: Case) -> None:
        super().__init__(f"receipt {case.receipt_number} is already case {case.pk}")
        self.case = case


def add_case(
    firm: Firm,
    row: RowResult,
    *,
    attorney: User | None = None,
    paralegal: User | None = None,
    actor: str,
    now: datetime | None = None,
) -> Case:
    """One case typed in by hand (the web form), written by the import's rules.

    `row` comes from `sheet.validate_row`, cleaned as a sheet's row is, its receipt
    possibly still pending (None). The client is matched by the firm's client id as
    an import matches it; the attorney and paralegal are members the caller chose.
    A receipt the firm already tracks raises DuplicateCase: one receipt, one case.
    """
    now = now or timezone.now()
    with transaction.atomic():
        if row.receipt_number is not None:
            existing = Case.objects.filter(firm=firm, receipt_number=row.receipt_number).first()
            if existing is not None:
                raise DuplicateCase(existing)
        clients = _Clients(firm, [row.client_id] if row.client_id else [])
        client = clients.for_row(row)
        clients.save_new()
        if isinstance(client, Client):
            clients.save_changed(client.pk)
        clients.index_names()
        try:
            with transaction.atomic():
                case = Case.objects.create(
                    firm=firm,
                    receipt_number=row.receipt_number,
                    form_type=row.form_type,
                    client_id=None if client is None else _client_pk(client),
                    attorney=attorney,
                    paralegal=paralegal,
                    tags=list(row.tags),
                    notes=row.notes,
                    next_check_at=now,
                )
        except IntegrityError:  # the same receipt added a moment ago by someone else
            raise DuplicateCase(
                Case.objects.get(firm=firm, receipt_number=row.receipt_number)
            ) from None
        audit(
            "case.created",
            object_type="case",
            object_id=case.pk,
            firm_id=firm.pk,
            actor=actor,
            details=case_details(case),
            at=now,
        )
    return case


def _write(
    firm: Firm,
    rows: list[RowResult],
    summary: ImportSummary,
    file_name: str,
    actor: str,
    now: datetime,
) -> None:
    existing = _existing_cases(firm, [r.receipt_number for r in rows if r.receipt_number])
    staff = _Staff(firm)
    clients = _Clients(firm, [r.client_id for r in rows if r.client_id])
    new_cases: list[dict[str, Any]] = []
    changes: list[tuple[Case, list[str]]] = []
    for row in rows:
        assert row.receipt_number is not None
        case = existing.get(row.receipt_number)
        if case is None:
            new_cases.append(_new_case(firm, row, staff, clients, now))
            continue
        changed = _fill_in(case, row, staff, clients)
        if changed:
            changes.append((case, changed))
        else:
            summary.unchanged += 1

    clients.save_new()
    for record in new_cases:
        client = record.pop("client", None)
        if client is not None:
            record["client_id"] = _client_pk(client)
    insert_records(Case, new_cases)
    summary.created = len(new_cases)
    for case, _fields in changes:
        pending = getattr(case, "new_client", None)
        if pending is not None:
            case.client_id = _client_pk(pending)
        clients.save_changed(case.client_id)
        case.save()
    clients.index_names()
    summary.updated = len(changes)
    summary.staff_added = staff.added

    entries = [
        PendingEntry(
            action="case.created",
            object_type="case",
            object_id=str(record["id"]),
            firm_id=firm.pk,
            actor=actor,
            details=_record_details(record),
            at=now,
        )
        for record in new_cases
    ]
    entries += [
        PendingEntry(
            action="case.updated",
            object_type="case",
            object_id=str(case.pk),
            firm_id=firm.pk,
            actor=actor,
            details={**case_details(case), "changed": changed},
            at=now,
        )
        for case, changed in changes
    ]
    record_many(entries)
    run = ImportRun.objects.create(
        firm=firm,
        file_name=file_name[:255],
        actor=actor,
        rows=summary.rows,
        created=summary.created,
        updated=summary.updated,
        unchanged=summary.unchanged,
        errors=len(summary.errors),
    )
    audit(
        "import.completed",
        object_type="import",
        object_id=run.pk,
        firm_id=firm.pk,
        actor=actor,
        details={
            "file_name": run.file_name,
            "rows": run.rows,
            "created": run.created,
            "updated": run.updated,
            "unchanged": run.unchanged,
            "errors": run.errors,
        },
        at=now,
    )


# A client found in the database, or one this import creates (its record until inserted).
ClientRef = Client | dict[str, Any]


def _client_pk(client: ClientRef) -> int:
    pk = client["id"] if isinstance(client, dict) else client.pk
    assert isinstance(pk, int)
    return pk


def _record_details(record: dict[str, Any]) -> dict[str, Any]:
    """The audit details of a case created from a record, as `case_details` gives them."""
    return {
        "receipt_number": record["receipt_number"],
        "form_type": record.get("form_type", ""),
        "client_id": record.get("client_id"),
        "attorney_id": record.get("attorney_id"),
        "paralegal_id": record.get("paralegal_id"),
        "tags": list(record.get("tags", [])),
        "has_notes": bool(record.get("notes")),
        "archived": False,
    }


def case_details(case: Case) -> dict[str, Any]:
    """What the audit keeps of a case: never the client's name, e-mail, phone or notes."""
    return {
        "receipt_number": case.receipt_number,
        "form_type": case.form_type,
        "client_id": case.client_id,
        "attorney_id": case.attorney_id,
        "paralegal_id": case.paralegal_id,
        "tags": list(case.tags),
        "has_notes": bool(case.notes),
        "archived": case.is_archived,
    }


def _existing_cases(firm: Firm, receipts: Sequence[str]) -> dict[str, Case]:
    """The firm's cases among `receipts`; one cheap query first, so a new caseload costs none."""
    tracked = set(
        Case.objects.filter(firm=firm, receipt_number__isnull=False).values_list(
            "receipt_number", flat=True
        )
    )
    known = [r for r in receipts if r in tracked]
    found: dict[str, Case] = {}
    for start in range(0, len(known), LOOKUP_CHUNK):
        chunk = known[start : start + LOOKUP_CHUNK]
        for case in Case.objects.filter(firm=firm, receipt_number__in=chunk).select_related(
            "client"
        ):
            assert case.receipt_number is not None
            found[case.receipt_number] = case
    return found


def _new_case(
    firm: Firm, row: RowResult, staff: _Staff, clients: _Clients, now: datetime
) -> dict[str, Any]:
    record: dict[str, Any] = {
        "firm_id": firm.pk,
        "receipt_number": row.receipt_number,
        "form_type": row.form_type,
        "tags": list(row.tags),
        "next_check_at": now,
    }
    if row.notes:
        record["notes"] = row.notes
    client = clients.for_row(row)
    if client is not None:
        record["client"] = client
    attorney = staff.find(row.attorney, Role.ATTORNEY)
    if attorney is not None:
        record["attorney_id"] = attorney.pk
    paralegal = staff.find(row.paralegal, Role.PARALEGAL)
    if paralegal is not None:
        record["paralegal_id"] = paralegal.pk
    return record


def _fill_in(case: Case, row: RowResult, staff: _Staff, clients: _Clients) -> list[str]:
    """Fill a known case's empty fields from the row; never overwrite what the firm has."""
    changed: list[str] = []
    if row.form_type and not case.form_type:
        case.form_type = row.form_type
        changed.append("form_type")
    if case.client is None:
        client = clients.for_row(row)
        if isinstance(client, Client):
            case.client = client
            changed.append("client")
        elif client is not None:
            case.new_client = client  # type: ignore[attr-defined]
            changed.append("client")
    elif clients.fill_in(case.client, row):
        changed.append("client")
    if row.attorney and case.attorney_id is None:
        case.attorney = staff.find(row.attorney, Role.ATTORNEY)
        changed.append("attorney")
    if row.paralegal and case.paralegal_id is None:
        case.paralegal = staff.find(row.paralegal, Role.PARALEGAL)
        changed.append("paralegal")
    if row.tags and not case.tags:
        case.tags = list(row.tags)
        changed.append("tags")
    if row.notes and not case.notes:
        case.notes = row.notes
        changed.append("notes")
    return changed


_PERSONAL = ("name", "email", "phone")


class _Clients:
    """Clients matched by the firm's own id, else within the file by name, e-mail and phone."""

    def __init__(self, firm: Firm, references: Iterable[str]) -> None:
        self.firm = firm
        self.by_reference: dict[str, ClientRef] = {}
        refs = sorted(set(references))
        for start in range(0, len(refs), LOOKUP_CHUNK):
            for client in Client.objects.filter(
                firm=firm, reference__in=refs[start : start + LOOKUP_CHUNK]
            ).order_by("pk"):
                self.by_reference.setdefault(client.reference, client)
        self.by_identity: dict[tuple[str, str, str], ClientRef] = {}
        self.new: list[dict[str, Any]] = []
        self.changed: dict[int, Client] = {}
        self.renamed: dict[int, Client] = {}

    def for_row(self, row: RowResult) -> ClientRef | None:
        if row.client_id:
            client = self.by_reference.get(row.client_id)
            if client is None:
                client = self.by_reference[row.client_id] = self._create(row)
            else:
                self.fill_in(client, row)
            return client
        if not (row.client_name or row.client_email or row.client_phone):
            return None
        identity = (row.client_name.casefold(), row.client_email.casefold(), row.client_phone)
        client = self.by_identity.get(identity)
        if client is None:
            client = self.by_identity[identity] = self._create(row)
        return client

    def _create(self, row: RowResult) -> dict[str, Any]:
        values = {"name": row.client_name, "email": row.client_email, "phone": row.client_phone}
        record: dict[str, Any] = {
            "firm_id": self.firm.pk,
            "reference": row.client_id,
            "personal": {k: v for k, v in values.items() if v},
            "language": row.client_language,
        }
        self.new.append(record)
        return record

    def fill_in(self, client: ClientRef, row: RowResult) -> bool:
        """Add what the row knows and the client record lacks; True when anything was added."""
        personal = dict(client["personal"] if isinstance(client, dict) else client.personal)
        values = {"name": row.client_name, "email": row.client_email, "phone": row.client_phone}
        added = {k: v for k, v in values.items() if v and not personal.get(k)}
        language = client["language"] if isinstance(client, dict) else client.language
        new_language = row.client_language if row.client_language and not language else ""
        if not added and not new_language:
            return False
        if isinstance(client, dict):
            client["personal"] = {**personal, **added}
            if new_language:
                client["language"] = new_language
            return True
        client.personal = {**personal, **added}
        if new_language:
            client.language = new_language
        self.changed[client.pk] = client
        if "name" in added:
            self.renamed[client.pk] = client
        return True

    def save_new(self) -> None:
        insert_records(Client, self.new)

    def index_names(self) -> None:
        """The blind-index tokens of every name this import wrote, in its transaction."""
        new = {record["id"]: record["personal"].get("name", "") for record in self.new}
        index_names(self.firm.pk, new, replace=False)
        index_names(self.firm.pk, {pk: client.name for pk, client in self.renamed.items()})

    def save_changed(self, client_id: int | None) -> None:
        client = self.changed.pop(client_id, None) if client_id is not None else None
        if client is not None:
            client.save()


class _Staff:
    """Attorneys and paralegals named in a sheet, found among the firm's members.

    A name the firm does not know yet becomes an inactive member with that role
    (no password; an admin invites them later), so the assignment is not lost.
    """

    def __init__(self, firm: Firm) -> None:
        self.firm = firm
        self.known: dict[str, User] = {}
        self.added: list[str] = []
        members = Membership.objects.filter(firm=firm).select_related("user")
        for membership in members:
            user: User = membership.user
            for key in (user.username, user.email, user.get_full_name()):
                if key:
                    self.known.setdefault(key.casefold(), user)

    def find(self, name: str, role: str) -> User | None:
        if not name:
            return None
        user = self.known.get(name.casefold())
        if user is None:
            user = self._add(name, role)
        return user

    def _add(self, name: str, role: str) -> User:
        user_model = get_user_model()
        # Kept as the e-mail only when it fits the column (PostgreSQL refuses a longer one).
        is_email = "@" in name and len(name) <= EMAIL_MAX_LENGTH
        base = re.sub(r"[^a-z0-9]+", ".", name.casefold()).strip(".")[:100] or "staff"
        username = base
        n = 1
        while user_model.objects.filter(username=username).exists():
            n += 1
            username = f"{base}.{n}"
        first, _, last = ("", "", "") if is_email else name.partition(" ")
        user: User = user_model(
            username=username,
            email=name if is_email else "",
            first_name=first[:150],
            last_name=last[:150],
            is_active=False,
        )
        user.set_unusable_password()
        user.save()
        Membership.objects.create(firm=self.firm, user=user, role=role)
        self.known[name.casefold()] = user
        self.added.append(name)
        return user
