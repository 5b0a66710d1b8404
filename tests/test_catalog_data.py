"""The shipped status data: statuses.toml says what every USCIS title means, per the spec."""

from __future__ import annotations

import re
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from casewatch.core.statuses import (
    CATEGORIES,
    URGENCIES,
    CatalogError,
    Lexicon,
    Status,
    StatusCatalog,
    classify,
    clean_title,
    default_catalog,
)

DATA = Path(__file__).parent / "data"
PLACEHOLDER = "CASE STATUS"

# Real USCIS titles (the shared TSV and the vicdus counts), copied verbatim, one per line.
REFERENCE_TITLES = [
    line.rstrip("\n")
    for line in (DATA / "reference_titles.txt").open(encoding="utf-8")
    if line.strip() and not line.startswith("#") and line.strip() != PLACEHOLDER
]

# spec/status-categories.md, "typical titles" column: every one is a catalog wording in
# exactly this category.
SPEC_TYPICAL_TITLES = [
    ("Case Was Received", "received"),
    ("Case Was Received and A Receipt Notice Was Sent", "received"),
    ("Case Was Received and A Receipt Notice Was Emailed", "received"),
    ("Case Accepted By The USCIS Lockbox", "received"),
    ("Fees Were Waived", "received"),
    ("Fingerprint Fee Was Received", "biometrics"),
    ("Biometrics Appointment Was Scheduled", "biometrics"),
    ("Case Was Updated To Show Fingerprints Were Taken", "biometrics"),
    ("Case Was Updated To Show That No One Appeared for In-Person Processing", "biometrics"),
    ("Case Is Being Actively Reviewed By USCIS", "in_review"),
    ("Case is Ready to Be Scheduled for An Interview", "in_review"),
    ("Case Was Reopened", "in_review"),
    ("Case Remains Pending", "in_review"),
    ("Request for Additional Evidence Was Sent", "evidence_requested"),
    ("Request for Initial Evidence Was Sent", "evidence_requested"),
    ("Request for Evidence Was Sent", "evidence_requested"),
    ("Request for Evidence Was Mailed", "evidence_requested"),
    ("Response To USCIS' Request For Evidence Was Received", "evidence_received"),
    ("Correspondence Was Received And USCIS Is Reviewing It", "evidence_received"),
    ("Notice Of Intent To Deny Was Sent", "intent_to_deny"),
    ("Intent to Revoke Notice Was Sent", "intent_to_deny"),
    ("Intent To Rescind Notice Was Mailed", "intent_to_deny"),
    ("Interview Was Scheduled", "interview_scheduled"),
    ("Interview Was Rescheduled", "interview_scheduled"),
    ("Interview Cancelled And Notice Ordered", "interview_scheduled"),
    ("Oath Ceremony Notice Was Mailed", "interview_scheduled"),
    ("Interview Was Completed And My Case Must Be Reviewed", "interview_completed"),
    ("Case Was Transferred And A New Office Has Jurisdiction", "transferred"),
    ("Case Was Received At Another USCIS Office", "transferred"),
    ("Case Was Sent To The Department of State", "transferred"),
    ("Case Was Transferred To An Asylum Office", "transferred"),
    ("Case Was Approved", "approved"),
    ("Case Was Approved And My Decision Was Emailed", "approved"),
    ("Case Approval Was Reaffirmed And Mailed Back To Department Of State", "approved"),
    ("New Card Is Being Produced", "document_production"),
    ("Advance Parole Document Was Produced", "document_production"),
    ("Reentry Permit Was Produced", "document_production"),
    ("Card Was Mailed To Me", "document_mailed"),
    ("Card Was Picked Up By The United States Postal Service", "document_mailed"),
    ("Document Was Mailed To Me", "document_mailed"),
    ("Travel Document Was Mailed", "document_mailed"),
    ("Card Was Delivered To Me By The Post Office", "document_delivered"),
    ("Document Was Personally Delivered To Me", "document_delivered"),
    ("Notice Was Returned To USCIS Because The Post Office Could Not Deliver It", "returned_mail"),
    ("Card Was Returned To USCIS", "returned_mail"),
    ("Document Is Being Held For 180 Days", "returned_mail"),
    ("Card Was Destroyed", "returned_mail"),
    ("Case Was Denied", "denied"),
    ("Case Was Denied And My Decision Notice Mailed", "denied"),
    ("Case Was Rejected Because It Was Improperly Filed", "rejected"),
    ("Case Rejected Because I Sent An Incorrect Fee", "rejected"),
    ("Case Was Rejected Because I Did Not Sign My Form", "rejected"),
    ("Petition/Application Was Rejected For Insufficient Funds", "rejected"),
    ("Revocation Notice Was Sent", "revoked"),
    ("Case Was Automatically Revoked", "revoked"),
    ("Termination Notice Sent", "revoked"),
    ("Withdrawal Acknowledgement Notice Was Sent", "withdrawn"),
    ("Case Closed Benefit Received By Other Means", "closed"),
    ("Appeal Was Dismissed", "appeal"),
    ("Appeal Was Approved", "appeal"),
    ("Case Was Sent To The Administrative Appeals Office for Review", "appeal"),
    ("Case Is On Hold", "on_hold"),
    ("Case Is On Hold Because Of Pending Litigation", "on_hold"),
    ("Litigation Notice Was Mailed", "on_hold"),
    ("Name Was Updated", "admin"),
    ("Date of Birth Was Updated", "admin"),
    ("Duplicate Notice Was Mailed", "admin"),
    ("Amended Notice Was Mailed", "admin"),
    ("Request Was Processed", "admin"),
    ("Fee Will Be Refunded", "admin"),
    ("Expedite Request Received", "admin"),
    ("Expedite Request Approved", "admin"),
    ("Expedite Request Denied", "admin"),
    ("Request For Premium Processing Services Was Received", "admin"),
]

