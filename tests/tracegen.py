"""Realistic USCIS status-change traces (spec/trace-format.md) for scheduler tests and benchmarks.

The monitoring scheduler is judged on real-world-like traces it has never seen, so this
generator imitates USCIS's habits rather than any one policy: a mix of forms, each with
plausible paths and side branches, heavy-tailed dwell times that depend on the status,
same-day bursts, office batch days, postings in US Eastern working hours and evenings,
and a portfolio of cases of every age (many of which do not move in the window at all).

API: ``generate_trace(cases, days, seed=..., start=..., ioe_share=..., forms=...)`` returns
the CSV text, ``write_trace(path, ...)`` writes it, and
``python -m tests.tracegen --cases 500 --days 60 --seed 1 [--out FILE]`` prints it.
The status paths, dwell times and posting habits are the module-level tables below.
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import random
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from pathlib import Path
from zoneinfo import ZoneInfo

EASTERN = ZoneInfo("America/New_York")
# A Monday, midnight US Eastern: the default start of the window.
DEFAULT_START = datetime(2025, 1, 6, 5, 0, tzinfo=UTC)
HEADER = ("receipt_number", "form_type", "at", "status_en")


@dataclass(frozen=True)
class Stage:
    """A status a case sits in, and how long it tends to sit there before the next change.

    Dwell times are log-normal around `median_days` (`spread` is the sigma: larger means a
    heavier tail). `same_day` is the chance the next change follows within hours, as when
    USCIS posts an approval and the card order in one run. A `queued` status waits in an
    officer's queue: its dwell scales with the form's and office's pace, may stall for much
    longer, and its exit tends to land on the office's batch days. `lead_days`, when set,
    says how soon this status follows whatever came before (a rejection comes within weeks
    of receipt, however long receipts usually wait).
    """

    titles: Mapping[str, float]
    median_days: float = 30.0
    spread: float = 0.8
    same_day: float = 0.0
    queued: bool = False
    lead_days: float = 0.0


# Every status a generated case can show, keyed by a short name used in routes below.
# Titles are USCIS's own (tests/data/reference_titles.txt, else the catalog's title_en),
# spelled exactly as printed; weights prefer the wording USCIS used most.
STAGES: Mapping[str, Stage] = {
    # intake
    "lockbox": Stage({"Case Accepted By The USCIS Lockbox": 1}, 6, 0.5, same_day=0.2),
    "received": Stage(
        {
            "Case Was Received": 90,
            "Case Was Received and A Receipt Notice Was Sent": 7,
            "Case Was Received and A Receipt Notice Was Emailed": 3,
        },
        45,
        0.9,
        same_day=0.12,
        queued=True,
    ),
    "fees_waived": Stage({"Fees Were Waived": 1}, 40, 0.9, same_day=0.1, queued=True),
    "premium": Stage(
        {"Request For Premium Processing Services Was Received": 1}, 7, 0.6, same_day=0.05
    ),
    # biometrics
    "fp_fee": Stage(
        {"Fingerprint Fee Was Received": 1}, 20, 0.7, same_day=0.05, queued=True, lead_days=10
    ),
    "bio_scheduled": Stage(
        {
            "Biometrics Appointment Was Scheduled": 95,
            "Fingerprint and Biometrics Appointment Was Scheduled": 5,
        },
        24,
        0.35,
        lead_days=16,
    ),
    "bio_reschedule": Stage({"Request To Reschedule My Appointment Was Received": 1}, 21, 0.5),
    "no_show": Stage(
        {"Case Was Updated To Show That No One Appeared for In-Person Processing": 1}, 45, 0.7
    ),
    "fp_taken": Stage(
        {"Case Was Updated To Show Fingerprints Were Taken": 1}, 100, 1.0, 0.03, queued=True
    ),
    # review and interview
    "actively_reviewed": Stage(
        {"Case Is Being Actively Reviewed By USCIS": 1}, 35, 1.0, same_day=0.1, queued=True
    ),
    "ready_interview": Stage(
        {
            "Case is Ready to Be Scheduled for An Interview": 98,
            "Case Was Transferred To Schedule An Interview": 2,
        },
        80,
        0.9,
        queued=True,
    ),
    "interview_notice": Stage({"Interview Was Scheduled": 1}, 42, 0.3),
    "interview_rescheduled": Stage({"Interview Was Rescheduled": 1}, 45, 0.35),
    "interview_cancelled": Stage(
        {"Interview Cancelled And Notice Ordered": 7, "Interview Cancelled": 3},
        60,
        0.8,
        queued=True,
    ),
    "interview_done": Stage(
        {"Interview Was Completed And My Case Must Be Reviewed": 1},
        12,
        1.3,
        same_day=0.1,
        queued=True,
    ),
    "continued": Stage({"Continuation Notice Was Mailed": 1}, 40, 0.6, queued=True),
    "transfer": Stage(
        {
            "Case Was Transferred And A New Office Has Jurisdiction": 82,
            "Case Transferred And New Office Has Jurisdiction": 13,
            "Case Transferred To Another Office": 5,
        },
        75,
        1.0,
        queued=True,
    ),
    # evidence: an RFE response is due 87 days after the notice, a NOID response 33
    "rfe": Stage({"Request for Additional Evidence Was Sent": 1}, 45, 0.5),
    "rie": Stage({"Request for Initial Evidence Was Sent": 1}, 40, 0.5),
    "rfe_response": Stage(
        {"Response To USCIS' Request For Evidence Was Received": 1},
        35,
        1.0,
        same_day=0.04,
        queued=True,
    ),
    "noid": Stage({"Notice Of Intent To Deny Was Sent": 1}, 26, 0.25),
    "noid_response": Stage(
        {"Correspondence Was Received And USCIS Is Reviewing It": 1}, 35, 1.0, queued=True
    ),
    # decisions and documents
    "approved": Stage(
        {"Case Was Approved": 97, "Case Was Approved And A Decision Notice Was Sent": 3},
        4,
        0.8,
        same_day=0.35,
    ),
    "approved_emailed": Stage({"Case Was Approved And My Decision Was Emailed": 1}, 20, 0.8),
    "card_produced": Stage(
        {"New Card Is Being Produced": 99, "Permanent Resident Card Is Being Produced": 1},
        6,
        0.6,
        same_day=0.04,
    ),
    "card_mailed": Stage({"Card Was Mailed To Me": 1}, 1.5, 0.5, same_day=0.3),
    "card_usps": Stage({"Card Was Picked Up By The United States Postal Service": 1}, 2.5, 0.5),
    "card_delivered": Stage({"Card Was Delivered To Me By The Post Office": 1}),
    "card_returned": Stage({"Card Was Returned To USCIS": 1}, 30, 0.8, queued=True),
    "travel_doc": Stage(
        {
            "Advance Parole Document Was Produced": 64,
            "Refugee Travel Document Was Produced": 24,
            "Reentry Permit Was Produced": 12,
        },
        5,
        0.6,
        same_day=0.2,
    ),
    "doc_mailed": Stage({"Document Was Mailed To Me": 65, "Document Was Mailed": 35}, 3, 0.6),
    "dos": Stage({"Case Was Sent To The Department of State": 1}, lead_days=25),
    "oath": Stage({"Oath Ceremony Notice Was Mailed": 1}, 30, 0.4, lead_days=20),
    "oath_rescheduled": Stage({"Oath Ceremony Was Rescheduled": 1}, 30, 0.4),
    "denied": Stage({"Case Was Denied": 1}),
    "rejected": Stage(
        {
            "Case Was Rejected Because It Was Improperly Filed": 46,
            "Case Rejected Because I Sent An Incorrect Fee": 21,
            "Case Rejected Because The Version Of The Form I Sent Is No Longer Accepted": 4,
            "Case Rejected For Incorrect Fee And Incorrect Form Version": 4,
            "Case Was Rejected Because I Did Not Sign My Form": 3,
            "Petition/Application Was Rejected For Insufficient Funds": 2,
            "Case Rejected For Incorrect Fee, Payment Not Signed And Incorrect Form Version": 1,
        },
        lead_days=15,
    ),
    "withdrawn": Stage({"Withdrawal Acknowledgement Notice Was Sent": 1}),
    "closed": Stage({"Case Closed Benefit Received By Other Means": 1}),
    # updates that can land in any pending stretch (see INTERJECTIONS)
    "name_updated": Stage({"Name Was Updated": 1}),
    "dob_updated": Stage({"Date of Birth Was Updated": 1}),
    "address_updated": Stage({"Address Was Updated": 1}),
    "duplicate_notice": Stage({"Duplicate Notice Was Mailed": 1}),
    "notice_returned": Stage(
        {"Notice Was Returned To USCIS Because The Post Office Could Not Deliver It": 1}
    ),
    "g28_rejected": Stage({"Form G-28 Was Rejected Because It Was Improperly Filed": 1}),
    "expedite_received": Stage({"Expedite Request Received": 1}, 9, 0.6),
    "expedite_decided": Stage({"Expedite Request Denied": 93, "Expedite Request Approved": 7}),
}

# Reusable pieces of routes. Route tokens: `name` always; `name?p` with probability p;
# `name*p` repeated while a draw stays under p (a loop, such as a second RFE);
# `a:3|b:1` one of several, weighted; `-` stands for nothing. A name is a segment or a stage.
SEGMENTS: Mapping[str, tuple[str, ...]] = {
    "intake": ("lockbox?0.03", "received:94|fees_waived:6"),
    "intake_employer": ("received",),
    "bio": (
        "fp_fee?0.6",
        "bio_scheduled?0.75",
        "bio_reschedule:3|no_show:1|-:46",
        "fp_taken",
    ),
    "evidence": ("rfe:3|rie:1", "rfe_response"),
    "intent_to_deny": ("noid", "noid_response"),
    "interview": (
        "ready_interview?0.6",
        "interview_notice",
        "interview_rescheduled:1|interview_renoticed:1|-:10",
        "interview_done:7|-:3",
    ),
    "interview_renoticed": ("interview_cancelled", "interview_notice"),
    "card": (
        "card_produced?0.85",
        "card_mailed",
        "card_usps?0.75",
        "card_delivered:92|card_return:2|-:6",
    ),
    "card_return": ("card_returned", "card_mailed", "card_delivered?0.8"),
    "ead_approval": ("approved:1|-:3", "card"),
    "naturalization": ("approved?0.8", "oath", "oath_rescheduled?0.08"),
}

# Per form: weighted routes, each a tuple of route tokens; the last stage stays.
ROUTES: Mapping[str, tuple[tuple[float, tuple[str, ...]], ...]] = {
    "I-485": (
        (
            64,
            (
                "intake",
                "bio",
                "transfer?0.25",
                "actively_reviewed?0.25",
                "evidence*0.3",
                "interview?0.55",
                "evidence*0.08",
                "approved",
                "card",
            ),
        ),
        (8, ("intake", "bio", "evidence*0.5", "intent_to_deny?0.5", "interview?0.3", "denied")),
        (6, ("intake", "rejected")),
        (3, ("intake", "bio?0.5", "withdrawn")),
    ),
    "I-765": (
        (60, ("intake", "bio?0.35", "evidence*0.12", "ead_approval")),
        (8, ("intake", "rejected")),
        (5, ("intake", "bio?0.4", "evidence*0.3", "denied")),
        (6, ("intake", "bio?0.4", "closed")),
        (1, ("intake", "withdrawn")),
    ),
    "I-131": (
        (60, ("intake", "bio?0.5", "evidence*0.15", "approved?0.6", "travel_doc", "doc_mailed")),
        (8, ("intake", "bio?0.5", "closed")),
        (5, ("intake", "bio?0.5", "evidence*0.3", "denied")),
        (6, ("intake", "rejected")),
    ),
    "I-129": (
        (
            70,
            (
                "intake_employer",
                "premium?0.35",
                "evidence*0.25",
                "approved_emailed:6|approved:4",
            ),
        ),
        (6, ("intake_employer", "premium?0.3", "evidence*0.6", "intent_to_deny?0.2", "denied")),
        (4, ("intake_employer", "evidence*0.2", "withdrawn")),
        (2, ("intake_employer", "rejected")),
    ),
    "I-130": (
        (
            60,
            (
                "intake",
                "evidence*0.15",
                "transfer?0.1",
                "interview?0.1",
                "approved",
                "dos?0.45",
            ),
        ),
        (5, ("intake", "evidence*0.4", "intent_to_deny?0.4", "denied")),
        (6, ("intake", "rejected")),
        (2, ("intake", "withdrawn")),
    ),
    "I-140": (
        (
            60,
            (
                "intake_employer",
                "premium?0.4",
                "evidence*0.25",
                "approved_emailed:6|approved:4",
                "dos?0.1",
            ),
        ),
        (6, ("intake_employer", "evidence*0.5", "intent_to_deny?0.3", "denied")),
        (3, ("intake_employer", "rejected")),
        (3, ("intake_employer", "approved_emailed", "withdrawn")),
    ),
    "N-400": (
        (
            60,
            (
                "intake",
                "bio?0.85",
                "transfer?0.1",
                "interview",
                "continued?0.1",
                "evidence*0.12",
                "naturalization",
            ),
        ),
        (8, ("intake", "bio", "interview", "evidence*0.3", "denied")),
        (4, ("intake", "rejected")),
        (1, ("intake", "bio?0.5", "withdrawn")),
    ),
    "I-751": (
        (
            60,
            (
                "intake",
                "bio",
                "transfer?0.35",
                "evidence*0.25",
                "interview?0.2",
                "approved",
                "card",
            ),
        ),
        (5, ("intake", "bio", "transfer?0.3", "interview", "denied")),
        (5, ("intake", "rejected")),
    ),
    "I-90": (
        (80, ("intake", "bio?0.8", "evidence*0.05", "approved?0.3", "card")),
        (3, ("intake", "bio?0.8", "denied")),
        (6, ("intake", "rejected")),
    ),
    "I-539": (
        (60, ("intake", "bio?0.6", "evidence*0.2", "approved")),
        (8, ("intake", "bio?0.6", "evidence*0.4", "denied")),
        (6, ("intake", "rejected")),
        (3, ("intake", "withdrawn")),
    ),
    "I-821D": (
        (80, ("intake", "bio", "evidence*0.1", "approved")),
        (4, ("intake", "bio", "evidence*0.4", "denied")),
        (6, ("intake", "rejected")),
    ),
    "*": (
        (60, ("intake", "bio?0.3", "evidence*0.2", "transfer?0.05", "approved")),
        (8, ("intake", "evidence*0.4", "denied")),
        (6, ("intake", "rejected")),
    ),
}

# Updates that land at a random moment in a case's pending stretch, with their chance per case.
INTERJECTIONS: tuple[tuple[float, tuple[str, ...]], ...] = (
    (0.04, ("name_updated",)),
    (0.01, ("dob_updated",)),
    (0.03, ("address_updated",)),
    (0.02, ("duplicate_notice",)),
    (0.02, ("notice_returned",)),
    (0.01, ("g28_rejected",)),
    (0.03, ("expedite_received", "expedite_decided")),
)


@dataclass(frozen=True)
class Form:
    """How often a form is filed, where paper filings are receipted, and how slow it is."""

    weight: float
    offices: Mapping[str, float]
    pace: float = 1.0
    lockbox: float = 0.3  # share of paper receipts from a lockbox (a 9 after the fiscal year)


FORMS: Mapping[str, Form] = {
    "I-765": Form(20, {"MSC": 3, "EAC": 2, "WAC": 2, "LIN": 1, "SRC": 2, "YSC": 1}, pace=1.2),
    "I-485": Form(14, {"MSC": 5, "LIN": 2, "SRC": 2, "YSC": 1}, pace=1.5),
    "I-130": Form(10, {"MSC": 2, "EAC": 2, "WAC": 2, "LIN": 1, "SRC": 2}, pace=4.0),
    "I-131": Form(9, {"MSC": 3, "EAC": 1, "LIN": 1, "SRC": 1, "YSC": 1}, pace=1.5),
    "I-129": Form(9, {"EAC": 3, "WAC": 3, "LIN": 1, "SRC": 1}, pace=1.0, lockbox=0.0),
    "N-400": Form(9, {"MSC": 4, "LIN": 1, "SRC": 1}, pace=1.2),
    "I-751": Form(6, {"EAC": 2, "WAC": 2, "LIN": 1, "SRC": 1}, pace=3.0),
    "I-539": Form(5, {"EAC": 2, "WAC": 2, "LIN": 1, "SRC": 1}, pace=2.5),
    "I-140": Form(5, {"LIN": 1, "SRC": 1}, pace=2.0, lockbox=0.0),
    "I-90": Form(4, {"MSC": 3, "LIN": 1}, pace=2.0),
    "I-821D": Form(3, {"EAC": 1, "WAC": 1, "LIN": 1, "SRC": 1}, pace=1.2),
    "I-129F": Form(2, {"EAC": 1, "WAC": 1, "SRC": 1}, pace=3.0),
    "I-360": Form(2, {"EAC": 1, "SRC": 1}, pace=3.0),
    "I-601A": Form(1, {"MSC": 1, "LIN": 1}, pace=5.0),
}
OTHER_FORM = Form(1, {"MSC": 1, "EAC": 1, "WAC": 1, "LIN": 1, "SRC": 1})

# Which cases a firm tracks: most are pending, somewhere along their path; the rest
# finished a while ago. Filing is at least three weeks before the window, at most ten years.
PENDING_SHARE = 0.7
MIN_AGE_DAYS = 21.0
MAX_AGE_DAYS = 3650.0

# When USCIS posts, in US Eastern local time: (share, from second of day, to second of day).
# Mostly working hours and evenings; a few at night (seconds past 24h roll into the next day).
POSTING_HOURS: tuple[tuple[float, int, int], ...] = (
    (0.05, 7 * 3600, 8 * 3600),
    (0.62, 8 * 3600, 18 * 3600),
    (0.29, 18 * 3600, 22 * 3600),
    (0.04, 22 * 3600, 31 * 3600),
)
OFF_DAY_POSTS = 0.03  # share of posts that still land on a weekend or federal holiday
BATCH_DAY_SHARE = 0.35  # share of business days an office runs a batch of queued decisions
BATCH_SNAP = 0.5  # chance a queued decision waits for the office's next batch day
STALL_CHANCE = 0.05  # chance a queued stage stalls far beyond its usual time
AT_STYLES: Mapping[str, float] = {"Z": 0.6, "eastern": 0.3, "+00:00": 0.1}

# US federal holidays: (month, day) fixed, or (month, weekday, nth) with nth -1 for the last.
FIXED_HOLIDAYS = ((1, 1), (6, 19), (7, 4), (11, 11), (12, 25))
FLOATING_HOLIDAYS = ((1, 0, 3), (2, 0, 3), (5, 0, -1), (9, 0, 1), (10, 0, 2), (11, 3, 4))


@dataclass(frozen=True)
class Step:
    """One parsed route token: options with weights, taken always, maybe, or in a loop."""

    options: tuple[str, ...]
    weights: tuple[float, ...]
    chance: float
    repeat: bool


@cache
def parse_step(token: str) -> Step:
    """Read a route token (`name`, `name?p`, `name*p`, `a:3|b:1`) once."""
    body, chance, repeat = token, 1.0, False
    for mark in "?*":
        if mark in body:
            body, _, probability = body.partition(mark)
            chance, repeat = float(probability), mark == "*"
    options: list[str] = []
    weights: list[float] = []
    for option in body.split("|"):
        name, _, weight = option.partition(":")
        options.append(name)
        weights.append(float(weight or 1))
    return Step(tuple(options), tuple(weights), chance, repeat)


def _times_taken(step: Step, rng: random.Random) -> int:
    """How many times a step happens: 0 or 1, or a geometric count for a loop."""
    if not step.repeat:
        return 1 if step.chance >= 1 or rng.random() < step.chance else 0
    count = 0
    while count < 4 and rng.random() < step.chance:
        count += 1
    return count


def expand(tokens: Sequence[str], rng: random.Random) -> list[str]:
    """The stages one case will go through, drawn from a route."""
    stages: list[str] = []
    for token in tokens:
        step = parse_step(token)
        for _ in range(_times_taken(step, rng)):
            name = step.options[0]
            if len(step.options) > 1:
                name = rng.choices(step.options, weights=step.weights)[0]
            if name in SEGMENTS:
                stages += expand(SEGMENTS[name], rng)
            elif name != "-":
                stages.append(name)
    return stages


def federal_holidays(year: int) -> set[date]:
    """US federal holidays of a year as observed (a weekend date moves to Friday or Monday)."""
    days = {date(year, month, day) for month, day in FIXED_HOLIDAYS}
    days = {d - timedelta(days=1) if d.weekday() == 5 else d for d in days}
    days = {d + timedelta(days=1) if d.weekday() == 6 else d for d in days}
    for month, weekday, nth in FLOATING_HOLIDAYS:
        candidates = [
            date(year, month, day)
            for day in range(1, 32)
            if _valid(year, month, day) and date(year, month, day).weekday() == weekday
        ]
        days.add(candidates[nth - 1 if nth > 0 else nth])
    return days


def _valid(year: int, month: int, day: int) -> bool:
    try:
        date(year, month, day)
    except ValueError:
        return False
    return True


class Poster:
    """When USCIS posts a change: business days, Eastern working hours, office batch days."""

    def __init__(self, rng: random.Random, first: date, last: date, offices: Sequence[str]):
        self.rng = rng
        self.off_days: set[date] = set()
        for year in range(first.year, last.year + 2):
            self.off_days |= federal_holidays(year)
        self.batch_days: dict[str, set[date]] = {}
        for office in offices:
            self.batch_days[office] = {
                first + timedelta(days=n)
                for n in range((last - first).days + 1)
                if self.is_business_day(first + timedelta(days=n))
                and rng.random() < BATCH_DAY_SHARE
            }

    def is_business_day(self, day: date) -> bool:
        return day.weekday() < 5 and day not in self.off_days

    def next_business_day(self, day: date, count: int = 1) -> date:
        """The `count`-th business day after `day`.

        Work due on a weekend or holiday is spread over the next week rather than piled
        onto Monday, as an office works through its backlog.
        """
        while count:
            day += timedelta(days=1)
            count -= self.is_business_day(day)
        return day

    def post(self, target: datetime, office: str, snap: bool) -> datetime:
        """The posting moment for a change due around `target`."""
        day = target.astimezone(EASTERN).date()
        if snap and self.rng.random() < BATCH_SNAP:
            batch = self.batch_days.get(office, set())
            for ahead in range(7):
                if day + timedelta(days=ahead) in batch:
                    day += timedelta(days=ahead)
                    break
        if not self.is_business_day(day) and self.rng.random() >= OFF_DAY_POSTS:
            day = self.next_business_day(day, self.rng.randrange(1, 6))
        _, low, high = _pick(POSTING_HOURS, self.rng)
        local = datetime.combine(day, time()) + timedelta(seconds=self.rng.randrange(low, high))
        return local.replace(tzinfo=EASTERN).astimezone(UTC)

    def burst(self, previous: datetime) -> datetime:
        """A change in the same posting run or a few hours after the previous one."""
        if self.rng.random() < 0.5:
            gap = self.rng.uniform(20, 600)
        else:
            gap = self.rng.expovariate(1 / (3 * 3600))
        return previous + timedelta(seconds=max(20.0, gap))


def _pick(table: Sequence[tuple[float, int, int]], rng: random.Random) -> tuple[float, int, int]:
    draw = rng.random()
    for row in table:
        draw -= row[0]
        if draw < 0:
            return row
    return table[-1]


def _title(stage: Stage, rng: random.Random) -> str:
    titles = list(stage.titles)
    if len(titles) == 1:
        return titles[0]
    return rng.choices(titles, weights=list(stage.titles.values()))[0]


def _dwell_days(stage: Stage, pace: float, rng: random.Random) -> float:
    """Heavy-tailed time in a status; queued statuses follow the case's pace and may stall."""
    days = stage.median_days * math.exp(stage.spread * rng.gauss(0.0, 1.0))
    if stage.queued:
        days *= pace
        if rng.random() < STALL_CHANCE:
            days *= min(20.0, rng.paretovariate(1.2))
    return days


