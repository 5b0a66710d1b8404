"""The dashboard: what changed since a member last looked (the ones to act on first, each
with what it means and what to do), critical changes nobody has acknowledged yet, what is
due, and USCIS's health; acknowledging, assigning and commenting, audited and firm-scoped."""

from __future__ import annotations

import json
import re
from datetime import date, timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client as Browser
from django.test.utils import CaptureQueriesContext
from django.utils import timezone, translation

from casewatch.accounts.models import Firm, Membership, Role
from casewatch.audit.chain import verify
from casewatch.audit.models import AuditEntry
from casewatch.cases.models import Case, Client, Comment, Deadline, EventFollowUp, StatusEvent
from casewatch.core.staff_guidance import default_guidance, load_guidance
from casewatch.core.statuses import CATEGORIES, CatalogError, default_catalog
from casewatch.web import guidance
from tests.environment import sign_in
from tests.test_i18n import _english_left

pytestmark = pytest.mark.django_db

SPANISH = "es-MX,es;q=0.9,en;q=0.5"
RFE_MEANING = (
    "USCIS needs more evidence before it can decide (a request for evidence). The notice "
    "lists what it needs and the deadline to answer."
)
RFE_NEXT_STEP = (
    "Get the notice, tell the client what is needed, put the response deadline on the "
    "calendar and assign someone to prepare the response."
)


# --- A firm, its people and its changes ---------------------------------------------


def _member(
    firm: Firm, username: str, role: str = Role.PARALEGAL, language: str = "", **names: str
) -> Membership:
    user = User.objects.create_user(username=username, password="correct horse battery", **names)
    return Membership.objects.create(firm=firm, user=user, role=role, language=language)


def _browser(member: Membership, language: str = "en") -> Browser:
    browser = Browser(headers={"accept-language": language})
    sign_in(browser, member.user)
    return browser


@pytest.fixture
def firm() -> Firm:
    return Firm.objects.create(name="Example Immigration Law", slug="example")


@pytest.fixture
def paula(firm: Firm) -> Membership:
    return _member(firm, "paula", first_name="Paula", last_name="Pérez")


def _case(firm: Firm, receipt: str, client_name: str = "Fakey <b>McTestface</b>") -> Case:
    client = Client.objects.create(firm=firm, personal={"name": client_name})
    return Case.objects.create(firm=firm, receipt_number=receipt, form_type="I-485", client=client)


def _change(
    case: Case,
    status: str,
    *,
    minutes_ago: float = 10,
    initial: bool = False,
    recovered: bool = False,
) -> StatusEvent:
    """A change of the case to a catalog status, as the monitor records it."""
    known = default_catalog().statuses[status]
    observed = timezone.now() - timedelta(minutes=minutes_ago)
    return StatusEvent.objects.create(
        firm_id=case.firm_id,
        case=case,
        status=known.key,
        category=known.category,
        urgency=known.urgency,
        confidence=1.0,
        title_en=known.title_en,
        title_es=known.title_es,
        uscis_date=observed - timedelta(hours=2),
        observed_at=observed,
        source="sandbox",
        initial=initial,
        recovered=recovered,
    )


def _section(page: str, name: str) -> str:
    """The HTML of one part of the dashboard: changes, critical or deadlines."""
    match = re.search(rf'<section id="{name}".*?</section>', page, re.DOTALL)
    assert match, f"no {name} section"
    return match.group(0)


def _dashboard(browser: Browser) -> str:
    response = browser.get("/")
    assert response.status_code == 200
    return response.content.decode()


# --- Changes since you last looked ---------------------------------------------------


