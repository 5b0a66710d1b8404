"""The staff app in a real browser: Chromium, driven by Playwright, against a live server.

One member's morning, step by step, each step checking what she sees: she logs in,
imports her caseload through the web wizard, finds on the dashboard the change USCIS
posted overnight, acknowledges it, subscribes to her deadlines in her calendar program,
and switches the app to Spanish. On every page she visits, every field has a label.

Chromium is Debian's (`apt-get install chromium`), never one Playwright downloads; where
it is missing these tests skip, except in CI, where a skip fails. Screenshots of each
step are kept under $CASEWATCH_TEST_ARTIFACTS (by default the test's tmp_path).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from django.contrib.auth.models import User
from django.db import connection, connections
from django.utils import timezone
from icalendar import Calendar

from casewatch.accounts.models import Firm, Membership, Role
from casewatch.cases.history import record_outcome
from casewatch.cases.models import Case
from casewatch.uscis.source import CaseStatus, Found
from tests.environment import authenticator_app, totp_code

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHROMIUM = os.environ.get("CASEWATCH_CHROMIUM", "/usr/bin/chromium")
PASSWORD = "correct horse battery"
RECEIPT = "EAC2690012345"
CSV = (
    "Receipt Number,Form,Client Name,Notes\n"
    f"{RECEIPT},I-485,Fakey McTestface,adjustment\n"
    "EAC2690012346,I-765,Testy Fakerson,\n"
)


def _chromium_problem() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[dev]')"
    if not os.access(CHROMIUM, os.X_OK) and shutil.which(CHROMIUM) is None:
        return f"Chromium is not at {CHROMIUM} (Debian: apt-get install chromium)"
    return None


@pytest.fixture
def artifacts(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """Where this test's screenshots go: kept for CI under $CASEWATCH_TEST_ARTIFACTS."""
    root = os.environ.get("CASEWATCH_TEST_ARTIFACTS")
    # The suite runs on SQLite, then on PostgreSQL: each run keeps its own screenshots.
    name = f"{request.node.name}-{connection.vendor}"
    folder = Path(root) / name if root else tmp_path / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def page(monkeypatch: pytest.MonkeyPatch) -> Iterator[Page]:
    problem = _chromium_problem()
    if problem:
        pytest.skip(problem)
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop in this thread; the test's own database
    # work (seeding, between steps) is plain synchronous code all the same.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
        )
        context = browser.new_context(locale="en-US", viewport={"width": 1280, "height": 900})
        context.set_default_timeout(10_000)
        try:
            yield context.new_page()
        finally:
            context.close()
            browser.close()
            # Playwright's greenlets give the test its own database connection (Django
            # keeps them in context variables); closed here, or PostgreSQL could not drop
            # the test database while it lingers.
            connections.close_all()


@pytest.fixture
def member() -> Membership:
    """Paula, the firm's operations lead: her calendar carries every deadline of the firm."""
    firm = Firm.objects.create(name="Example Immigration Law", slug="example")
    user = User.objects.create_user(username="paula", password=PASSWORD, first_name="Paula")
    authenticator_app(user)  # she chose two-factor sign-in
    return Membership.objects.create(firm=firm, user=user, role=Role.OPERATIONS)


class Story:
    """The member's browser, with a screenshot and a label check after every step."""

    def __init__(self, page: Page, base_url: str, artifacts: Path) -> None:
        self.page = page
        self.base_url = base_url
        self.artifacts = artifacts
        self.steps = 0

    def open(self, path: str) -> None:
        self.page.goto(self.base_url + path)

    def saw(self, name: str) -> None:
        self.steps += 1
        self.page.screenshot(path=self.artifacts / f"{self.steps:02d}-{name}.png", full_page=True)
        self.every_field_is_labelled()

    def every_field_is_labelled(self) -> None:
        """Each field a person can fill in is named by a label, which get_by_label finds."""
        fields: list[dict[str, Any]] = self.page.eval_on_selector_all(
            "input:not([type=hidden]):not([type=submit]):not([type=button]), select, textarea",
            """els => els.map(el => ({
                id: el.id,
                name: el.name,
                label: [...(el.labels || [])].map(l => l.innerText.trim()).join(' ')
                    || el.getAttribute('aria-label')
                    || (el.getAttribute('aria-labelledby') || '').split(/\\s+/)
                        .map(id => document.getElementById(id)?.innerText.trim() || '')
                        .join(' ').trim(),
            }))""",
        )
        for field in fields:
            where = f"{self.page.url}: field {field['name'] or field['id']!r}"
            assert field["label"], f"{where} has no label"
            assert self.page.get_by_label(field["label"]).count() >= 1, where