@dataclass(frozen=True)
class Move:
    """A planned change: its title and when it comes after the previous one."""

    title: str
    days: float  # nominal wait after the previous change
    burst: bool  # follows within hours instead (same posting run)
    snap: bool  # may wait for the office's next batch day


@dataclass
class Event:
    """A change as posted: the title and the moment USCIS showed it."""

    title: str
    at: datetime


def plan(stages: Sequence[str], pace: float, rng: random.Random) -> list[Move]:
    """The case's changes with nominal waits, before any calendar is applied.

    Planning first lets the caller place the window against the case's whole duration.
    """
    moves: list[Move] = []
    previous: Stage | None = None
    for name in stages:
        stage = STAGES[name]
        title = _title(stage, rng)
        if moves and title == moves[-1].title:
            continue
        if previous is None:
            move = Move(title, rng.uniform(0, 6), burst=False, snap=False)
        elif stage.lead_days:
            lead = stage.lead_days * math.exp(0.5 * rng.gauss(0.0, 1.0))
            move = Move(title, lead, burst=False, snap=False)
        elif rng.random() < previous.same_day:
            move = Move(title, 0.0, burst=True, snap=False)
        else:
            move = Move(title, _dwell_days(previous, pace, rng), False, snap=previous.queued)
        moves.append(move)
        previous = stage
    return moves


