"""A worker keeps its answers in batches: the same rows as one by one, and nothing lost.

`record_and_schedule_many` (and `record_outcomes` under it) writes a batch of
answers in one transaction; `poll_due` asks USCIS about several claimed cases at
once and records what it heard a few dozen at a time.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

import pytest
from django.db import transaction
from django.db.models import Model

from casewatch.accounts.firms import default_firm
from casewatch.audit.chain import verify
from casewatch.audit.models import AuditEntry
from casewatch.bulk import insert_instances
from casewatch.cases.history import Answer, record_outcomes
from casewatch.cases.models import Case, Deadline, Observation, StatusEvent
from casewatch.monitor.checks import (
    LEASE,
    PollReport,
    claim,
    poll_due,
    record_and_schedule,
    record_and_schedule_many,
)
from casewatch.monitor.models import DwellSample
from casewatch.monitor.schedule import AdaptivePolicy, Budget
from casewatch.uscis.source import (
    Found,
    HistoryEntry,
    NotFound,
    NotSent,
    Outcome,
    Pace,
    RateLimited,
    Unavailable,
)
from tests.test_history import T0, status

pytestmark = pytest.mark.django_db

LATER = T0 + timedelta(days=9)
BUDGET = Budget(calls_per_day=10_000, min_interval=timedelta(hours=1))
RFE = (
    "On March 9, 2026, we sent a request for evidence for your Form I-485, Application to "
    "Register Permanent Residence or Adjust Status, Receipt Number EAC2490010002."
)


def found(title: str, receipt: str, **details: Any) -> Found:
    """USCIS's answer for `receipt`, built as the one-by-one tests build theirs."""
    return status(title, receipt=receipt, **details)


def _cases(count: int) -> list[Case]:
    firm = default_firm()
    return [
        Case.objects.create(firm=firm, receipt_number=f"EAC249001{n:04d}")
        for n in range(1, count + 1)
    ]


def _a_mixed_batch() -> list[Answer]:
    """Six cases, each at a different point, and what USCIS says about each at LATER.

    A first answer (with history to learn from), a change with a missed step and
    an RFE deadline, a rewording, an outage, a 429 and an unknown receipt.
    """
    first, moving, approved, down, limited, unknown = _cases(6)
    history = (
        HistoryEntry(
            date(2026, 3, 9), "We sent you a request for evidence for your Form I-485.", ""
        ),
        HistoryEntry(date(2026, 3, 5), "We received your fingerprint fee for your Form I-485.", ""),
        HistoryEntry(date(2026, 3, 2), "We received your Form I-485.", ""),
    )
    for case, title in [
        (moving, "Case Was Received"),
        (approved, "Case Was Approved"),
        (down, "Case Was Received"),
        (limited, "Case Was Received"),
    ]:
        assert case.receipt_number is not None
        record_and_schedule(case, found(title, case.receipt_number), AdaptivePolicy(BUDGET), T0)
    return [
        Answer(first, found("Case Was Received", "EAC2490010001", history=history), LATER),
        Answer(
            Case.objects.get(pk=moving.pk),
            found(
                "Request for Evidence Was Sent",
                "EAC2490010002",
                description=RFE,
                modified=LATER,
                history=history,
            ),
            LATER,
        ),
        Answer(
            Case.objects.get(pk=approved.pk), found("CASE WAS APPROVED.", "EAC2490010003"), LATER
        ),
        Answer(Case.objects.get(pk=down.pk), Unavailable("USCIS is down"), LATER),
        Answer(
            Case.objects.get(pk=limited.pk),
            RateLimited("Spike Arrest Violation", retry_after=1.0),
            LATER,
        ),
        Answer(Case.objects.get(pk=unknown.pk), NotFound("not recognized"), LATER),
    ]