def test_each_change_appears_once_the_ones_to_act_on_first(firm: Firm, paula: Membership) -> None:
    approved = _change(_case(firm, "EAC2490000001"), "approved", minutes_ago=5)
    rfe = _change(_case(firm, "EAC2490000002"), "rfe_sent", minutes_ago=50)
    _change(_case(firm, "EAC2490000003"), "case_received", minutes_ago=1, initial=True)

    changes = _section(_dashboard(_browser(paula)), "changes")

    assert changes.count(f'id="changes-{rfe.pk}"') == 1
    assert changes.count(f'id="changes-{approved.pk}"') == 1
    assert changes.index("EAC2490000002") < changes.index("EAC2490000001")
    assert "EAC2490000003" not in changes  # the first status casewatch saw is no change
    assert "Request for Additional Evidence Was Sent" in changes and "I-485" in changes
    assert "Fakey &lt;b&gt;McTestface&lt;/b&gt;" in changes  # decrypted, and escaped
    assert RFE_MEANING in changes and RFE_NEXT_STEP in changes
    assert "USCIS posted it on" in changes and "casewatch saw it on" in changes


def test_among_changes_of_one_urgency_the_more_serious_category_comes_first(
    firm: Firm, paula: Membership
) -> None:
    _change(_case(firm, "EAC2490000001"), "interview_scheduled", minutes_ago=1)
    _change(_case(firm, "EAC2490000002"), "denied", minutes_ago=30)
    _change(_case(firm, "EAC2490000003"), "rfe_sent", minutes_ago=20)
    changes = _section(_dashboard(_browser(paula)), "changes")
    order = [changes.index(f"EAC249000000{n}") for n in (2, 3, 1)]
    assert order == sorted(order)


def test_a_change_read_from_uscis_history_is_marked_as_recovered(
    firm: Firm, paula: Membership
) -> None:
    _change(_case(firm, "EAC2490000001"), "fingerprints_taken", recovered=True)
    changes = _section(_dashboard(_browser(paula)), "changes")
    assert "recovered from USCIS history" in changes
    assert "The client&#x27;s fingerprints and photos were taken." in changes


def test_mark_all_as_seen_hides_what_was_shown_but_not_what_came_after(
    firm: Firm, paula: Membership
) -> None:
    case = _case(firm, "EAC2490000001")
    rfe = _change(case, "rfe_sent", minutes_ago=30)
    browser = _browser(paula)
    page = _dashboard(browser)
    shown_at = re.search(r'name="until" value="([^"]+)"', page)
    assert shown_at and 'action="/dashboard/seen/"' in page

    later = _change(_case(firm, "EAC2490000002"), "approved", minutes_ago=0)
    response = browser.post("/dashboard/seen/", {"until": shown_at.group(1)})
    assert response.status_code == 302 and response["Location"] == "/#changes"

    page = _dashboard(browser)
    changes = _section(page, "changes")
    assert f"changes-{rfe.pk}" not in changes
    assert f"changes-{later.pk}" in changes  # it arrived after the page was shown
    assert f"critical-{rfe.pk}" in _section(page, "critical")  # still not acknowledged

    browser.post("/dashboard/seen/", {"until": "2999-01-01T00:00:00+00:00"})
    assert "Nothing new since you last looked." in _section(_dashboard(browser), "changes")
    paula.refresh_from_db()
    assert paula.changes_seen_until is not None
    assert paula.changes_seen_until <= timezone.now()  # never in the future

    browser.post("/dashboard/seen/", {"until": "2001-01-01T00:00:00+00:00"})
    assert Membership.objects.get(pk=paula.pk).changes_seen_until == paula.changes_seen_until


def test_beyond_fifty_changes_the_rest_is_one_link_away_in_the_same_number_of_queries(
    firm: Firm, paula: Membership
) -> None:
    browser = _browser(paula)
    for n in range(3):
        _change(_case(firm, f"EAC24900000{n:02d}"), "rfe_sent", minutes_ago=n + 1)
    _dashboard(browser)  # the first look also fills caches
    with CaptureQueriesContext(connection) as few:
        _dashboard(browser)
    for n in range(3, 60):
        _change(_case(firm, f"EAC24900000{n:02d}"), "rfe_sent", minutes_ago=n + 1)
    with CaptureQueriesContext(connection) as many:
        page = _dashboard(browser)
    # Only one query more however many there are: counting those not shown.
    assert len(many) == len(few) + 1, [q["sql"][:120] for q in many.captured_queries]
    assert _section(page, "changes").count('class="change urgency-action"') == 50
    assert "10 more changes: see the case list" in page
    assert "Only the oldest 50 are shown" in page


# --- Critical changes nobody acknowledged ---------------------------------------------