def schedule(
    moves: Sequence[Move], intake: datetime, office: str, until: datetime, poster: Poster
) -> list[Event]:
    """Post the planned changes on USCIS's calendar; stops at the first one after `until`."""
    events: list[Event] = []
    moment = intake
    for move in moves:
        if move.burst and events:
            at = poster.burst(events[-1].at)
        else:
            at = poster.post(moment + timedelta(days=move.days), office, move.snap)
        if events and at <= events[-1].at:
            at = poster.burst(events[-1].at)
        events.append(Event(move.title, at))
        moment = at
        if at > until:
            break
    return events


def interject(events: list[Event], office: str, poster: Poster, rng: random.Random) -> list[Event]:
    """Add name/address updates, returned notices, expedites... into pending stretches.

    They land before the case's last event, so a final status still stays final.
    """
    if len(events) < 2:
        return events
    added: list[Event] = []
    first, last = events[0].at, events[-1].at
    for chance, names in INTERJECTIONS:
        if rng.random() >= chance:
            continue
        moment = first + (last - first) * rng.random()
        following = next(e.at for e in events if e.at > moment)
        floor = first
        for name in names:
            stage = STAGES[name]
            at = poster.post(moment, office, snap=False)
            if not floor < at < following or any(e.at == at for e in events):
                break
            added.append(Event(_title(stage, rng), at))
            floor = at
            moment = at + timedelta(days=_dwell_days(stage, 1.0, rng))
    if not added:
        return events
    merged = sorted(events + added, key=lambda e: e.at)
    return [e for i, e in enumerate(merged) if i == 0 or e.title != merged[i - 1].title]