# Wordings USCIS's case status site uses today (2023-2025) beyond the spec's examples.
CURRENT_USCIS_WORDINGS = [
    ("Case Is On Hold", "on_hold"),
    ("Card Was Destroyed", "returned_mail"),
    ("Appeal Was Dismissed", "appeal"),
    ("Request Was Processed", "admin"),
    ("Reentry Permit Was Produced", "document_production"),
    ("Travel Document Was Mailed", "document_mailed"),
    ("Revocation Notice Was Sent", "revoked"),
    ("Termination Notice Sent", "revoked"),
    ("Case Was Automatically Revoked", "revoked"),
    ("Litigation Notice Was Mailed", "on_hold"),
    ("Case Approval Was Revoked", "revoked"),
    ("Case Was Closed", "closed"),
    ("Fee Refund Was Mailed", "admin"),
    ("Oath Ceremony Was Rescheduled", "interview_scheduled"),
    ("Decision Notice Mailed", "document_mailed"),
    ("Case Transferred To Another Office", "transferred"),
    ("Request for Initial and Additional Evidence Was Mailed", "evidence_requested"),
    ("Notice Of Intent To Terminate Was Sent", "intent_to_deny"),
]

# Urgency differs from the category's default only where the spec says so.
SPEC_URGENCY_OVERRIDES = {
    "Biometrics Appointment Was Scheduled": "action",
    "Case Was Updated To Show That No One Appeared for In-Person Processing": "action",
}

KNOWN_FIELDS = {
    "key",
    "title_en",
    "title_es",
    "category",
    "urgency",
    "final",
    "aliases_en",
    "aliases_es",
}


def _raw_statuses() -> dict[str, Any]:
    with resources.files("casewatch.core").joinpath("data", "statuses.toml").open("rb") as f:
        return tomllib.load(f)


def test_the_catalog_loads_with_a_threshold_and_around_150_statuses() -> None:
    catalog = default_catalog()
    assert isinstance(catalog, StatusCatalog)
    assert 140 <= len(catalog.statuses) <= 180
    assert 0.5 <= catalog.threshold < 1.0


def test_every_status_entry_uses_only_the_documented_fields() -> None:
    for entry in _raw_statuses()["status"]:
        assert set(entry) <= KNOWN_FIELDS, entry["key"]
        assert {"key", "title_en", "title_es", "category"} <= set(entry), entry["key"]


def test_status_keys_are_stable_snake_case_identifiers() -> None:
    keys = [entry["key"] for entry in _raw_statuses()["status"]]
    assert len(keys) == len(set(keys))
    assert [k for k in keys if not re.fullmatch(r"[a-z][a-z0-9]*(_[a-z0-9]+)*", k)] == []


def test_every_status_has_a_real_category_and_urgency() -> None:
    for status in default_catalog().statuses.values():
        assert status.category in CATEGORIES, status.key
        assert status.category != "unknown", status.key
        assert status.urgency in URGENCIES, status.key
        assert status.urgency != "review", status.key