def test_critical_changes_wait_oldest_first_until_someone_acknowledges_them(
    firm: Firm, paula: Membership
) -> None:
    newer = _change(_case(firm, "EAC2490000001"), "noid_sent", minutes_ago=10)
    older = _change(_case(firm, "EAC2490000002"), "rfe_sent", minutes_ago=60 * 24 * 20)
    _change(_case(firm, "EAC2490000003"), "approved", minutes_ago=5)  # not critical
    browser = _browser(paula)
    critical = _section(_dashboard(browser), "critical")
    assert critical.index(f"critical-{older.pk}") < critical.index(f"critical-{newer.pk}")
    assert "EAC2490000003" not in critical

    response = browser.post(f"/changes/{older.pk}/acknowledge/")
    assert response.status_code == 302

    follow_up = EventFollowUp.objects.get(event=older)
    assert follow_up.acknowledged_by == paula.user and follow_up.acknowledged_at is not None
    page = _dashboard(browser)
    assert f"critical-{older.pk}" not in _section(page, "critical")
    entry = AuditEntry.objects.get(action="follow_up.acknowledged")
    assert (entry.object_type, entry.object_id) == ("status_event", str(older.pk))
    assert entry.actor == f"user:{paula.user.pk}" and entry.firm_id == firm.pk
    # Acknowledging twice keeps the first acknowledgement and writes nothing more.
    browser.post(f"/changes/{older.pk}/acknowledge/")
    assert AuditEntry.objects.filter(action="follow_up.acknowledged").count() == 1
    assert verify().ok


def test_a_critical_change_can_be_given_to_a_colleague(firm: Firm, paula: Membership) -> None:
    olga = _member(firm, "olga", Role.ATTORNEY, first_name="Olga", last_name="Ortiz")
    rfe = _change(_case(firm, "EAC2490000001"), "rfe_sent")
    browser = _browser(paula)
    critical = _section(_dashboard(browser), "critical")
    assert f'<label for="assign-{rfe.pk}">' in critical
    assert f'<option value="{olga.pk}">Olga Ortiz</option>' in critical

    response = browser.post(f"/changes/{rfe.pk}/assign/", {"member": olga.pk})
    assert response.status_code == 302
    assert EventFollowUp.objects.get(event=rfe).assigned_to == olga.user
    assert "Assigned to Olga Ortiz." in _section(_dashboard(browser), "critical")
    entry = AuditEntry.objects.get(action="follow_up.assigned")
    details = json.loads(entry.details_json)
    assert details == {"case_id": rfe.case_id, "assigned_to": f"user:{olga.user.pk}"}

    browser.post(f"/changes/{rfe.pk}/assign/", {"member": ""})
    assert EventFollowUp.objects.get(event=rfe).assigned_to is None
    assert verify().ok


def test_a_comment_on_a_change_is_kept_with_the_case_and_never_in_the_audit_log(
    firm: Firm, paula: Membership
) -> None:
    rfe = _change(_case(firm, "EAC2490000001"), "rfe_sent")
    browser = _browser(paula)
    text = "Called Fakey <b>McTestface</b>, documents by Friday"
    response = browser.post(f"/changes/{rfe.pk}/comment/", {"body": text})
    assert response.status_code == 302

    comment = Comment.objects.get()
    assert (comment.case_id, comment.event_id, comment.author) == (rfe.case_id, rfe.pk, paula.user)
    assert comment.body == text
    assert "Called Fakey &lt;b&gt;McTestface&lt;/b&gt;" in _section(_dashboard(browser), "critical")
    entry = AuditEntry.objects.get(action="comment.added")
    assert json.loads(entry.details_json) == {"case_id": rfe.case_id, "event_id": rfe.pk}
    assert "Fakey" not in entry.details_json and "Friday" not in entry.details_json
    assert browser.post(f"/changes/{rfe.pk}/comment/", {"body": "  "}).status_code == 302
    assert Comment.objects.count() == 1
    assert verify().ok