def _weekdays_between(first: date, last: date) -> int:
    """Weekdays in [first, last): how USCIS counts 'computer workdays'."""
    weeks, rest = divmod((last - first).days, 7)
    return weeks * 5 + sum(1 for n in range(rest) if (first.weekday() + n) % 7 < 5)


def receipt_number(prefix: str, intake: date, lockbox: bool, rng: random.Random) -> str:
    """A plausible receipt: fiscal year, computer workday of fee intake, serial; IOE random."""
    if prefix == "IOE":
        return f"IOE{rng.randrange(10**10):010d}"
    fiscal_year = intake.year + (1 if intake.month >= 10 else 0)
    october = date(fiscal_year - 1, 10, 1)
    workday = min(999, _weekdays_between(october, intake) + 1)
    if lockbox:
        return f"{prefix}{fiscal_year % 100:02d}9{workday:03d}{rng.randrange(10**4):04d}"
    return f"{prefix}{fiscal_year % 100:02d}{workday:03d}{rng.randrange(10**5):05d}"


def format_at(moment: datetime, style: str) -> str:
    """ISO 8601 with seconds and a zone: `Z`, the Eastern offset, or `+00:00`."""
    if style == "eastern":
        return moment.astimezone(EASTERN).isoformat(timespec="seconds")
    text = moment.astimezone(UTC).isoformat(timespec="seconds")
    return text.replace("+00:00", "Z") if style == "Z" else text


