"""What a client's portal page says: their own cases, in plain words, in their language.

Everything here is read for one client of one firm (the link's), so no other client's
case can reach the page. The client is named by first name at most. What a status
means, and the answer to "what does it mean, what do I do now?", come from the message
texts (casewatch.notify.messages); the words around them from portal/data/portal.toml.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.db.models import F
from django.db.models.functions import Coalesce

from casewatch.cases.models import Case, Client, Deadline, StatusEvent
from casewatch.notify.messages import CLIENT_LANGUAGES, FaqAnswer, explanation, faq
from casewatch.notify.models import PortalLink
from casewatch.portal.texts import PortalTexts, texts_for

SANDBOX = "sandbox"
# Deadline kinds a client is told about; portal.toml has a sentence named after each.
CLIENT_DEADLINES = frozenset({"interview", "biometrics", "rfe_response", "noid_response"})


@dataclass(frozen=True)
class TimelineEntry:
    """One change of a case: when, USCIS's own words as stored, and what it means."""

    day: str
    title_en: str
    title_es: str
    meaning: str
    sandbox: bool


@dataclass(frozen=True)
class CaseView:
    receipt: str
    form_type: str
    sandbox: bool
    has_status: bool
    title: str = ""
    happened: str = ""
    next_step: str = ""
    since: str = ""
    faq: FaqAnswer | None = None
    timeline: list[TimelineEntry] = field(default_factory=list)
    coming_up: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class LanguageChoice:
    code: str
    name: str
    current: bool


@dataclass(frozen=True)
class PortalPage:
    texts: PortalTexts
    firm_name: str
    greeting: str
    questions: str
    cases: list[CaseView]
    sandbox: bool
    languages: list[LanguageChoice]


def first_name(client: Client) -> str:
    """The client's first name, no more: the page may be read over someone's shoulder."""
    words = client.name.split()
    return words[0] if words else ""


def client_zone(client: Client, firm_zone: str) -> ZoneInfo:
    for name in (client.time_zone, firm_zone):
        if name:
            try:
                return ZoneInfo(name)
            except (ZoneInfoNotFoundError, ValueError):
                continue
    return ZoneInfo("UTC")


def _local_day(moment: datetime, zone: ZoneInfo) -> date:
    return moment.astimezone(zone).date()


def _timeline(events: list[StatusEvent], texts: PortalTexts, zone: ZoneInfo) -> list[TimelineEntry]:
    entries = []
    for event in events:
        when = event.uscis_date or event.observed_at
        entries.append(
            TimelineEntry(
                day=texts.write_date(_local_day(when, zone)),
                title_en=event.title_en,
                title_es=event.title_es,
                meaning=explanation(event.status, event.category, texts.code).title,
                sandbox=event.source == SANDBOX,
            )
        )
    return entries


def _coming_up(deadlines: list[Deadline], texts: PortalTexts, today: date) -> list[str]:
    sentences = []
    for deadline in deadlines:
        day: date = deadline.effective_due_on
        if deadline.kind not in CLIENT_DEADLINES or day < today:
            continue
        at: time | None = deadline.due_at
        sentences.append(texts.say(deadline.kind, when=texts.when(day, at)))
    return sentences


def _case_view(
    case: Case,
    events: list[StatusEvent],
    deadlines: list[Deadline],
    texts: PortalTexts,
    zone: ZoneInfo,
    today: date,
) -> CaseView:
    receipt = case.receipt_number or texts.say("receipt_pending")
    sandbox = case.source == SANDBOX
    timeline = _timeline(events, texts, zone)
    coming_up = _coming_up(deadlines, texts, today)
    if not case.status:
        return CaseView(
            receipt=receipt,
            form_type=case.form_type,
            sandbox=sandbox,
            has_status=False,
            timeline=timeline,
            coming_up=coming_up,
        )
    meaning = explanation(case.status, case.category, texts.code)
    since = case.uscis_status_since or case.status_since
    return CaseView(
        receipt=receipt,
        form_type=case.form_type,
        sandbox=sandbox,
        has_status=True,
        title=meaning.title,
        happened=meaning.happened,
        next_step=meaning.next_step,
        since=texts.say("since", date=texts.write_date(_local_day(since, zone))) if since else "",
        faq=faq(case.status, case.category, texts.code),
        timeline=timeline,
        coming_up=coming_up,
    )


def portal_page(link: PortalLink, language: str, now: datetime) -> PortalPage:
    """The page of the link's client, in `language` (one of CLIENT_LANGUAGES)."""
    client = link.client
    firm = link.firm
    texts = texts_for(language)
    zone = client_zone(client, firm.time_zone)
    today = _local_day(now, zone)
    cases = list(
        Case.objects.filter(firm_id=link.firm_id, client_id=link.client_id)
        .defer("notes")
        .order_by(F("status_since").desc(nulls_last=True), "-pk")
    )
    events: dict[int, list[StatusEvent]] = defaultdict(list)
    for event in StatusEvent.objects.filter(
        firm_id=link.firm_id, case__in=[c.pk for c in cases]
    ).order_by(Coalesce("uscis_date", "observed_at").desc(), "-observed_at", "-pk"):
        events[event.case_id].append(event)
    deadlines: dict[int, list[Deadline]] = defaultdict(list)
    for deadline in Deadline.objects.filter(
        firm_id=link.firm_id, case__in=[c.pk for c in cases], completed_at__isnull=True
    ).order_by(Coalesce("firm_due_on", "due_on"), "due_at", "pk"):
        deadlines[deadline.case_id].append(deadline)
    name = first_name(client)
    return PortalPage(
        texts=texts,
        firm_name=firm.name,
        greeting=texts.say("hello", name=name) if name else texts.say("hello_plain"),
        questions=texts.say("questions", firm=firm.name),
        cases=[
            _case_view(case, events[case.pk], deadlines[case.pk], texts, zone, today)
            for case in cases
        ],
        sandbox=any(case.source == SANDBOX for case in cases),
        languages=[
            LanguageChoice(code, texts_for(code).name, code == language)
            for code in CLIENT_LANGUAGES
        ],
    )