def test_another_firms_change_or_member_is_not_found(firm: Firm, paula: Membership) -> None:
    other = Firm.objects.create(name="Other Firm", slug="other")
    theirs = _change(_case(other, "EAC2490000009"), "rfe_sent")
    their_member = _member(other, "theirs", Role.ATTORNEY)
    ours = _change(_case(firm, "EAC2490000001"), "rfe_sent")
    browser = _browser(paula)

    assert browser.post(f"/changes/{theirs.pk}/acknowledge/").status_code == 404
    assert browser.post(f"/changes/{theirs.pk}/assign/", {"member": paula.pk}).status_code == 404
    assert browser.post(f"/changes/{theirs.pk}/comment/", {"body": "hi"}).status_code == 404
    assert (
        browser.post(f"/changes/{ours.pk}/assign/", {"member": their_member.pk}).status_code == 404
    )
    assert not EventFollowUp.objects.exists() and not Comment.objects.exists()
    assert not AuditEntry.objects.filter(action__startswith="follow_up").exists()
    assert "EAC2490000009" not in _dashboard(browser)


def test_front_desk_sees_critical_changes_but_cannot_handle_them(firm: Firm) -> None:
    rfe = _change(_case(firm, "EAC2490000001"), "rfe_sent")
    desk = _member(firm, "frank", Role.FRONT_DESK)
    browser = _browser(desk)
    page = _dashboard(browser)
    assert f"critical-{rfe.pk}" in _section(page, "critical")
    assert "/acknowledge/" not in page and "/assign/" not in page and "/comment/" not in page

    assert browser.post(f"/changes/{rfe.pk}/acknowledge/").status_code == 403
    assert browser.post(f"/changes/{rfe.pk}/assign/", {"member": desk.pk}).status_code == 403
    assert browser.post(f"/changes/{rfe.pk}/comment/", {"body": "hi"}).status_code == 403
    assert not EventFollowUp.objects.exists() and not Comment.objects.exists()
    # What they have seen is their own business.
    assert (
        browser.post("/dashboard/seen/", {"until": timezone.now().isoformat()}).status_code == 302
    )


# --- Deadlines ------------------------------------------------------------------------


def _deadline(case: Case, due: date, **fields: Any) -> Deadline:
    return Deadline.objects.create(
        firm_id=case.firm_id, case=case, kind="rfe_response", due_on=due, basis=due, **fields
    )


def test_upcoming_deadlines_are_the_open_overdue_and_next_thirty_days_soonest_first(
    firm: Firm, paula: Membership
) -> None:
    today = timezone.localdate()
    _deadline(_case(firm, "EAC2490000001"), today + timedelta(days=12))
    _deadline(_case(firm, "EAC2490000002"), today - timedelta(days=3))
    _deadline(_case(firm, "EAC2490000003"), today + timedelta(days=45))  # too far
    _deadline(_case(firm, "EAC2490000004"), today + timedelta(days=2), completed_at=timezone.now())
    # The firm's own date counts: moved into the window, and out of it.
    _deadline(
        _case(firm, "EAC2490000005"),
        today + timedelta(days=60),
        firm_due_on=today + timedelta(days=5),
    )
    _deadline(
        _case(firm, "EAC2490000006"),
        today + timedelta(days=1),
        firm_due_on=today + timedelta(days=40),
    )

    deadlines = _section(_dashboard(_browser(paula)), "deadlines")

    shown = re.findall(r"EAC24900000\d\d", deadlines)
    assert shown == ["EAC2490000002", "EAC2490000005", "EAC2490000001"]
    assert "3 days overdue" in deadlines and "in 5 days" in deadlines and "in 12 days" in deadlines
    assert "RFE response due" in deadlines


def test_beyond_fifty_deadlines_the_firms_own_dates_still_decide_the_order(
    firm: Firm, paula: Membership
) -> None:
    today = timezone.localdate()
    for n in range(55):
        _deadline(_case(firm, f"EAC25000000{n:02d}"), today - timedelta(days=n))
    # Casewatch's date is far off, the firm's is the most overdue of all: shown first.
    _deadline(
        _case(firm, "EAC2490000001"),
        today + timedelta(days=90),
        firm_due_on=today - timedelta(days=400),
    )
    # Casewatch's date would have put it first; the firm moved it out of the window.
    _deadline(
        _case(firm, "EAC2490000002"),
        today - timedelta(days=500),
        firm_due_on=today + timedelta(days=31),
    )

    deadlines = _section(_dashboard(_browser(paula)), "deadlines")

    shown = re.findall(r"EAC2[45]\d{8}", deadlines)
    assert shown == ["EAC2490000001"] + [f"EAC25000000{n:02d}" for n in range(54, 5, -1)]
    assert "Only the first 50 are shown" in deadlines