@dataclass(frozen=True)
class Context:
    """What every case of one trace shares."""

    rng: random.Random
    poster: Poster
    start: datetime
    end: datetime
    ioe_share: float
    forms: tuple[str, ...]
    form_weights: tuple[float, ...]
    office_pace: Mapping[str, float]


def _age_days(span: float, rng: random.Random) -> float:
    """How long before the window the case was filed, given its nominal duration.

    Most tracked cases are pending, anywhere along their path; the rest finished some
    time ago and sit in their final status.
    """
    if rng.random() < PENDING_SHARE:
        return rng.uniform(MIN_AGE_DAYS, max(span, MIN_AGE_DAYS + 1))
    return min(MAX_AGE_DAYS, max(span, MIN_AGE_DAYS) + rng.expovariate(1 / 300))


def _route(form: str, rng: random.Random) -> tuple[str, ...]:
    routes = ROUTES.get(form) or ROUTES["*"]
    return rng.choices([r for _, r in routes], weights=[w for w, _ in routes])[0]


def _new_receipt(
    office: str, intake: datetime, lockbox: bool, taken: set[str], rng: random.Random
) -> str:
    """A receipt number no other case of the trace has."""
    day = intake.astimezone(EASTERN).date()
    receipt = receipt_number(office, day, lockbox, rng)
    while receipt in taken:
        receipt = receipt_number(office, day, lockbox, rng)
    taken.add(receipt)
    return receipt