def _rows_written_by(record: Callable[[], object]) -> dict[str, list[tuple[Any, ...]]]:
    """Every row `record` writes, with new ids as their rank; then it is all rolled back.

    Ranks rather than ids: PostgreSQL does not give sequence values back on rollback.
    Wall-clock stamps (`created_at`, `updated_at`) are left out.
    """
    before = {
        model: model.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
        for model in (Observation, StatusEvent, Deadline, DwellSample, AuditEntry)
    }
    with transaction.atomic():
        record()
        new = {
            model: list(model.objects.filter(pk__gt=last).order_by("pk").values())
            for model, last in before.items()
        }
        rank: dict[type[Model], dict[Any, int]] = {
            model: {
                row["id" if model is not AuditEntry else "seq"]: n for n, row in enumerate(rows)
            }
            for model, rows in new.items()
        }
        cases = list(Case.objects.order_by("pk").values())
        assert verify().ok
        transaction.set_rollback(True)

    def plain(model: type[Model], row: dict[str, Any]) -> tuple[Any, ...]:
        row = {key: value for key, value in row.items() if key not in ("id", "created_at")}
        for key, target in (("observation_id", Observation), ("event_id", StatusEvent)):
            if row.get(key) is not None:
                row[key] = rank[target][row[key]]
        if model is AuditEntry:
            row.pop("hash"), row.pop("prev_hash")  # They cover the ids, which differ.
            of: type[Model] = {"status_event": StatusEvent, "deadline": Deadline}[
                row["object_type"]
            ]
            row["object_id"] = rank[of][int(row["object_id"])]
            details = json.loads(row.pop("details_json"))
            if "event_id" in details:
                details["event_id"] = rank[StatusEvent][details["event_id"]]
            row["details"] = tuple(sorted(details.items()))
        return tuple(sorted(row.items()))

    written = {model.__name__: [plain(model, row) for row in rows] for model, rows in new.items()}
    written["Case"] = [
        tuple(sorted((k, v) for k, v in case.items() if k != "updated_at")) for case in cases
    ]
    return written


def test_a_batch_records_exactly_what_one_by_one_recording_would() -> None:
    answers = _a_mixed_batch()
    policy = AdaptivePolicy(BUDGET)

    def one_by_one() -> None:
        for answer in answers:
            record_and_schedule(answer.case, answer.outcome, policy, answer.observed_at)

    batched = _rows_written_by(lambda: record_and_schedule_many(answers, policy))
    assert batched == _rows_written_by(one_by_one)
    assert len(batched["StatusEvent"]) == 3, "a first status; an RFE and the fee step before it"
    assert len(batched["Observation"]) == 6 and len(batched["Deadline"]) == 1
    assert len(batched["AuditEntry"]) == 4 and batched["DwellSample"]


def test_a_batch_returns_what_each_answer_left_behind_in_order() -> None:
    answers = _a_mixed_batch()
    recorded = record_and_schedule_many(answers, AdaptivePolicy(BUDGET))
    assert [r.case.pk for r in recorded] == [a.case.pk for a in answers]
    assert [len(r.events) for r in recorded] == [1, 2, 0, 0, 0, 0]
    assert [(e.status, e.recovered) for e in recorded[1].events] == [
        ("fingerprint_fee_received", True),
        ("rfe_sent", False),
    ]
    assert recorded[1].deadlines[0].event == recorded[1].events[1]
    assert [r.observation.outcome for r in recorded[3:]] == [
        "unavailable",
        "rate_limited",
        "not_found",
    ]
    for kept in recorded:
        assert kept.observation.pk is not None and all(e.pk for e in kept.events)
        assert kept.case.claimed_until is None and kept.case.next_check_at is not None


def test_faults_in_a_batch_never_change_a_status() -> None:
    answers = _a_mixed_batch()
    record_and_schedule_many(answers, AdaptivePolicy(BUDGET))
    for answer in answers[3:]:
        case = Case.objects.get(pk=answer.case.pk)
        assert case.status == answer.case.status
        assert case.last_problem == getattr(answer.outcome, "message", "")
        assert not StatusEvent.objects.filter(case=case, observed_at=LATER).exists()


def test_the_audit_chain_verifies_after_a_batch_and_holds_every_event_and_deadline() -> None:
    answers = _a_mixed_batch()
    entries_before = AuditEntry.objects.count()
    recorded = record_and_schedule_many(answers, AdaptivePolicy(BUDGET))
    events = [event for kept in recorded for event in kept.events]
    deadlines = [deadline for kept in recorded for deadline in kept.deadlines]
    report = verify()
    assert report.ok
    assert report.entries == entries_before + len(events) + len(deadlines)
    logged = AuditEntry.objects.filter(seq__gt=entries_before).order_by("seq")
    assert [(e.object_type, e.object_id) for e in logged] == [
        ("status_event", str(events[0].pk)),
        ("status_event", str(events[1].pk)),
        ("status_event", str(events[2].pk)),
        ("deadline", str(deadlines[0].pk)),
    ]


def test_a_batch_holds_each_case_once() -> None:
    (case,) = _cases(1)
    answer = Answer(case, found("Case Was Received", "EAC2490010001"), T0)
    with pytest.raises(ValueError, match="at most once"):
        record_outcomes([answer, answer])
    assert not Observation.objects.exists()


def test_an_empty_batch_writes_nothing() -> None:
    assert record_outcomes([]) == []
    assert record_and_schedule_many([], AdaptivePolicy(BUDGET)) == []
    assert not AuditEntry.objects.exists()