def _status(title: str, description: str, modified_at: datetime) -> Found:
    return Found(
        CaseStatus(
            receipt_number=RECEIPT,
            form_type="I-485",
            title_en=title,
            title_es="",
            description_en=description,
            description_es="",
            submitted_at=None,
            modified_at=modified_at,
            history=(),
            message="",
            source="sandbox",
        )
    )


def uscis_sends_a_request_for_evidence(firm: Firm) -> None:
    """What the monitor records overnight: the case was received, then an RFE was sent."""
    case = Case.objects.get(firm=firm, receipt_number=RECEIPT)
    now = timezone.now()
    yesterday = now - timedelta(days=1)
    received = _status("Case Was Received", "We received your Form I-485.", yesterday)
    record_outcome(case, received, observed_at=yesterday)
    day = timezone.localdate(now)
    rfe = _status(
        "Request for Evidence Was Sent",
        f"On {day:%B} {day.day}, {day.year}, we sent a request for evidence for your "
        f"Form I-485, Receipt Number {RECEIPT}. The request for evidence explains what "
        "we need from you.",
        now - timedelta(hours=1),
    )
    record_outcome(case, rfe, observed_at=now)


def test_a_member_imports_her_cases_follows_up_a_change_and_subscribes_to_her_deadlines(
    page: Page, live_server: Any, member: Membership, artifacts: Path, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    story = Story(page, live_server.url, artifacts)
    # Every page keeps to its Content-Security-Policy: Chromium reports any breach here.
    breaches: list[str] = []
    page.on(
        "console",
        lambda message: (
            breaches.append(f"{page.url}: {message.text}")
            if "Content Security Policy" in message.text
            else None
        ),
    )

    # She opens casewatch and is asked to log in.
    story.open("/")
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    story.saw("login")
    page.get_by_label("Login").fill("paula")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()

    # She signs in with two factors: after her password, the code her phone's app shows.
    expect(page.get_by_role("heading", name="Two-factor sign-in")).to_be_visible()
    story.saw("two-factor")
    page.get_by_label("Code").fill(totp_code(authenticator_app(member.user)))
    page.get_by_role("button", name="Sign in").click()

    # The firm tracks nothing yet; she goes to add cases and imports a spreadsheet.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Add cases").click()
    page.get_by_role("link", name="Import a spreadsheet").click()
    expect(page.get_by_role("heading", name="Import a spreadsheet")).to_be_visible()
    story.saw("upload")
    sheet = tmp_path / "caseload.csv"
    sheet.write_text(CSV)
    page.get_by_label("Spreadsheet (CSV or Excel .xlsx)").set_input_files(sheet)
    page.get_by_role("button", name="Upload and preview").click()

    # The preview guessed the columns and says what will happen, before anything is stored.
    expect(page.get_by_role("heading", name="Which column is what")).to_be_visible()
    expect(page.get_by_label("Receipt Number")).to_have_value("receipt_number")
    expect(page.get_by_label("Client Name")).to_have_value("client_name")
    expect(page.get_by_role("status").filter(has_text="2 rows")).to_contain_text("2 new cases")
    expect(page.get_by_role("cell", name=RECEIPT)).to_be_visible()
    story.saw("preview")
    assert not Case.objects.filter(firm=member.firm).exists()
    page.get_by_role("button", name="Import now").click()

    expect(page.get_by_role("heading", name="Import done")).to_be_visible()
    results = page.get_by_role("status").filter(has_text="Cases created")
    expect(results).to_contain_text(re.compile(r"Cases created\s*2"))
    story.saw("imported")
    page.get_by_role("link", name="Go to the case list").click()
    expect(page.get_by_role("link", name=RECEIPT)).to_be_visible()
    expect(page.get_by_role("link", name="EAC2690012346")).to_be_visible()
    story.saw("case-list")

    # Overnight, USCIS sends a request for evidence on one of them.
    uscis_sends_a_request_for_evidence(member.firm)

    # Her dashboard shows it among the changes, and as critical until someone acknowledges it.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Dashboard").click()
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
    changes = page.locator("section", has=page.get_by_role("heading", name="Changes since"))
    expect(changes).to_contain_text("Request for Evidence Was Sent")
    expect(changes.get_by_role("link", name=RECEIPT)).to_be_visible()
    critical = page.locator(
        "section", has=page.get_by_role("heading", name="Critical changes not yet acknowledged")
    )
    expect(critical).to_contain_text("Request for Evidence Was Sent")
    story.saw("dashboard")

    # Acknowledging happens in place (htmx): the card says so, and nothing else moves.
    url_before = page.url
    # A click before htmx has loaded takes the no-JavaScript path (a full page): wait for it.
    page.wait_for_function("() => window.htmx !== undefined")
    critical.get_by_role("button", name=f"Acknowledge {RECEIPT}").click()
    expect(critical.get_by_role("status")).to_contain_text(f"Acknowledged: {RECEIPT}.")
    expect(critical).to_contain_text("Acknowledged by Paula")
    expect(critical.get_by_role("button", name=f"Acknowledge {RECEIPT}")).to_have_count(0)
    assert page.url == url_before
    story.saw("acknowledged")
    page.reload()
    expect(page.get_by_text("Every critical change has been acknowledged.")).to_be_visible()
    expect(changes).to_contain_text("Acknowledged by Paula")

    # The RFE set a response deadline; she subscribes to her deadlines in her calendar.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Deadlines").click()
    expect(page.get_by_role("link", name=RECEIPT).first).to_be_visible()
    story.saw("deadlines")
    page.goto(live_server.url + "/deadlines/calendar/")
    page.get_by_role("button", name="Create a calendar link").click()
    expect(page.get_by_role("heading", name="Your new calendar link")).to_be_visible()
    story.saw("calendar-link")
    link = page.get_by_label("Calendar link").input_value()
    assert link.startswith(live_server.url + "/calendar/") and link.endswith(".ics")

    feed = page.request.get(link)  # what a calendar program does: no login, no cookie
    assert feed.ok and feed.headers["content-type"].startswith("text/calendar")
    calendar = Calendar.from_ical(feed.body())
    summaries = [str(event["SUMMARY"]) for event in calendar.walk("VEVENT")]
    assert len(summaries) == 1 and RECEIPT in summaries[0], summaries
    assert "Fakey" not in feed.text()

    # She reads casewatch in Spanish from now on.
    story.open("/")
    page.get_by_role("form", name="Language").get_by_role("button", name="Español").click()
    expect(page.locator("html")).to_have_attribute("lang", "es")
    expect(page.get_by_role("heading", name="Panel")).to_be_visible()
    expect(page.get_by_role("heading", name="Cambios desde su última visita")).to_be_visible()
    expect(page.get_by_text("Todos los cambios críticos han sido confirmados.")).to_be_visible()
    nav = page.get_by_role("navigation", name="Principal")
    expect(nav.get_by_role("link", name="Casos", exact=True)).to_be_visible()
    menu = nav.get_by_role("link").all_inner_texts() + nav.get_by_role("button").all_inner_texts()
    english = {"Dashboard", "Cases", "Deadlines", "Insights", "Add cases", "Log out", "Team"}
    assert not english & {text.split(" (")[0].strip() for text in menu}, menu
    story.saw("spanish")
    assert Membership.objects.get(pk=member.pk).language == "es"
    assert breaches == []


def test_the_pages_come_with_their_stylesheets(page: Page, live_server: Any) -> None:
    stylesheets: dict[str, int] = {}
    page.on(
        "response",
        lambda response: (
            stylesheets.__setitem__(response.url, response.status)
            if response.request.resource_type == "stylesheet"
            else None
        ),
    )
    page.goto(live_server.url + "/login/")
    assert stylesheets, "the login page links no stylesheet"
    assert all(status == 200 for status in stylesheets.values()), stylesheets