def generate_case(ctx: Context, taken: set[str]) -> list[tuple[str, str, str, str]]:
    """The trace rows of one new case: its status at the start, then its changes."""
    rng = ctx.rng
    form = rng.choices(ctx.forms, weights=ctx.form_weights)[0]
    profile = FORMS.get(form, OTHER_FORM)
    online = rng.random() < ctx.ioe_share
    prefixes = list(profile.offices)
    office = "IOE" if online else rng.choices(prefixes, weights=list(profile.offices.values()))[0]
    pace = profile.pace * ctx.office_pace[office] * math.exp(0.35 * rng.gauss(0.0, 1.0))
    moves = plan(expand(_route(form, rng), rng), pace, rng)
    age = _age_days(sum(m.days for m in moves), rng)
    intake = ctx.poster.post(ctx.start - timedelta(days=age), office, snap=False)
    events = schedule(moves, intake, office, ctx.end, ctx.poster)
    while events[0].at >= ctx.start:  # the receipt came out late: file a week earlier
        intake -= timedelta(days=7)
        events = schedule(moves, intake, office, ctx.end, ctx.poster)
    events = interject(events, office, ctx.poster, rng)
    lockbox = not online and rng.random() < profile.lockbox
    receipt = _new_receipt(office, intake, lockbox, taken, rng)
    current = max(i for i, e in enumerate(events) if e.at <= ctx.start)
    shown = [events[current], *(e for e in events[current + 1 :] if e.at <= ctx.end)]
    style = rng.choices(list(AT_STYLES), weights=list(AT_STYLES.values()))[0]
    return [(receipt, form, format_at(e.at, style), e.title) for e in shown]