# --- The USCIS panel, languages, an empty firm ------------------------------------------


def test_the_dashboard_says_how_uscis_is_doing(firm: Firm, paula: Membership) -> None:
    _change(_case(firm, "EAC2490000001"), "rfe_sent")
    page = _dashboard(_browser(paula))
    assert "Last successful USCIS read:" in page and "USCIS calls used today." in page


def test_the_spanish_dashboard_explains_each_change_in_spanish(firm: Firm) -> None:
    case = _case(firm, "EAC2490000001")
    _change(case, "rfe_sent", minutes_ago=30, recovered=True)
    _change(_case(firm, "EAC2490000002"), "approved")
    _deadline(case, timezone.localdate() + timedelta(days=4))
    spanish = _member(firm, "sofia", language="es")
    page = _dashboard(_browser(spanish, SPANISH))
    with translation.override("es"):
        meaning, next_step = guidance.meaning_and_next_step("rfe_sent", "evidence_requested")
    assert meaning != RFE_MEANING and meaning in page and next_step in page
    assert default_catalog().statuses["rfe_sent"].title_es in page
    assert RFE_MEANING not in page and RFE_NEXT_STEP not in page
    assert _english_left(page) == []


def test_a_firm_without_cases_still_gets_the_welcome_page(firm: Firm, paula: Membership) -> None:
    response = _browser(paula).get("/", follow=True)
    assert response.redirect_chain[-1][0] == "/welcome/"
    assert "Add your first cases" in response.content.decode()


# --- The guidance, as data -------------------------------------------------------------


def test_every_category_has_a_meaning_and_a_next_step_in_english_and_spanish() -> None:
    for category in CATEGORIES:
        english = default_guidance().for_change("", category)
        assert english.meaning and english.next_step, category
        with translation.override("es"):
            meaning, next_step = guidance.meaning_and_next_step("", category)
        assert meaning and meaning != english.meaning, category
        assert next_step and next_step != english.next_step, category


def test_every_guidance_text_is_translated_and_marked_for_the_catalog() -> None:
    with translation.override("es"):
        untranslated = [t for t in default_guidance().texts() if translation.gettext(t) == t]
    assert untranslated == []
    assert guidance.GENERATED.read_text(encoding="utf-8") == guidance.generated_source(), (
        "guidance_texts.py is stale: python -m casewatch.web.guidance"
    )


def test_a_status_with_its_own_guidance_overrides_its_category() -> None:
    shown = default_guidance().for_change("no_show", "biometrics")
    assert "denied as abandoned" in shown.meaning
    assert (
        default_guidance().for_change("fingerprint_fee_received", "biometrics")
        == (default_guidance().by_category["biometrics"])
    )


def test_guidance_data_that_leaves_something_out_is_refused() -> None:
    good: dict[str, Any] = {
        "order": {
            "urgencies": ["action", "review", "progress", "info"],
            "categories": list(CATEGORIES),
        },
        "category": {c: {"meaning": "m", "next_step": "n"} for c in CATEGORIES},
    }
    load_guidance(good)
    without = {**good, "category": {c: v for c, v in good["category"].items() if c != "denied"}}
    with pytest.raises(CatalogError, match="denied"):
        load_guidance(without)
    with pytest.raises(CatalogError, match="not a catalog status"):
        load_guidance({**good, "status": {"no_such_status": {"meaning": "m"}}})
    with pytest.raises(CatalogError, match=r"order\.categories"):
        load_guidance({**good, "order": {**good["order"], "categories": ["denied"]}})
    half = {**good["category"], "denied": {"meaning": "m"}}
    with pytest.raises(CatalogError, match="next_step"):
        load_guidance({**good, "category": half})
