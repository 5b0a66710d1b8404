"""The audit trail, complete: logins, team changes and exports are in the chain, masked.

People are named by id (`user:<id>`), never by e-mail address; a failed login names
only a keyed hash of the username typed. `casewatch audit export` writes the chain,
or part of it, so that it can be held against `casewatch audit verify`.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.test import Client as Browser

from casewatch.accounts.models import Firm, Membership, Role
from casewatch.accounts.signals import username_hash
from casewatch.audit.chain import record, staff_actor, verify
from casewatch.audit.models import AuditEntry
from casewatch.cases.models import Case, Client, Comment
from casewatch.cli.audit_export import FIELDS, ExportFilter, export_audit, parse_when
from casewatch.notify.models import Notification
from tests.environment import sign_in
from tests.test_accounts import Mailbox, _link_path, mailbox  # noqa: F401  (fixture)
from tests.test_audit import environment, update_entry
from tests.test_cli import casewatch

PASSWORD = "correct horse battery"
OLGA = "olga@example-law.test"
PAULA = "paula@example-law.test"
RECEIPT = "EAC9999103403"
OTHER_RECEIPT = "EAC9999103404"


def everything_recorded() -> str:
    """Every column of every entry, as one text to search for what must not be there."""
    rows = AuditEntry.objects.values_list(
        "actor", "action", "object_type", "object_id", "details_json"
    )
    return "\n".join(" ".join(str(value) for value in row) for row in rows)


def entries(action: str) -> list[AuditEntry]:
    return list(AuditEntry.objects.filter(action=action).order_by("seq"))


@pytest.fixture
def firm() -> Firm:
    return Firm.objects.create(name="Example Immigration Law", slug="example")


def member(firm: Firm, email: str, role: str) -> Membership:
    # Invited members log in with their e-mail address: the username is the address.
    user = User.objects.create_user(username=email, email=email, password=PASSWORD)
    return Membership.objects.create(firm=firm, user=user, role=role)


@pytest.fixture
def admin(firm: Firm) -> Membership:
    return member(firm, OLGA, Role.ADMIN)


def logged_in(membership: Membership) -> Browser:
    browser = Browser()
    sign_in(browser, membership.user)
    return browser


# --- logins --------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_login_is_recorded_by_member_id_and_address_without_the_e_mail_address(
    admin: Membership,
) -> None:
    answer = Browser().post("/login/", {"username": OLGA, "password": PASSWORD})

    assert answer.status_code == 302
    [entry] = entries("account.logged_in")
    assert entry.actor == staff_actor(admin.user_id) == f"user:{admin.user_id}"
    assert (entry.object_type, entry.object_id) == ("user", str(admin.user_id))
    assert entry.firm_id == admin.firm_id
    assert entry.details == {"remote_addr": "127.0.0.1"}
    assert "olga" not in everything_recorded().lower()
    assert verify().ok


@pytest.mark.django_db
def test_a_member_of_two_firms_has_the_login_in_each_firms_trail(
    firm: Firm, admin: Membership
) -> None:
    other = Firm.objects.create(name="Other Law", slug="other")
    Membership.objects.create(firm=other, user=admin.user, role=Role.ATTORNEY)

    Browser().post("/login/", {"username": OLGA, "password": PASSWORD})

    logins = entries("account.logged_in")
    assert len(logins) == 2 and {e.firm_id for e in logins} == {firm.pk, other.pk}


@pytest.mark.django_db
def test_a_failed_login_records_a_keyed_hash_of_the_username_and_the_address_only(
    admin: Membership,
) -> None:
    refused = Browser().post("/login/", {"username": OLGA, "password": "wrong password"})
    Browser().post("/login/", {"username": " Olga@Example-Law.test ", "password": "nope"})
    Browser().post("/login/", {"username": PAULA, "password": "nope"})

    assert refused.status_code == 200  # the form again, with its error
    first, second, third = entries("account.login_failed")
    assert first.actor == "anonymous" and first.firm_id is None
    assert first.object_type == "login_attempt"
    assert first.object_id == username_hash(OLGA) == first.details["username_hash"]
    assert first.details["remote_addr"] == "127.0.0.1"
    # The same name typed differently is one name; another name is another hash.
    assert second.object_id == first.object_id != third.object_id
    # Keyed: whoever reads the log cannot test guesses against it without the key.
    assert first.object_id != hashlib.sha256(OLGA.encode()).hexdigest()
    text = everything_recorded().lower()
    assert "olga" not in text and "paula" not in text and "example-law" not in text
    assert not entries("account.logged_in")


@pytest.mark.django_db
def test_logging_out_is_recorded(admin: Membership) -> None:
    browser = logged_in(admin)

    browser.post("/logout/")

    [entry] = entries("account.logged_out")
    assert entry.actor == staff_actor(admin.user_id) and entry.firm_id == admin.firm_id


@pytest.mark.django_db
def test_verify_finds_a_login_entry_altered_with_sql() -> None:
    firm = Firm.objects.create(name="Example Immigration Law", slug="example")
    admin = member(firm, OLGA, Role.ADMIN)
    record("case.created", object_type="case", object_id=1, firm_id=firm.pk)
    Browser().post("/login/", {"username": OLGA, "password": PASSWORD})
    [login] = entries("account.logged_in")
    assert verify().ok

    update_entry(login.seq, "details", '{"remote_addr":"10.9.8.7"}')

    report = verify()
    assert (report.ok, report.first_broken_seq) == (False, login.seq)
    assert admin.user_id is not None


# --- the Team page -------------------------------------------------------------------


@pytest.mark.django_db
def test_a_role_change_on_the_team_page_is_recorded_with_who_and_what(
    firm: Firm, admin: Membership
) -> None:
    paula = member(firm, PAULA, Role.PARALEGAL)

    logged_in(admin).post(f"/team/members/{paula.pk}/role/", {"role": Role.ATTORNEY})

    [entry] = entries("member.role_changed")
    assert entry.actor == staff_actor(admin.user_id)
    assert (entry.object_type, entry.object_id) == ("membership", str(paula.pk))
    assert entry.details == {"from": "paralegal", "to": "attorney", "user": paula.user_id}
    assert "example-law" not in everything_recorded()


@pytest.mark.django_db
def test_removing_a_member_is_recorded_by_ids(firm: Firm, admin: Membership) -> None:
    paula = member(firm, PAULA, Role.PARALEGAL)

    logged_in(admin).post(f"/team/members/{paula.pk}/remove/")

    [entry] = entries("member.removed")
    assert entry.actor == staff_actor(admin.user_id)
    assert entry.details == {"role": "paralegal", "user": paula.user_id}
    assert "example-law" not in everything_recorded()


@pytest.mark.django_db
def test_an_invitation_is_recorded_when_created_sent_and_accepted(
    firm: Firm,
    admin: Membership,
    mailbox: Mailbox,  # noqa: F811
) -> None:
    logged_in(admin).post("/team/", {"email": PAULA, "role": Role.PARALEGAL, "language": "es"})
    invitee = Browser()
    invitee.post(
        _link_path(mailbox.last_text()),
        {"name": "Test Paralegal", "new_password1": PASSWORD, "new_password2": PASSWORD},
    )

    [invited] = entries("member.invited")
    [sent] = entries("member.invitation_sent")
    [joined] = entries("member.joined")
    paula = Membership.objects.get(firm=firm, user__email=PAULA)
    assert invited.actor == sent.actor == staff_actor(admin.user_id)
    assert invited.object_id == sent.object_id and sent.details == {"language": "es"}
    assert joined.actor == staff_actor(paula.user_id)
    # Accepting logs the new member in (the admin's own login comes first).
    assert entries("account.logged_in")[-1].actor == staff_actor(paula.user_id)
    text = everything_recorded()
    assert "example-law" not in text and "Test Paralegal" not in text
    assert invited.seq < sent.seq < joined.seq
    assert verify().ok


@pytest.mark.django_db
def test_a_password_reset_by_e_mail_is_recorded_when_the_new_password_is_saved(
    firm: Firm,
    admin: Membership,
    mailbox: Mailbox,  # noqa: F811
) -> None:
    browser = Browser()
    browser.post("/password/reset/", {"email": OLGA})
    assert not entries("account.password_reset")  # Asking for a link changes nothing.
    form = browser.get(_link_path(mailbox.last_text()), follow=True)

    browser.post(
        form.redirect_chain[-1][0],
        {
            "new_password1": "a new staple in the battery",
            "new_password2": "a new staple in the battery",
        },
    )

    [entry] = entries("account.password_reset")
    assert entry.actor == staff_actor(admin.user_id) and entry.firm_id == firm.pk
    assert "olga" not in everything_recorded().lower()


# --- export --------------------------------------------------------------------------


def at(day: int, hour: int = 12) -> datetime:
    return datetime(2026, 3, day, hour, tzinfo=UTC)


@pytest.fixture
def history(firm: Firm) -> dict[str, int]:
    """Entries on 1, 2 and 3 March 2026 about two cases, one notification and one comment."""
    author = User.objects.create_user(username="staff-7")
    client = Client.objects.create(firm=firm, personal={"name": "Test Client"})
    case = Case.objects.create(firm=firm, receipt_number=RECEIPT, client=client)
    other = Case.objects.create(firm=firm, receipt_number=OTHER_RECEIPT, client=client)
    notification = Notification.objects.create(
        firm=firm,
        case=case,
        client=client,
        kind="status_change",
        recipient_kind="client",
        channel="whatsapp",
        language="es",
        status="delivered",
        idempotency_key="a" * 64,
        created_at=at(2),
        address="+15555550123",
    )
    comment = Comment.objects.create(firm=firm, case=case, author=author, body="Call back")
    for day, object_type, pk in (
        (1, "case", case.pk),
        (1, "case", other.pk),
        (2, "notification", notification.pk),
        (2, "case", other.pk),
        (3, "comment", comment.pk),
        (3, "case", other.pk),
    ):
        record(
            f"{object_type}.touched",
            object_type=object_type,
            object_id=pk,
            firm_id=firm.pk,
            actor="user:7",
            at=at(day),
        )
    return {"case": case.pk, "other": other.pk, "firm": firm.pk}


def export(fmt: str, chosen: ExportFilter | None = None) -> str:
    out = io.StringIO()
    export_audit(out, fmt, chosen or ExportFilter())
    return out.getvalue()


def day_range(first: str, last: str) -> ExportFilter:
    return ExportFilter(
        start=parse_when(first, "--from", end=False), end=parse_when(last, "--to", end=True)
    )


@pytest.mark.django_db
def test_a_csv_export_has_a_header_and_every_entry_with_its_hash(history: dict[str, int]) -> None:
    rows = list(csv.DictReader(io.StringIO(export("csv"))))

    assert tuple(rows[0]) == FIELDS
    stored = AuditEntry.objects.exclude(action="audit.exported").order_by("seq")
    assert [r["seq"] for r in rows] == [str(e.seq) for e in stored]
    assert [r["hash"] for r in rows] == [e.hash for e in stored]
    assert [r["prev_hash"] for r in rows] == [e.prev_hash for e in stored]
    assert rows[0]["at"] == "2026-03-01T12:00:00.000000Z"
    assert rows[0]["firm"] == str(history["firm"]) and rows[0]["details"] == "{}"


@pytest.mark.django_db
def test_a_json_export_is_one_array_filtered_by_inclusive_utc_days(
    history: dict[str, int],
) -> None:
    exported = json.loads(export("json", day_range("2026-03-02", "2026-03-02")))

    assert [e["action"] for e in exported] == ["notification.touched", "case.touched"]
    assert {e["at"][:10] for e in exported} == {"2026-03-02"}
    assert set(exported[0]) == set(FIELDS)
    assert exported[0]["hash"] == AuditEntry.objects.get(seq=exported[0]["seq"]).hash
    assert len(json.loads(export("json", day_range("2026-03-02", "2026-03-03")))) == 4


@pytest.mark.django_db
def test_times_with_an_offset_are_taken_in_utc_and_both_bounds_are_inclusive(
    history: dict[str, int],
) -> None:
    noon_utc = day_range("2026-03-02T13:00:00+01:00", "2026-03-02T12:00:00")

    exported = json.loads(export("json", noon_utc))

    assert [e["at"] for e in exported] == ["2026-03-02T12:00:00.000000Z"] * 2


@pytest.mark.django_db
def test_an_export_by_case_has_its_own_entries_and_those_of_its_notifications_and_comments(
    history: dict[str, int],
) -> None:
    exported = json.loads(export("json", ExportFilter(receipt=RECEIPT)))

    assert [(e["object_type"], e["object_id"]) for e in exported] == [
        ("case", str(history["case"])),
        ("notification", str(Notification.objects.get().pk)),
        ("comment", str(Comment.objects.get().pk)),
    ]
    by_day_and_case = ExportFilter(
        start=parse_when("2026-03-02", "--from", end=False), receipt=OTHER_RECEIPT
    )
    assert [e["at"][:10] for e in json.loads(export("json", by_day_and_case))] == [
        "2026-03-02",
        "2026-03-03",
    ]


@pytest.mark.django_db
def test_csv_cells_a_spreadsheet_would_run_as_formulas_start_with_an_apostrophe(
    firm: Firm,
) -> None:
    record("=cmd|' /C calc'!A0", object_type="+case", object_id="-2+3", actor="@SUM(1+1)")

    [row] = [r for r in csv.DictReader(io.StringIO(export("csv"))) if r["seq"] == "1"]

    assert row["action"] == "'=cmd|' /C calc'!A0"
    assert row["object_type"] == "'+case" and row["object_id"] == "'-2+3"
    assert row["actor"] == "'@SUM(1+1)"
    assert row["details"] == "{}"  # JSON starts with a brace: nothing to neutralize


@pytest.mark.django_db
def test_an_export_is_itself_recorded_with_its_filter_and_not_its_content(
    history: dict[str, int],
) -> None:
    exported = json.loads(export("json", ExportFilter(receipt=RECEIPT, firm_slug="example")))

    [marker] = entries("audit.exported")
    assert marker.actor == "cli" and marker.firm_id == history["firm"]
    assert marker.details["case_ids"] == [history["case"]]
    assert marker.details["format"] == "json" and marker.details["firm"] == history["firm"]
    assert "touched" not in marker.details_json
    # An export covers exactly the entries before its own.
    assert all(e["seq"] < marker.seq for e in exported)
    assert verify().ok


# --- the command ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--from", "2026-13-01"], "2026-13-01"),
        (["--to", "yesterday"], "yesterday"),
        (["--from", "2026-03-03", "--to", "2026-03-02"], "after"),
        (["--case", "EAC12"], "EAC12"),
        (["--case", RECEIPT], RECEIPT),
        (["--firm", "nobody"], "nobody"),
        (["--format", "xml"], "xml"),
    ],
)
def test_bad_dates_receipts_and_firms_are_bad_usage_with_a_one_line_reason(
    tmp_path: Path, flags: list[str], named: str
) -> None:
    result = casewatch("audit", "export", *flags, data_dir=tmp_path / "data")

    assert result.returncode == 2
    assert result.stdout == ""
    assert named in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_the_command_writes_a_file_that_matches_the_chain_it_verifies(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    assert casewatch("audit", "verify", data_dir=data_dir).returncode == 0
    target = tmp_path / "audit.json"

    first = casewatch(
        "audit", "export", "--format", "json", "--output", str(target), data_dir=data_dir
    )
    second = casewatch("audit", "export", "--format", "json", data_dir=data_dir)

    assert first.returncode == 0, first.stderr
    assert first.stdout == f"Exported 0 audit entries to {target}.\n"
    assert json.loads(target.read_text(encoding="utf-8")) == []
    assert target.stat().st_mode & 0o077 == 0  # Readable by its owner only.
    [marker] = json.loads(second.stdout)  # The first export, recorded in the chain.
    assert marker["action"] == "audit.exported" and marker["details"]["format"] == "json"
    with sqlite3.connect(data_dir / "casewatch.sqlite3") as db:
        (digest,) = db.execute("SELECT hash FROM audit_auditentry WHERE seq = 1").fetchone()
    db.close()
    assert marker["hash"] == digest
    assert casewatch("audit", "verify", data_dir=data_dir).returncode == 0


LOG_IN_AND_FAIL = """
from casewatch.cli.bootstrap import prepare_django
prepare_django()
from django.contrib.auth.models import User
from django.test import Client
from casewatch.accounts.models import Firm, Membership
firm = Firm.objects.create(name="Example Immigration Law", slug="example")
User.objects.create_user(username="olga@example-law.test", password="correct horse battery")
Membership.objects.create(firm=firm, user=User.objects.get(), role="admin")
assert Client().login(username="olga@example-law.test", password="correct horse battery")
assert not Client().login(username="olga@example-law.test", password="wrong")
"""


@pytest.mark.parametrize("action", ["account.logged_in", "account.login_failed"])
def test_audit_verify_exits_1_after_a_login_entry_is_altered_in_the_database_file(
    tmp_path: Path, action: str
) -> None:
    data_dir = tmp_path / "data"
    made = subprocess.run(
        [sys.executable, "-c", LOG_IN_AND_FAIL],
        capture_output=True,
        text=True,
        env=environment(data_dir),
        timeout=120,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    assert casewatch("audit", "verify", data_dir=data_dir).returncode == 0
    with sqlite3.connect(data_dir / "casewatch.sqlite3") as db:
        (seq,) = db.execute(
            "SELECT seq FROM audit_auditentry WHERE action = ?", (action,)
        ).fetchone()
        db.execute(
            'UPDATE audit_auditentry SET details = \'{"remote_addr":"10.9.8.7"}\' WHERE seq = ?',
            (seq,),
        )
    db.close()

    result = casewatch("audit", "verify", "--json", data_dir=data_dir)

    assert result.returncode == 1
    assert json.loads(result.stdout)["first_broken_seq"] == seq