def _context(
    seed: int,
    start: datetime,
    days: float,
    ioe_share: float,
    forms: Mapping[str, float] | Sequence[str] | None,
) -> Context:
    if start.tzinfo is None:
        raise ValueError("start must carry a time zone")
    if days <= 0:
        raise ValueError("days must be positive")
    if not 0 <= ioe_share <= 1:
        raise ValueError("ioe_share must be between 0 and 1")
    if forms is None:
        forms = {name: form.weight for name, form in FORMS.items()}
    elif isinstance(forms, str):
        forms = {forms: 1.0}
    elif not isinstance(forms, Mapping):
        forms = dict.fromkeys(forms, 1.0)
    if not forms:
        raise ValueError("forms must name at least one form")
    rng = random.Random(seed)
    start = start.astimezone(UTC)
    end = start + timedelta(days=days)
    oldest = (start - timedelta(days=MAX_AGE_DAYS + 30)).date()
    offices = sorted({*(o for f in FORMS.values() for o in f.offices), *OTHER_FORM.offices, "IOE"})
    poster = Poster(rng, oldest, (end + timedelta(days=30)).date(), offices)
    return Context(
        rng=rng,
        poster=poster,
        start=start,
        end=end,
        ioe_share=ioe_share,
        forms=tuple(forms),
        form_weights=tuple(float(w) for w in forms.values()),
        office_pace={o: math.exp(0.25 * rng.gauss(0.0, 1.0)) for o in offices},
    )