def test_urgency_is_the_category_default_except_where_the_spec_overrides_it() -> None:
    for status in default_catalog().statuses.values():
        expected = SPEC_URGENCY_OVERRIDES.get(status.title_en, CATEGORIES[status.category])
        assert status.urgency == expected, status.key


def test_every_category_but_unknown_has_at_least_one_status() -> None:
    used = {status.category for status in default_catalog().statuses.values()}
    assert used == set(CATEGORIES) - {"unknown"}


def test_every_status_has_its_own_spanish_title() -> None:
    statuses = default_catalog().statuses.values()
    for status in statuses:
        assert status.title_es, status.key
        assert clean_title(status.title_es) != clean_title(status.title_en), status.key
        assert status.title_es[0].isupper(), f"{status.key}: Spanish title in title case"
    spanish = [clean_title(status.title_es) for status in statuses]
    assert len(spanish) == len(set(spanish))


def test_terminal_outcomes_are_final_and_intermediate_steps_are_not() -> None:
    statuses = default_catalog().statuses.values()
    for status in statuses:
        if status.category in {"denied", "withdrawn", "closed", "document_delivered"}:
            assert status.final, status.key
        if status.category in {
            "received",
            "biometrics",
            "in_review",
            "evidence_requested",
            "evidence_received",
            "intent_to_deny",
            "interview_scheduled",
            "interview_completed",
            "transferred",
            "document_production",
            "document_mailed",
            "on_hold",
        }:
            assert not status.final, status.key


@pytest.mark.parametrize("title", REFERENCE_TITLES)
def test_every_real_uscis_title_is_a_catalog_wording(title: str) -> None:
    result = classify(title)
    assert default_catalog().by_title(title) is not None, title
    assert result.status != "unknown"
    assert result.confidence == 1.0


def test_every_sandbox_path_title_is_a_catalog_wording() -> None:
    paths = resources.files("casewatch.uscis.sandbox").joinpath("data", "paths.toml")
    data = tomllib.loads(paths.read_text(encoding="utf-8"))
    titles = {step["title"] for path in data["path"] for step in path["steps"]}
    assert titles
    assert sorted(t for t in titles if default_catalog().by_title(t) is None) == []


def test_the_placeholder_case_status_is_no_wording_and_classifies_as_unknown() -> None:
    assert default_catalog().by_title(PLACEHOLDER) is None
    result = classify(PLACEHOLDER)
    assert (result.status, result.category, result.urgency) == ("unknown", "unknown", "review")


@pytest.mark.parametrize(("title", "category"), SPEC_TYPICAL_TITLES)
def test_the_spec_typical_titles_are_wordings_in_their_category(title: str, category: str) -> None:
    status = default_catalog().by_title(title)
    assert status is not None, title
    assert status.category == category


def test_the_spec_table_is_written_out_in_full() -> None:
    assert {category for _, category in SPEC_TYPICAL_TITLES} == set(CATEGORIES) - {"unknown"}


@pytest.mark.parametrize(("title", "category"), CURRENT_USCIS_WORDINGS)
def test_current_uscis_wordings_are_in_the_catalog(title: str, category: str) -> None:
    status = default_catalog().by_title(title)
    assert status is not None, title
    assert status.category == category


def test_no_two_wordings_of_different_statuses_clean_to_the_same_text() -> None:
    owner: dict[str, str] = {}
    for status in default_catalog().statuses.values():
        for wording in status.wordings:
            cleaned = clean_title(wording)
            assert cleaned, f"{status.key} has an empty wording"
            assert owner.setdefault(cleaned, status.key) == status.key, wording


def _status(key: str, title_en: str, category: str = "approved") -> Status:
    return Status(key, title_en, f"{title_en} (es)", category, CATEGORIES[category], False)


def test_a_wording_claimed_by_two_statuses_is_refused_at_load_time() -> None:
    lexicon = Lexicon.from_toml({})
    with pytest.raises(CatalogError, match="belongs to both"):
        StatusCatalog(
            [_status("a", "Case Was Approved"), _status("b", "case was approved.")], lexicon, 0.8
        )


def test_a_status_key_used_twice_is_refused() -> None:
    with pytest.raises(CatalogError, match="appears twice"):
        StatusCatalog(
            [_status("a", "Case Was Approved"), _status("a", "Card Was Mailed")],
            Lexicon.from_toml({}),
            0.8,
        )
