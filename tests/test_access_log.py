"""The access log: every look at a case page or a client's personal data is recorded
(who, what, when, from where), and only the firm's admins can read it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.test import Client as Browser
from django.urls import reverse
from django.utils import timezone

from casewatch.accounts.models import Firm, Role
from casewatch.audit import access
from casewatch.audit.models import AccessRecord, AppendOnlyError
from casewatch.cases.models import Case, Client
from casewatch.notify.portal_links import issue_link
from tests.environment import sign_in
from tests.test_i18n import SPANISH, _english_left
from tests.test_web import _member

pytestmark = pytest.mark.django_db


@pytest.fixture
def firm() -> Firm:
    return Firm.objects.create(name="Example Immigration Law", slug="example")


@pytest.fixture
def case(firm: Firm) -> Case:
    client = Client.objects.create(
        firm=firm, personal={"name": "Test Client", "email": "test.client@example.test"}
    )
    return Case.objects.create(
        firm=firm, receipt_number="EAC2490012345", form_type="I-485", client=client
    )


def _browser(user: User, address: str = "198.51.100.7") -> Browser:
    browser = Browser(REMOTE_ADDR=address)
    sign_in(browser, user)
    return browser


def _looks() -> list[tuple[str, str, str, str]]:
    return [
        (r.actor, r.page, r.object_type, r.object_id)
        for r in AccessRecord.objects.order_by("at", "pk")
    ]


def test_opening_a_case_page_records_who_what_and_from_where(firm: Firm, case: Case) -> None:
    paula = _member(firm, "paula", Role.PARALEGAL)

    answer = _browser(paula).get(reverse("case-detail", args=[case.pk]))

    assert answer.status_code == 200
    record = AccessRecord.objects.get()
    assert (record.actor, record.page, record.object_type, record.object_id) == (
        f"user:{paula.pk}",
        "case-detail",
        "case",
        str(case.pk),
    )
    assert record.firm_id == firm.pk
    assert record.address == "198.51.100.7"
    assert abs(record.at - timezone.now()) < timedelta(minutes=1)


def test_pages_with_client_data_are_recorded_and_search_words_are_not(
    firm: Firm, case: Case
) -> None:
    front_desk = _member(firm, "frank", Role.FRONT_DESK)
    browser = _browser(front_desk)

    for url in (
        reverse("home"),
        reverse("case-list") + "?q=Test+Client",
        reverse("client-contact", args=[case.client_id]),
        reverse("deadline-list"),
    ):
        assert browser.get(url).status_code == 200

    actor = f"user:{front_desk.pk}"
    assert _looks() == [
        (actor, "home", "", ""),
        (actor, "case-list", "", ""),
        (actor, "client-contact", "client", str(case.client_id)),
        (actor, "deadline-list", "", ""),
    ]
    assert not AccessRecord.objects.filter(page__icontains="Test").exists()


def test_refused_and_missing_pages_and_live_refreshes_record_nothing(
    firm: Firm, case: Case
) -> None:
    other_firm = Firm.objects.create(name="Other Firm", slug="other")
    stranger = _member(other_firm, "stranger", Role.ATTORNEY)
    paula = _member(firm, "paula", Role.PARALEGAL)

    assert _browser(stranger).get(reverse("case-detail", args=[case.pk])).status_code == 404
    assert Browser().get(reverse("case-detail", args=[case.pk])).status_code == 302
    refresh = _browser(paula).get(reverse("case-list"), HTTP_HX_REQUEST="true")
    assert refresh.status_code == 200

    assert _looks() == []


def test_a_client_opening_their_portal_is_recorded_as_the_link(firm: Firm, case: Case) -> None:
    assert case.client is not None
    link, token = issue_link(case.client, by_user_id=None, at=timezone.now())

    assert Browser().get(reverse("portal", args=[token])).status_code == 200

    assert _looks() == [(f"portal-link:{link.pk}", "portal", "client", str(case.client_id))]


def test_admins_read_the_log_with_names_and_filters(firm: Firm, case: Case) -> None:
    admin = _member(firm, "ada", Role.ADMIN)
    paula = _member(firm, "paula", Role.PARALEGAL)
    paula.first_name, paula.last_name = "Paula", "Prueba"
    paula.save()
    other = Case.objects.create(firm=firm, receipt_number="LIN2490054321")
    _browser(paula).get(reverse("case-detail", args=[case.pk]))
    _browser(admin, "203.0.113.9").get(reverse("case-detail", args=[other.pk]))

    page = _browser(admin).get(reverse("access-log")).content.decode()
    assert "Paula Prueba" in page and "198.51.100.7" in page and "203.0.113.9" in page
    assert "EAC2490012345" in page and "LIN2490054321" in page

    only_paula = (
        _browser(admin).get(reverse("access-log"), {"member": f"user:{paula.pk}"}).content.decode()
    )
    assert "EAC2490012345" in only_paula and "LIN2490054321" not in only_paula

    by_case = _browser(admin).get(reverse("access-log"), {"case": "lin 249 005 4321"})
    assert "LIN2490054321" in by_case.content.decode()
    assert "EAC2490012345" not in by_case.content.decode()

    tomorrow = (timezone.localdate() + timedelta(days=1)).isoformat()
    later = _browser(admin).get(reverse("access-log"), {"since": tomorrow}).content.decode()
    assert "EAC2490012345" not in later and "No look at client data matches" in later


def test_only_admins_read_the_log_and_only_their_firms(firm: Firm, case: Case) -> None:
    _browser(_member(firm, "paula", Role.PARALEGAL)).get(reverse("case-detail", args=[case.pk]))
    other_firm = Firm.objects.create(name="Other Firm", slug="other")
    other_admin = _member(other_firm, "olga", Role.ADMIN)

    for role in (Role.ATTORNEY, Role.PARALEGAL, Role.OPERATIONS, Role.FRONT_DESK):
        member = _member(firm, f"m-{role}", role)
        assert _browser(member).get(reverse("access-log")).status_code == 403
    theirs = _browser(other_admin).get(reverse("access-log")).content.decode()
    assert "EAC2490012345" not in theirs and "No one has opened" in theirs


def test_the_log_reads_in_spanish(firm: Firm, case: Case) -> None:
    admin = _member(firm, "ada", Role.ADMIN)
    browser = _browser(admin)
    browser.get(reverse("case-detail", args=[case.pk]))
    browser.post(reverse("language"), {"language": "es"})

    page = browser.get(reverse("access-log"), HTTP_ACCEPT_LANGUAGE=SPANISH).content.decode()

    assert "Registro de accesos" in page
    assert _english_left(page) == []


def test_records_are_never_changed_and_leave_only_after_their_retention(firm: Firm) -> None:
    now = timezone.now()
    old = access.record(
        firm_id=firm.pk, actor="user:1", page="case-detail", at=now - timedelta(days=400)
    )
    recent = access.record(firm_id=firm.pk, actor="user:1", page="case-detail", at=now)

    with pytest.raises(AppendOnlyError):
        recent.save()
    with pytest.raises(AppendOnlyError):
        AccessRecord.objects.all().delete()
    with pytest.raises(AppendOnlyError):
        AccessRecord.objects.update(actor="user:2")

    assert access.prune(keep_days=365, now=now) == 1
    assert list(AccessRecord.objects.values_list("pk", flat=True)) == [recent.pk]
    assert not AccessRecord.objects.filter(pk=old.pk).exists()
