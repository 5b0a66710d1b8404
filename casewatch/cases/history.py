"""Recording what USCIS said about a case: the Record step of the flow.

Every answer becomes an Observation. Only a real change becomes a StatusEvent,
and it is written with its deadline and audit entries, and the case's new
status, in one transaction: a crash leaves either all of it or none of it.
A fault (not found, rate limited, down, …) is never a change.

A worker keeps a batch of answers at once (`record_outcomes`): the same rows
as one by one, written table by table in one transaction.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from django.db import transaction
from django.db.models import OuterRef, Subquery
from django.utils import timezone

from casewatch.audit.chain import PendingEntry
from casewatch.audit.chain import record_many as audit_many
from casewatch.bulk import insert_instances, update_columns
from casewatch.cases.models import Case, Deadline, Observation, StatusEvent
from casewatch.core.history_text import classify_history
from casewatch.core.notice_dates import notice_date, response_deadline
from casewatch.core.statuses import Classification, classify, default_catalog
from casewatch.uscis.source import CaseStatus, Found, HistoryEntry, Outcome

# USCIS writes modifiedDate without a zone; its systems run on Eastern time.
USCIS_TIME_ZONE = ZoneInfo("America/New_York")


def uscis_moment(moment: datetime | None) -> datetime | None:
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=USCIS_TIME_ZONE)


@dataclass(frozen=True)
class Recorded:
    """What one answer left behind: events in the order they happened (recovered ones first)."""

    observation: Observation
    case: Case
    events: list[StatusEvent] = field(default_factory=list)
    deadlines: list[Deadline] = field(default_factory=list)

    @property
    def event(self) -> StatusEvent | None:
        """The change to the status USCIS shows now, if there was one."""
        return self.events[-1] if self.events else None


def understand(status: CaseStatus) -> Classification:
    """The English title decides; the Spanish one helps when the English is unreadable."""
    english = classify(status.title_en)
    if english.is_unknown and status.title_es.strip():
        spanish = classify(status.title_es)
        if not spanish.is_unknown:
            return spanish
    return english


def _is_change(
    case: Case, status: CaseStatus, meaning: Classification, last: StatusEvent | None
) -> bool:
    """A new canonical status is a change; a rewording of the same one is not.

    The same status counts again only when USCIS dates it later (a second RFE,
    a rescheduled interview): by modifiedDate, or for IOE receipts, which carry
    no dates, by the notice date in the description. `last` is the case's
    latest event.
    """
    if not case.status:
        return True
    if meaning.is_unknown:
        return (
            last is None or last.title_en.strip().casefold() != status.title_en.strip().casefold()
        )
    if meaning.status != case.status:
        return True
    if last is None:
        return True
    modified = uscis_moment(status.modified_at)
    if modified is not None and last.uscis_date is not None:
        return modified > last.uscis_date
    if modified is None:
        new_notice = notice_date(status.description_en)
        old_notice = notice_date(last.description_en)
        return new_notice is not None and old_notice is not None and new_notice > old_notice
    return False


@dataclass(frozen=True)
class Answer:
    """One answer to keep: the case asked about, what came back, and when it was asked."""

    case: Case
    outcome: Outcome
    observed_at: datetime


def record_outcome(case: Case, outcome: Outcome, *, observed_at: datetime) -> Recorded:
    """Keep one answer about `case`, and record the change it brings, if any."""
    (recorded,) = record_outcomes([Answer(case, outcome, observed_at)])
    return recorded


def record_outcomes(answers: Sequence[Answer]) -> list[Recorded]:
    """Keep many answers in one transaction: what `record_outcome` does for each, in order.

    One read of the cases, one insert per table and one audit append instead of
    a dozen statements per answer; the rows written are the same.
    """
    with transaction.atomic():
        recorded = prepare_records(answers)
        save_records(recorded)
    return recorded


def prepare_records(answers: Sequence[Answer]) -> list[Recorded]:
    """What each answer means, as unsaved rows; call inside a transaction, then `save_records`.

    The cases are read afresh and locked, since the answers' copies may be stale;
    those copies are left as they were. Each case may appear once.
    """
    ids = [answer.case.pk for answer in answers]
    if len(set(ids)) != len(ids):
        raise ValueError("a batch of answers holds each case at most once")
    latest = (
        StatusEvent.objects.filter(case=OuterRef("pk"))
        .order_by("-observed_at", "-pk")
        .values("pk")[:1]
    )
    fresh = {
        case.pk: case
        for case in Case.objects.select_for_update()
        .filter(pk__in=ids)
        .annotate(latest_event_pk=Subquery(latest))
        .order_by("pk")  # Locks taken in one order by everyone: no deadlock.
    }
    missing = [pk for pk in ids if pk not in fresh]
    if missing:
        raise Case.DoesNotExist(f"cases {missing} were deleted before their answers were kept")
    wanted = [pk for case in fresh.values() if (pk := getattr(case, "latest_event_pk", None))]
    last_events = (
        StatusEvent.objects.only("title_en", "description_en", "uscis_date").in_bulk(wanted)
        if wanted
        else {}
    )
    recorded = []
    for answer in answers:
        case = fresh[answer.case.pk]
        last = last_events.get(getattr(case, "latest_event_pk", None) or 0)
        if isinstance(answer.outcome, Found):
            recorded.append(_record_status(case, answer.outcome.status, answer.observed_at, last))
        else:
            recorded.append(_record_fault(case, answer.outcome, answer.observed_at))
    return recorded


# What recording sets on a case; `save_records` writes them for every case of a batch.
RECORDED_FIELDS = (
    "last_checked_at",
    "last_read_at",
    "last_problem",
    "source",
    "form_type",
    "status",
    "category",
    "urgency",
    "title_en",
    "title_es",
    "status_since",
    "uscis_status_since",
    "updated_at",
)


def save_records(recorded: Sequence[Recorded], *, also: Sequence[str] = ()) -> None:
    """Write what `prepare_records` made, in the same transaction, and the cases' `also` fields.

    Rows go in table by table in the order one-by-one recording would make them,
    so ids and the audit chain come out the same.
    """
    if not recorded:
        return
    insert_instances([r.observation for r in recorded])
    insert_instances([event for r in recorded for event in r.events])
    insert_instances([deadline for r in recorded for deadline in r.deadlines])
    audit_many(
        [
            entry
            for r in recorded
            for event in r.events
            for entry in _audit_entries(r.case, event, r.deadlines)
        ]
    )
    now = timezone.now()
    for r in recorded:
        r.case.updated_at = now
    update_columns([r.case for r in recorded], [*RECORDED_FIELDS, *also])


def _record_fault(case: Case, outcome: Outcome, observed_at: datetime) -> Recorded:
    message = getattr(outcome, "message", "")
    observation = Observation(
        case=case,
        observed_at=observed_at,
        source=case.source or "",
        outcome=outcome.error or "",
        message=message,
    )
    case.last_checked_at = observed_at
    case.last_problem = message
    return Recorded(observation, case)


def _record_status(
    case: Case, status: CaseStatus, observed_at: datetime, last: StatusEvent | None
) -> Recorded:
    meaning = understand(status)
    changed = _is_change(case, status, meaning, last)
    observation = Observation(
        case=case,
        observed_at=observed_at,
        source=status.source,
        outcome="found",
        message=status.message,
        title_en=status.title_en,
        title_es=status.title_es,
        description_en=status.description_en,
        description_es=status.description_es,
        form_type=status.form_type,
        uscis_modified_at=uscis_moment(status.modified_at),
        history=[
            {
                "date": entry.date.isoformat() if entry.date else None,
                "text_en": entry.text_en,
                "text_es": entry.text_es,
            }
            for entry in status.history
        ],
        status=meaning.status,
        confidence=meaning.confidence,
        changed=changed,
    )
    case.last_checked_at = observed_at
    case.last_read_at = observed_at
    case.last_problem = ""
    case.source = status.source
    if status.form_type and not case.form_type:
        case.form_type = status.form_type
    if not changed:
        return Recorded(observation, case)

    since = uscis_moment(status.modified_at) or _latest_history_moment(status) or observed_at
    events: list[StatusEvent] = []
    deadlines: list[Deadline] = []
    if case.status:
        for missed in missed_steps(case, status, meaning):
            event = _record_missed(case, observation, missed, observed_at)
            events.append(event)
            deadlines += _deadlines_for(case, event, basis=missed.on)
            case.status = event.status
    event = StatusEvent(
        firm_id=case.firm_id,
        case=case,
        observation=observation,
        status=meaning.status,
        category=meaning.category,
        urgency=meaning.urgency,
        confidence=meaning.confidence,
        previous_status=case.status,
        title_en=status.title_en,
        title_es=status.title_es,
        description_en=status.description_en,
        description_es=status.description_es,
        uscis_date=uscis_moment(status.modified_at),
        observed_at=observed_at,
        source=status.source,
        initial=not case.status,
    )
    events.append(event)
    deadlines += _deadlines_for(case, event)
    case.status = meaning.status
    case.category = meaning.category
    case.urgency = meaning.urgency
    case.title_en = status.title_en
    case.title_es = status.title_es
    case.status_since = observed_at
    case.uscis_status_since = since
    return Recorded(observation, case, events, deadlines)


def _audit_entries(
    case: Case, event: StatusEvent, deadlines: Sequence[Deadline]
) -> list[PendingEntry]:
    """An event's audit entry, then those of the deadlines it set: one-by-one order."""
    entries = [
        PendingEntry(
            "status_event.recorded",
            object_type="status_event",
            object_id=event.pk,
            firm_id=case.firm_id,
            actor="worker",
            details=_event_details(case, event),
            at=event.observed_at,
        )
    ]
    for deadline in deadlines:
        if deadline.event is not event:
            continue
        entries.append(
            PendingEntry(
                "deadline.created",
                object_type="deadline",
                object_id=deadline.pk,
                firm_id=case.firm_id,
                actor="worker",
                details={
                    "case_id": case.pk,
                    "receipt_number": case.receipt_number,
                    "event_id": event.pk,
                    "kind": deadline.kind,
                    "due_on": deadline.due_on.isoformat(),
                    "due_at": deadline.due_at.isoformat() if deadline.due_at else None,
                    "basis": deadline.basis.isoformat(),
                },
                at=event.observed_at,
            )
        )
    return entries