def generate_trace(
    cases: int,
    days: float,
    *,
    seed: int,
    start: datetime | None = None,
    ioe_share: float = 0.1,
    forms: Mapping[str, float] | Sequence[str] | None = None,
) -> str:
    """A trace CSV of `cases` cases over `days` days from `start`; the same seed, the same text.

    `forms` overrides the form mix (weights, or names taken equally often); forms without
    routes of their own follow generic ones.
    """
    ctx = _context(seed, start or DEFAULT_START, days, ioe_share, forms)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HEADER)
    taken: set[str] = set()
    for _ in range(cases):
        writer.writerows(generate_case(ctx, taken))
    return out.getvalue()


def write_trace(
    path: str | Path,
    cases: int,
    days: float,
    *,
    seed: int,
    start: datetime | None = None,
    ioe_share: float = 0.1,
    forms: Mapping[str, float] | Sequence[str] | None = None,
) -> Path:
    """Write `generate_trace(...)` to `path` (UTF-8) and return the path."""
    target = Path(path)
    text = generate_trace(cases, days, seed=seed, start=start, ioe_share=ioe_share, forms=forms)
    target.write_text(text, encoding="utf-8")
    return target


def _parse_start(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.tracegen", description=__doc__)
    parser.add_argument("--cases", type=int, required=True)
    parser.add_argument("--days", type=float, required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--start", type=_parse_start, help="window start, ISO 8601 (UTC if bare)")
    parser.add_argument("--ioe-share", type=float, default=0.1)
    parser.add_argument("--out", type=Path, help="write here instead of standard output")
    args = parser.parse_args(argv)
    text = generate_trace(
        args.cases, args.days, seed=args.seed, start=args.start, ioe_share=args.ioe_share
    )
    if args.out is None:
        sys.stdout.write(text)
    else:
        args.out.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