# --- rounds -------------------------------------------------------------------------


class Scripted:
    """A USCIS stand-in: each receipt's answer as told (a first status by default)."""

    def __init__(self, answers: dict[str, Callable[[], Outcome]] | None = None) -> None:
        self.answers = answers or {}
        self.asked: list[str] = []
        self._lock = threading.Lock()

    def fetch(self, receipt_number: str, *, pace: Pace | None = None) -> Outcome:
        if pace is not None and not pace():
            raise NotSent(receipt_number)
        with self._lock:
            self.asked.append(receipt_number)
        answer = self.answers.get(receipt_number)
        return answer() if answer else found("Case Was Received", receipt_number)

    def close(self) -> None:
        return None


def _round(
    source: Scripted,
    *,
    fetchers: int = 4,
    stopping: Callable[[], bool] = lambda: False,
    backed_off: list[float] | None = None,
    may_send: Callable[[], bool] = lambda: True,
) -> PollReport:
    return poll_due(
        source,
        policy=AdaptivePolicy(BUDGET),
        now=lambda: T0,
        may_send=may_send,
        used_today=lambda: 0,
        day_start=lambda moment: moment - timedelta(hours=12),
        back_off=(backed_off if backed_off is not None else []).append,
        stopping=stopping,
        fetchers=fetchers,
    )


def _checked() -> set[str]:
    asked = Observation.objects.filter(observed_at=T0).values_list(
        "case__receipt_number", flat=True
    )
    return {str(receipt) for receipt in asked}


def test_a_round_asks_about_several_cases_at_once() -> None:
    cases = _cases(6)
    meet = threading.Barrier(2, timeout=10)

    def together(receipt: str) -> Callable[[], Outcome]:
        # Answers only once the other request is in flight too: one at a time would hang.
        return lambda: (meet.wait(), found("Case Was Received", receipt))[1]

    receipts = [str(case.receipt_number) for case in cases]
    source = Scripted({receipts[2]: together(receipts[2]), receipts[3]: together(receipts[3])})
    report = _round(source)
    assert report.checked == 6 and report.changes == 6 and report.faults == 0
    assert sorted(source.asked) == sorted(receipts) and source.asked[0] == receipts[0]
    assert _checked() == set(receipts)
    assert not Case.objects.filter(claimed_until__isnull=False).exists()


def test_a_429_ends_the_round_keeps_what_was_heard_and_gives_back_the_rest() -> None:
    cases = _cases(20)
    refused = str(cases[5].receipt_number)
    source = Scripted({refused: lambda: RateLimited("Spike Arrest Violation", retry_after=7.0)})
    backed_off: list[float] = []
    report = _round(source, backed_off=backed_off)
    assert report.stopped_early == "rate_limited" and backed_off == [7.0]
    # Requests already in flight when the 429 came are answered and kept; no more are sent.
    assert _checked() == set(source.asked) and refused in source.asked
    assert len(source.asked) < 6 + 4
    assert report.checked == len(source.asked)
    unasked = Case.objects.exclude(receipt_number__in=source.asked)
    assert unasked.count() == 20 - len(source.asked)
    assert not unasked.filter(claimed_until__isnull=False).exists(), "given back: due at once"
    assert Case.objects.get(receipt_number=refused).status == ""


def test_an_outage_on_the_first_request_stops_the_round_before_any_other_is_sent() -> None:
    cases = _cases(10)
    first = str(cases[0].receipt_number)
    source = Scripted({first: lambda: Unavailable("USCIS is down")})
    report = _round(source)
    assert report.stopped_early == "unavailable"
    assert source.asked == [first] and report.checked == 1 and report.faults == 1


def test_a_worker_that_is_stopping_sends_nothing_more_and_keeps_what_it_heard() -> None:
    _cases(12)
    source = Scripted()
    report = _round(source, stopping=lambda: len(source.asked) >= 5)
    assert report.stopped_early == "stopping"
    assert report.checked == len(source.asked) >= 5
    assert _checked() == set(source.asked)
    assert not Case.objects.filter(claimed_until__isnull=False).exists()


def test_a_crash_in_the_middle_of_a_round_loses_no_case() -> None:
    cases = _cases(8)
    broken = str(cases[4].receipt_number)

    def crash() -> Outcome:
        raise RuntimeError("the worker died here")

    with pytest.raises(RuntimeError):
        _round(Scripted({broken: crash}), fetchers=1)
    checked = _checked()
    assert broken not in checked
    # What was not recorded is still claimed, and comes back when the lease runs out.
    unrecorded = {str(c.receipt_number) for c in cases} - checked
    held = Case.objects.filter(claimed_until__isnull=False)
    assert {str(c.receipt_number) for c in held} == unrecorded
    assert {c.claimed_until for c in held} == {T0 + LEASE}
    back = claim(T0 + LEASE, 20)
    assert unrecorded <= {str(c.receipt_number) for c in back}