def _history_moment(on: date) -> datetime:
    """A history date (USCIS gives no time) read as midday at USCIS."""
    return datetime.combine(on, time(12), tzinfo=USCIS_TIME_ZONE)


def _latest_history_moment(status: CaseStatus) -> datetime | None:
    dates = [entry.date for entry in status.history if entry.date is not None]
    return _history_moment(max(dates)) if dates else None


@dataclass(frozen=True)
class MissedStep:
    """A status the case passed through between two checks, read from `hist_case_status`."""

    on: date
    meaning: Classification
    text_en: str
    text_es: str


def missed_steps(case: Case, status: CaseStatus, meaning: Classification) -> list[MissedStep]:
    """Steps USCIS lists after the status we knew and before the one it shows now.

    The history is read oldest first; everything up to the last entry that is
    the status we knew is old news, the final entry for the current status is
    the change itself, and what lies between was missed.
    """
    known_since = case.uscis_status_since or case.status_since
    steps = sorted(
        (
            MissedStep(entry.date, classify_history(entry.text_en, entry.text_es), *texts)
            for entry in _oldest_first(status.history)
            if entry.date is not None
            for texts in [(entry.text_en, entry.text_es)]
        ),
        key=lambda step: step.on,
    )
    if known_since is not None:
        known_on = known_since.astimezone(USCIS_TIME_ZONE).date()
        steps = [step for step in steps if step.on >= known_on]
    last_known = max(
        (i for i, step in enumerate(steps) if step.meaning.status == case.status), default=-1
    )
    if last_known < 0 and known_since is not None:
        known_on = known_since.astimezone(USCIS_TIME_ZONE).date()
        steps = [step for step in steps if step.on > known_on]
    between = steps[last_known + 1 :]
    while between and between[-1].meaning.status in (meaning.status, "unknown"):
        between.pop()
    missed: list[MissedStep] = []
    for step in between:
        if step.meaning.is_unknown or step.meaning.status in (case.status, meaning.status):
            continue
        if missed and missed[-1].meaning.status == step.meaning.status:
            continue
        missed.append(step)
    return missed


