"""The dashboard's live parts: the USCIS panel and the "changes since you last looked" list
refresh themselves through htmx, and a change is acknowledged, assigned or commented on in
place; every one of them still works as a plain page and a plain form without JavaScript."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from django.contrib.auth import SESSION_KEY
from django.test import Client as Browser
from django.utils import timezone

from casewatch.accounts.models import Firm, Membership, Role
from casewatch.audit.chain import verify
from casewatch.audit.models import AuditEntry
from casewatch.cases.models import Comment, EventFollowUp
from casewatch.monitor.health import note_outcome
from tests.test_dashboard import _browser, _case, _change, _member, _section

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}


@pytest.fixture
def firm() -> Firm:
    return Firm.objects.create(name="Example Immigration Law", slug="example", time_zone="UTC")


@pytest.fixture
def paula(firm: Firm) -> Membership:
    return _member(firm, "paula", first_name="Paula", last_name="Pérez")


def _htmx(browser: Browser, url: str, data: dict[str, object] | None = None) -> str:
    """A request as htmx sends it; the answer must be a fragment, never a whole page."""
    if data is None:
        response = browser.get(url, headers=HTMX)
    else:
        response = browser.post(url, data, headers=HTMX)
    assert response.status_code == 200, response.status_code
    html = response.content.decode()
    assert "<html" not in html and "<body" not in html
    return html


# --- The page loads htmx from the package, and only from there -----------------------


def test_the_dashboard_loads_htmx_from_django_htmx_and_runs_no_inline_script(
    firm: Firm, paula: Membership
) -> None:
    _change(_case(firm, "EAC2490000001"), "rfe_sent")
    page = _browser(paula).get("/").content.decode()
    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", page, re.DOTALL)
    assert scripts, "the dashboard loads htmx"
    for attributes, body in scripts:
        assert body.strip() == "", "no inline script (CSP)"
        source = re.search(r'src="([^"]+)"', attributes)
        assert source and source.group(1).startswith("/static/"), attributes
    assert '<script src="/static/django_htmx/htmx-2.min.js" defer></script>' in page
    assert "https://" not in "".join(attributes for attributes, _ in scripts)
    served = Browser().get("/static/django_htmx/htmx-2.min.js")
    assert served.status_code == 200
    body = b"".join(served.streaming_content)  # type: ignore[attr-defined]
    assert b"htmx" in body
    # No inline indicator styles, no eval, and no snapshots of pages (client names) kept
    # in the browser's storage.
    config = re.search(r"<meta name=\"htmx-config\" content='([^']+)'>", page)
    assert config and '"includeIndicatorStyles": false' in config.group(1)
    assert '"allowEval": false' in config.group(1) and '"historyCacheSize": 0' in config.group(1)


def test_pages_without_live_parts_load_no_script(firm: Firm, paula: Membership) -> None:
    _change(_case(firm, "EAC2490000001"), "rfe_sent")
    browser = _browser(paula)
    for url in ("/cases/", "/deadlines/", "/account/"):
        assert "<script" not in browser.get(url).content.decode(), url


# --- The USCIS panel --------------------------------------------------------------------


def test_the_uscis_panel_refreshes_itself_every_45_seconds(firm: Firm, paula: Membership) -> None:
    from django.core.cache import cache

    cache.clear()
    _change(_case(firm, "EAC2490000001"), "rfe_sent")
    browser = _browser(paula)
    page = browser.get("/").content.decode()
    panel = re.search(r'<p id="uscis-health"[^>]*>', page)
    assert panel, "the panel is on the dashboard"
    assert 'hx-get="/dashboard/uscis/"' in panel.group(0)
    assert 'hx-trigger="every 45s"' in panel.group(0)
    assert 'hx-swap="outerHTML"' in panel.group(0)
    assert "Last successful USCIS read: none yet" in page

    note_outcome(None, datetime(2026, 3, 2, 15, 0, tzinfo=UTC))
    fragment = _htmx(browser, "/dashboard/uscis/")
    assert fragment.lstrip().startswith('<p id="uscis-health"')
    assert 'hx-trigger="every 45s"' in fragment  # and keeps refreshing
    assert "Last successful USCIS read: March 2, 2026, 3 p.m. UTC" in fragment


def test_the_uscis_panel_without_htmx_is_the_dashboard(firm: Firm, paula: Membership) -> None:
    response = _browser(paula).get("/dashboard/uscis/")
    assert response.status_code == 302 and response["Location"] == "/"


# --- Changes since you last looked ------------------------------------------------------


def test_the_changes_list_refreshes_itself_and_shows_what_arrived_since(
    firm: Firm, paula: Membership
) -> None:
    first = _change(_case(firm, "EAC2490000001"), "approved", minutes_ago=30)
    browser = _browser(paula)
    page = browser.get("/").content.decode()
    live = re.search(r'<div id="changes-live"[^>]*>', _section(page, "changes"))
    assert live and 'hx-get="/dashboard/changes/"' in live.group(0)
    assert 'hx-trigger="every 45s"' in live.group(0)
    assert '<span class="count" id="changes-count">1</span>' in page

    later = _change(_case(firm, "EAC2490000002"), "rfe_sent", minutes_ago=1)
    fragment = _htmx(browser, "/dashboard/changes/")
    assert fragment.lstrip().startswith('<div id="changes-live"')
    assert f'id="changes-{first.pk}"' in fragment and f'id="changes-{later.pk}"' in fragment
    assert fragment.index("EAC2490000002") < fragment.index("EAC2490000001")  # action first
    # The count in the page's jump links is swapped out of band.
    assert '<span class="count" id="changes-count" hx-swap-oob="true">2</span>' in fragment


def test_the_changes_list_without_htmx_is_the_dashboard(paula: Membership) -> None:
    response = _browser(paula).get("/dashboard/changes/")
    assert response.status_code == 302 and response["Location"] == "/#changes"


def test_mark_all_as_seen_in_place_empties_the_list(firm: Firm, paula: Membership) -> None:
    _change(_case(firm, "EAC2490000001"), "approved", minutes_ago=30)
    browser = _browser(paula)
    fragment = _htmx(browser, "/dashboard/seen/", {"until": timezone.now().isoformat()})
    assert "Nothing new since you last looked." in fragment
    assert '<span class="count" id="changes-count" hx-swap-oob="true">0</span>' in fragment
    # Nothing is left waiting as a message for the next full page.
    assert "marked as seen" not in browser.get("/").content.decode()


# --- Following up on a critical change in place ------------------------------------------


def test_acknowledging_in_place_returns_the_card_as_it_is_now(
    firm: Firm, paula: Membership
) -> None:
    rfe = _change(_case(firm, "EAC2490000001"), "rfe_sent")
    browser = _browser(paula)
    critical = _section(browser.get("/").content.decode(), "critical")
    card = re.search(rf'<li [^>]*id="critical-{rfe.pk}"[^>]*>', critical)
    assert card and 'hx-target="this"' in card.group(0)
    assert f'hx-select="#critical-{rfe.pk}"' in card.group(0)
    assert f'hx-post="/changes/{rfe.pk}/acknowledge/"' in critical
    assert f'action="/changes/{rfe.pk}/acknowledge/"' in critical  # and without JavaScript

    fragment = _htmx(browser, f"/changes/{rfe.pk}/acknowledge/", {})
    assert f'id="critical-{rfe.pk}"' in fragment
    assert '<p class="follow-up notice-success" role="status">Acknowledged: EAC2490000001.' in (
        fragment
    )
    assert "Acknowledged by Paula Pérez on" in fragment
    assert f'action="/changes/{rfe.pk}/acknowledge/"' not in fragment  # done: no button
    assert f'action="/changes/{rfe.pk}/comment/"' in fragment  # still open to comments
    follow_up = EventFollowUp.objects.get(event=rfe)
    assert follow_up.acknowledged_by == paula.user
    assert AuditEntry.objects.filter(action="follow_up.acknowledged").count() == 1
    page = browser.get("/").content.decode()
    assert "Acknowledged: EAC2490000001." not in page  # no message left for later
    assert f"critical-{rfe.pk}" not in _section(page, "critical")
    assert verify().ok


def test_assigning_and_commenting_in_place(firm: Firm, paula: Membership) -> None:
    olga = _member(firm, "olga", Role.ATTORNEY, first_name="Olga", last_name="Ortiz")
    rfe = _change(_case(firm, "EAC2490000001"), "rfe_sent")
    browser = _browser(paula)

    fragment = _htmx(browser, f"/changes/{rfe.pk}/assign/", {"member": olga.pk})
    assert "EAC2490000001 is assigned to Olga Ortiz." in fragment
    assert "Assigned to Olga Ortiz." in fragment
    assert f'<option selected value="{olga.pk}">Olga Ortiz</option>' in fragment
    assert EventFollowUp.objects.get(event=rfe).assigned_to == olga.user

    fragment = _htmx(browser, f"/changes/{rfe.pk}/comment/", {"body": "Called <b>the</b> client"})
    assert "Comment added to EAC2490000001." in fragment
    assert "Called &lt;b&gt;the&lt;/b&gt; client" in fragment
    assert Comment.objects.get().body == "Called <b>the</b> client"

    refused = _htmx(browser, f"/changes/{rfe.pk}/comment/", {"body": "   "})
    assert '<p class="follow-up notice-error" role="alert">Write a comment of up to' in refused
    assert Comment.objects.count() == 1
    assert verify().ok


def test_without_javascript_each_follow_up_still_posts_and_comes_back(
    firm: Firm, paula: Membership
) -> None:
    rfe = _change(_case(firm, "EAC2490000001"), "rfe_sent")
    browser = _browser(paula)
    response = browser.post(f"/changes/{rfe.pk}/comment/", {"body": "Called the client"})
    assert response.status_code == 302 and response["Location"] == f"/#critical-{rfe.pk}"
    response = browser.post(f"/changes/{rfe.pk}/acknowledge/")
    assert response.status_code == 302 and response["Location"] == "/#critical"
    assert "Acknowledged: EAC2490000001." in browser.get("/").content.decode()


def test_front_desk_cannot_follow_up_in_place_either(firm: Firm) -> None:
    rfe = _change(_case(firm, "EAC2490000001"), "rfe_sent")
    desk = _browser(_member(firm, "frank", Role.FRONT_DESK))
    response = desk.post(f"/changes/{rfe.pk}/acknowledge/", headers=HTMX)
    assert response.status_code == 403
    assert not EventFollowUp.objects.exists()


def test_another_firms_change_is_not_found_in_place(firm: Firm, paula: Membership) -> None:
    other = Firm.objects.create(name="Other Firm", slug="other")
    theirs = _change(_case(other, "EAC2490000009"), "rfe_sent")
    browser = _browser(paula)
    assert browser.post(f"/changes/{theirs.pk}/acknowledge/", headers=HTMX).status_code == 404
    assert "EAC2490000009" not in _htmx(browser, "/dashboard/changes/")


def test_a_live_part_asked_for_after_the_session_ended_sends_the_page_to_the_login(
    firm: Firm, paula: Membership
) -> None:
    _change(_case(firm, "EAC2490000001"), "rfe_sent")
    browser = _browser(paula)
    session = browser.session
    session.pop(SESSION_KEY)
    session.save()
    response = browser.get("/dashboard/changes/", headers=HTMX)
    assert response.status_code == 200
    assert response["HX-Redirect"].startswith("/login/?next=/dashboard/changes/")
    plain = browser.get("/dashboard/changes/")
    assert plain.status_code == 302 and plain["Location"].startswith("/login/")


def test_a_refresh_reads_as_few_rows_as_the_page(firm: Firm, paula: Membership) -> None:
    """The fragment costs no more than the part of the page it replaces."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    for n in range(5):
        _change(_case(firm, f"EAC24900000{n:02d}"), "approved", minutes_ago=n + 1)
    browser = _browser(paula)
    _htmx(browser, "/dashboard/changes/")
    with CaptureQueriesContext(connection) as few:
        _htmx(browser, "/dashboard/changes/")
    for n in range(5, 40):
        _change(_case(firm, f"EAC24900000{n:02d}"), "approved", minutes_ago=n + 1)
    with CaptureQueriesContext(connection) as many:
        _htmx(browser, "/dashboard/changes/")
    assert len(many) == len(few)