@pytest.mark.parametrize("fetchers", [1, 4])
def test_a_round_records_the_same_as_checking_one_case_at_a_time(fetchers: int) -> None:
    _cases(30)
    answers: dict[str, Callable[[], Outcome]] = {
        "EAC2490010007": lambda: NotFound("not recognized"),
        "EAC2490010011": lambda: found("Request for Evidence Was Sent", "EAC2490010011"),
    }
    report = _round(Scripted(answers), fetchers=fetchers)
    assert report.checked == 30 and report.faults == 1 and report.changes == 29
    assert len(report.events) == 29 == StatusEvent.objects.count()
    assert Deadline.objects.count() == 1 and verify().ok


class Watched(Scripted):
    """Scripted, noting which thread sends each request and what it did just before."""

    def __init__(self, answers: dict[str, Callable[[], Outcome]] | None = None) -> None:
        super().__init__(answers)
        self.events: list[tuple[str, int, str]] = []  # (what, thread, receipt or "")

    def note(self, what: str, receipt: str = "") -> None:
        with self._lock:
            self.events.append((what, threading.get_ident(), receipt))

    def fetch(self, receipt_number: str, *, pace: Pace | None = None) -> Outcome:
        def paced() -> bool:
            assert pace is not None
            return pace()

        outcome = super().fetch(receipt_number, pace=paced if pace is not None else None)
        self.note("sent", receipt_number)
        return outcome


def test_each_request_goes_out_from_the_thread_that_took_its_slot() -> None:
    """The slot (and the limiter's lateness check) is taken in the sending thread, right
    before the request: nothing the round's own thread does can come in between."""
    _cases(10)
    source = Watched()

    def may_send() -> bool:
        source.note("slot")
        return True

    report = _round(source, may_send=may_send)
    assert report.checked == 10
    round_thread = threading.get_ident()
    sends = [(i, thread) for i, (what, thread, _) in enumerate(source.events) if what == "sent"]
    assert len(sends) == 10
    for index, thread in sends:
        assert thread != round_thread
        mine = [what for what, t, _ in source.events[:index] if t == thread]
        assert mine and mine[-1] == "slot", "a request went out without a slot of its own"
    assert sum(what == "slot" for what, _, _ in source.events) == 10


def test_a_retry_with_a_fresh_token_takes_its_own_slot_in_turn() -> None:
    cases = _cases(5)
    retried = str(cases[2].receipt_number)
    slots = []

    class Retrying(Scripted):
        def fetch(self, receipt_number: str, *, pace: Pace | None = None) -> Outcome:
            outcome = super().fetch(receipt_number, pace=pace)
            if receipt_number == retried:  # a 401, a fresh token, and the lookup again
                assert pace is not None
                if not pace():
                    return Unavailable("no slot for the retry")
            return outcome

    def may_send() -> bool:
        slots.append(1)
        return True

    report = _round(Retrying(), may_send=may_send)
    assert report.checked == 5 and report.faults == 0
    assert len(slots) == 6, "the retry went out without a slot"


def test_when_no_slot_is_given_the_round_stops_and_gives_back_what_it_did_not_ask() -> None:
    cases = _cases(12)
    source = Scripted()
    given = iter([True] * 5)
    report = _round(source, may_send=lambda: next(given, False))
    assert report.stopped_early == "quota"
    assert len(source.asked) == 5 and report.checked == 5
    unasked = Case.objects.exclude(receipt_number__in=source.asked)
    assert unasked.count() == len(cases) - 5
    assert not unasked.filter(claimed_until__isnull=False).exists(), "given back: due at once"


def test_a_stay_already_kept_is_kept_once() -> None:
    (case,) = _cases(1)

    def stay(started_days_ago: int, days: float) -> DwellSample:
        return DwellSample(
            case=case,
            form_type="I-485",
            status="case_received",
            next_status="fingerprints_taken",
            started_at=T0 - timedelta(days=started_days_ago),
            days=days,
        )

    insert_instances([stay(30, 10.0)])
    insert_instances([stay(30, 12.0), stay(20, 5.0), stay(20, 5.0)], ignore_conflicts=True)
    kept = sorted(DwellSample.objects.values_list("started_at", "days"))
    assert kept == [(T0 - timedelta(days=30), 10.0), (T0 - timedelta(days=20), 5.0)]