def _oldest_first(history: tuple[HistoryEntry, ...]) -> list[HistoryEntry]:
    """USCIS lists history newest first; keep same-day entries in their true order."""
    dated = [entry.date for entry in history if entry.date is not None]
    newest_first = any(a > b for a, b in itertools.pairwise(dated))
    return list(reversed(history)) if newest_first else list(history)


def _record_missed(
    case: Case, observation: Observation, step: MissedStep, observed_at: datetime
) -> StatusEvent:
    found = default_catalog().statuses.get(step.meaning.status)
    return StatusEvent(
        firm_id=case.firm_id,
        case=case,
        observation=observation,
        status=step.meaning.status,
        category=step.meaning.category,
        urgency=step.meaning.urgency,
        confidence=step.meaning.confidence,
        previous_status=case.status,
        title_en=found.title_en if found else step.text_en,
        title_es=found.title_es if found else step.text_es,
        description_en=step.text_en,
        description_es=step.text_es,
        uscis_date=_history_moment(step.on),
        observed_at=observed_at,
        source=observation.source,
        initial=False,
        recovered=True,
    )


def _event_details(case: Case, event: StatusEvent) -> dict[str, Any]:
    return {
        "case_id": case.pk,
        "receipt_number": case.receipt_number,
        "status": event.status,
        "recovered": event.recovered,
        "previous_status": event.previous_status,
        "category": event.category,
        "urgency": event.urgency,
        "title_en": event.title_en,
        "uscis_date": event.uscis_date.isoformat() if event.uscis_date else None,
        "source": event.source,
    }


def _deadlines_for(case: Case, event: StatusEvent, basis: date | None = None) -> list[Deadline]:
    """The response or appointment date an event sets, read from its description."""
    seen_on = basis or event.observed_at.date()
    found = response_deadline(event.category, event.description_en, received_on=None)
    if found is None and event.description_es:
        found = response_deadline(event.category, event.description_es, received_on=None)
    if found is None:
        found = response_deadline(event.category, "", received_on=seen_on)
    if found is None:
        return []
    return [
        Deadline(
            firm_id=case.firm_id,
            case=case,
            event=event,
            kind=found.kind,
            due_on=found.due_on,
            due_at=found.due_at,
            basis=found.basis,
            basis_text=found.basis_text,
        )
    ]
