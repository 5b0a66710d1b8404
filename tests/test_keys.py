"""Key rotation, backups and restores: client data stays encrypted and readable throughout.

Rotation and the restore refusals run in-process on the test database; the backup and
restore round trip runs `casewatch` in fresh processes on two data directories (two
scratch databases when DATABASE_URL names PostgreSQL), as an operator would.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import stat
import subprocess
import sys
import tarfile
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.contrib.auth import get_user_model
from django.db import connection

from casewatch import config
from casewatch.accounts.api_tokens import create_token
from casewatch.accounts.models import Firm, Membership, Role
from casewatch.api.models import IdempotentResponse
from casewatch.audit.models import AuditEntry
from casewatch.cases.fields import cipher
from casewatch.cases.models import Case, Client, Comment
from casewatch.maintenance import keys as key_rotation
from casewatch.maintenance.backup import BackupError, create_backup, restore_backup
from casewatch.maintenance.keys import encrypted_columns, retire_old_keys, rotate
from casewatch.notify.models import InboundMessage, Notification, StaffContact, WebhookEndpoint

CLIENT_NAME = "Test Client Quillfeather"
RECEIPT = "IOE0912345678"


@pytest.fixture
def own_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A data directory of this test's own, holding a copy of the session's keys.

    Rotation rewrites keys/fernet.keys; other tests keep the session's file untouched.
    """
    original = config.data_dir() / "keys"
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    shutil.copytree(original, data / "keys")
    monkeypatch.setenv("CASEWATCH_DATA_DIR", str(data))
    cipher.cache_clear()
    yield data
    cipher.cache_clear()
    monkeypatch.undo()
    cipher.cache_clear()


def make_firm_with_every_encrypted_column() -> Firm:
    """One row with a value in every encrypted column of every model."""
    firm = Firm.objects.create(name="Test Firm", slug=f"test-{uuid.uuid4().hex[:8]}")
    client = Client.objects.create(
        firm=firm,
        personal={"name": CLIENT_NAME, "email": "test.client@example.com", "phone": "+15555550101"},
    )
    case = Case.objects.create(firm=firm, receipt_number=RECEIPT, client=client, notes="RFE due")
    user = get_user_model().objects.create_user(username=f"staff-{firm.slug}", password="x" * 12)
    member = Membership.objects.create(firm=firm, user=user, role=Role.ADMIN)
    Comment.objects.create(firm=firm, case=case, author=user, body="Called Test Client")
    StaffContact.objects.create(membership=member, phone="+15555550102")
    Notification.objects.create(
        firm=firm,
        case=case,
        client=client,
        kind="status_change",
        recipient_kind="client",
        channel="sms",
        address="+15555550101",
        idempotency_key=uuid.uuid4().hex,
        created_at=datetime(2026, 3, 2, 15, 0, tzinfo=UTC),
    )
    InboundMessage.objects.create(
        firm=firm,
        client=client,
        channel="sms",
        provider_message_id=uuid.uuid4().hex,
        sender="+15555550101",
        body="thank you",
        received_at=datetime(2026, 3, 2, 15, 5, tzinfo=UTC),
        meaning="reply",
    )
    WebhookEndpoint.objects.create(
        firm=firm, url="https://example.com/hook", secret="test-webhook-secret"
    )
    issued = create_token(firm, "write", name="test", actor="cli")
    IdempotentResponse.objects.create(
        token=issued.token,
        key="import-1",
        request_hash="0" * 64,
        status=201,
        body='{"client": {"name": "Test Client"}}',
        created_at=datetime(2026, 3, 2, 15, 10, tzinfo=UTC),
    )
    return firm


def raw_tokens() -> dict[tuple[str, str, Any], str]:
    """Every stored token by (table, column, primary key), read without decrypting."""
    found = {}
    quote = connection.ops.quote_name
    for model, fields in encrypted_columns():
        table, pk = model._meta.db_table, str(model._meta.pk.column)
        for field in fields:
            column = str(field.column)
            with connection.cursor() as cursor:
                cursor.execute(f"SELECT {quote(pk)}, {quote(column)} FROM {quote(table)}")
                for key, token in cursor.fetchall():
                    if token:
                        found[(table, column, key)] = token
    return found


def decrypted_values() -> dict[tuple[str, str, Any], Any]:
    """Every encrypted value as the application reads it."""
    cipher.cache_clear()
    values = {}
    for model, fields in encrypted_columns():
        for row in model._base_manager.all():
            for field in fields:
                values[(model._meta.db_table, str(field.column), row.pk)] = getattr(
                    row, field.attname
                )
    return values


def newest_key_reads(token: str) -> bool:
    try:
        Fernet(config.fernet_keys()[0].encode()).decrypt(token.encode())
    except InvalidToken:
        return False
    return True


# --- rotation ---------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_rotation_re_encrypts_every_encrypted_column_to_a_new_key(own_keys: Path) -> None:
    make_firm_with_every_encrypted_column()
    before_keys = config.fernet_keys()
    before, plain = raw_tokens(), decrypted_values()
    columns = {(model._meta.db_table, f.column) for model, fs in encrypted_columns() for f in fs}
    assert {(table, column) for table, column, _ in before} == columns, "a column has no data"

    report = rotate()

    after_keys = config.fernet_keys()
    assert len(after_keys) == len(before_keys) + 1 and after_keys[1:] == before_keys
    after = raw_tokens()
    assert after.keys() == before.keys()
    assert all(after[where] != before[where] for where in before)
    assert decrypted_values() == plain
    new_key_only = Fernet(after_keys[0].encode())
    old_keys_only = MultiFernet([Fernet(key.encode()) for key in before_keys])
    for token in after.values():
        new_key_only.decrypt(token.encode())
        with pytest.raises(InvalidToken):
            old_keys_only.decrypt(token.encode())
    assert report.finished and report.rows == len({(t, k) for t, _, k in before})
    assert report.keys == len(after_keys)
    assert not (own_keys / "keys" / key_rotation.PENDING_FILE).exists()


@pytest.mark.django_db(transaction=True)
def test_rotation_writes_the_keys_file_whole_and_readable_by_its_owner_only(
    own_keys: Path,
) -> None:
    rotate()
    path = own_keys / "keys" / "fernet.keys"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    lines = path.read_text().splitlines()
    assert len(lines) == 2 and all(Fernet(line.encode()) for line in lines)
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]


@pytest.mark.django_db(transaction=True)
def test_new_writes_use_the_new_key_in_the_rotating_process(own_keys: Path) -> None:
    firm = make_firm_with_every_encrypted_column()
    rotate()
    client = Client.objects.create(firm=firm, personal={"name": "Test Client Two"})
    token = raw_tokens()[(Client._meta.db_table, "personal", client.pk)]
    assert newest_key_reads(token)


@pytest.mark.django_db(transaction=True)
def test_rotation_is_audited_with_counts_and_no_values(own_keys: Path) -> None:
    make_firm_with_every_encrypted_column()
    rotate()
    entry = AuditEntry.objects.get(action="keys.rotated")
    assert entry.details["tables"][Client._meta.db_table] == 1
    assert entry.details["rows"] == len(encrypted_columns()) and entry.details["keys"] == 2
    assert CLIENT_NAME not in entry.details_json and "+1555" not in entry.details_json


@pytest.mark.django_db(transaction=True)
def test_an_interrupted_rotation_is_finished_by_running_it_again(own_keys: Path) -> None:
    make_firm_with_every_encrypted_column()
    plain = decrypted_values()

    first = rotate(batch_size=1, stop_after_batches=1)  # As if killed after one batch.

    assert not first.finished and first.rows == 1
    keys_after_crash = config.fernet_keys()
    assert len(keys_after_crash) == 2
    assert (own_keys / "keys" / key_rotation.PENDING_FILE).exists()
    assert not all(newest_key_reads(token) for token in raw_tokens().values())
    assert decrypted_values() == plain  # Half-rotated data reads as before.
    assert not AuditEntry.objects.filter(action="keys.rotated").exists()

    second = rotate()

    assert second.resumed and second.finished and second.rows == len(encrypted_columns()) - 1
    assert config.fernet_keys() == keys_after_crash  # The same new key, not a third.
    assert all(newest_key_reads(token) for token in raw_tokens().values())
    assert decrypted_values() == plain
    assert not (own_keys / "keys" / key_rotation.PENDING_FILE).exists()


@pytest.mark.django_db(transaction=True)
def test_retiring_old_keys_is_refused_while_a_rotation_is_unfinished(own_keys: Path) -> None:
    make_firm_with_every_encrypted_column()
    rotate(batch_size=1, stop_after_batches=1)
    refused = retire_old_keys()
    assert not refused.ok and "unfinished" in (refused.problem or "")
    assert len(config.fernet_keys()) == 2


@pytest.mark.django_db(transaction=True)
def test_retiring_is_refused_while_a_value_still_needs_an_old_key(own_keys: Path) -> None:
    firm = make_firm_with_every_encrypted_column()
    old_keys = config.fernet_keys()
    rotate()
    # A process started before the rotation still writes with the old key.
    old_process = MultiFernet([Fernet(key.encode()) for key in old_keys])
    stale = old_process.encrypt(b'{"name":"Test Client Three"}').decode()
    late = Client.objects.create(firm=firm)
    with connection.cursor() as cursor:
        cursor.execute("UPDATE cases_client SET personal = %s WHERE id = %s", [stale, late.pk])

    refused = retire_old_keys()

    assert not refused.ok and refused.remaining == {Client._meta.db_table: 1}
    assert len(config.fernet_keys()) == 2  # Nothing dropped.

    again = rotate()  # After every process restarted: rotate again, then retire.
    assert again.tables[Client._meta.db_table] >= 1
    retired = retire_old_keys()
    assert retired.ok and retired.retired == 2 and len(config.fernet_keys()) == 1
    cipher.cache_clear()
    assert Client.objects.get(pk=late.pk).name == "Test Client Three"
    assert AuditEntry.objects.filter(action="keys.retired").exists()


# --- backup and restore -----------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_restore_refuses_a_database_that_already_has_firms(own_keys: Path, tmp_path) -> None:
    backup = tmp_path / "backup.tar.gz"
    create_backup(backup)
    Firm.objects.create(name="Test Firm", slug="already-here")
    with pytest.raises(BackupError, match="already holds data"):
        restore_backup(backup)
    assert list(Firm.objects.values_list("slug", flat=True)) == ["already-here"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("damage", ["truncated", "flipped", "not_a_tar", "no_manifest"])
def test_restore_refuses_a_damaged_file_and_writes_nothing(own_keys, tmp_path, damage) -> None:
    backup = tmp_path / "backup.tar.gz"
    make_firm_with_every_encrypted_column()
    create_backup(backup)
    Case.objects.all().delete()  # Cases first: they hold their clients (PROTECT).
    Firm.objects.all().delete()
    get_user_model().objects.all().delete()
    AuditEntry.objects.all()._raw_delete(connection.alias)
    content = backup.read_bytes()
    if damage == "truncated":
        backup.write_bytes(content[: len(content) // 2])
    elif damage == "flipped":
        raw = bytearray(gzip.decompress(content))
        with tarfile.open(fileobj=io.BytesIO(bytes(raw))) as archive:
            payload = next(m for m in archive.getmembers() if m.name != "manifest.json")
        raw[payload.offset_data + payload.size // 2] ^= 0xFF  # One byte inside the payload.
        backup.write_bytes(gzip.compress(bytes(raw)))
    elif damage == "not_a_tar":
        backup.write_bytes(b"receipt_number\nIOE0912345678\n")
    else:
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
            info = tarfile.TarInfo("database.sqlite3")
            info.size = 4
            archive.addfile(info, io.BytesIO(b"junk"))
        backup.write_bytes(buffer.getvalue())

    with pytest.raises(BackupError):
        restore_backup(backup)
    assert not Firm.objects.exists() and not Client.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_backup_holds_no_client_name_in_plain_text(own_keys: Path, tmp_path) -> None:
    make_firm_with_every_encrypted_column()
    backup = tmp_path / "backup.tar.gz"
    create_backup(backup)
    name = CLIENT_NAME.encode()
    assert name not in backup.read_bytes()
    with tarfile.open(backup) as archive:
        manifest = json.load(archive.extractfile("manifest.json"))  # type: ignore[arg-type]
        assert manifest["keys_included"] is False
        for member in archive.getmembers():
            content = archive.extractfile(member).read()  # type: ignore[union-attr]
            assert name not in content, member.name
            assert b"+15555550101" not in content, member.name
            assert config.fernet_keys()[0].encode() not in content
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600


def casewatch(
    *args: str, data_dir: Path, database_url: str | None
) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("CASEWATCH_")}
    environment.pop("DATABASE_URL", None)
    environment["CASEWATCH_DATA_DIR"] = str(data_dir)
    if database_url:
        environment["DATABASE_URL"] = database_url
    return subprocess.run(
        [sys.executable, "-m", "casewatch", *args],
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
        check=False,
    )


READ_BACK = """
import json
from casewatch.cli.bootstrap import prepare_django
prepare_django()
from casewatch.maintenance.keys import encrypted_columns
out = {}
for model, fields in encrypted_columns():
    for row in model._base_manager.order_by("pk"):
        for field in fields:
            out[f"{model._meta.db_table}.{field.column}.{row.pk}"] = getattr(row, field.attname)
print(json.dumps(out, sort_keys=True))
"""


def read_back(data_dir: Path, database_url: str | None) -> dict[str, Any]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("CASEWATCH_")}
    environment.pop("DATABASE_URL", None)
    environment["CASEWATCH_DATA_DIR"] = str(data_dir)
    if database_url:
        environment["DATABASE_URL"] = database_url
    done = subprocess.run(
        [sys.executable, "-c", READ_BACK],
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
        check=True,
    )
    loaded: dict[str, Any] = json.loads(done.stdout)
    return loaded


@pytest.fixture
def two_databases() -> Iterator[tuple[str | None, str | None]]:
    """Database URLs for the installation backed up and the one restored into.

    On SQLite each data directory holds its own file (None); on PostgreSQL two
    scratch databases on the server DATABASE_URL names, dropped afterwards.
    """
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        yield None, None
        return
    import psycopg

    names = [f"casewatch_keys_{uuid.uuid4().hex[:8]}_{n}" for n in ("a", "b")]
    base = url.rsplit("/", 1)[0]
    with psycopg.connect(url, autocommit=True) as admin:
        for name in names:
            admin.execute(f"CREATE DATABASE {name}")
    try:
        yield f"{base}/{names[0]}", f"{base}/{names[1]}"
    finally:
        with psycopg.connect(url, autocommit=True) as admin:
            for name in names:
                admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.mark.slow
@pytest.mark.django_db
def test_backup_and_restore_into_a_fresh_data_directory_with_the_same_keys(
    tmp_path: Path, two_databases: tuple[str | None, str | None]
) -> None:
    first_db, second_db = two_databases
    first, second = tmp_path / "first", tmp_path / "second"
    sheet = tmp_path / "caseload.csv"
    sheet.write_text(
        "receipt_number,client_name,client_email,client_phone,notes\n"
        f"{RECEIPT},{CLIENT_NAME},test.client@example.com,+1 555 555 0101,RFE due\n"
        "IOE0912345679,Test Client Other,other@example.com,,\n",
        encoding="utf-8",
    )
    imported = casewatch("import", str(sheet), "--json", data_dir=first, database_url=first_db)
    assert imported.returncode == 0, imported.stderr
    rotated = casewatch("keys", "rotate", "--json", data_dir=first, database_url=first_db)
    assert rotated.returncode == 0, rotated.stderr
    assert set(json.loads(rotated.stdout)) >= {"tables", "rows", "seconds", "keys"}
    backup = tmp_path / "caseload.backup"
    made = casewatch("backup", str(backup), "--json", data_dir=first, database_url=first_db)
    assert made.returncode == 0, made.stderr
    assert "NOT contain the keys" in made.stderr
    assert json.loads(made.stdout)["keys_included"] is False

    # Without the keys the backup is refused, and nothing is written.
    refused = casewatch("restore", str(backup), data_dir=second, database_url=second_db)
    assert refused.returncode == 2 and "keys" in refused.stderr
    shutil.rmtree(second / "keys")
    shutil.copytree(first / "keys", second / "keys")
    restored = casewatch("restore", str(backup), "--json", data_dir=second, database_url=second_db)
    assert restored.returncode == 0, restored.stderr

    assert read_back(second, second_db) == read_back(first, first_db)
    assert CLIENT_NAME in json.dumps(read_back(second, second_db))
    verified = casewatch("audit", "verify", "--json", data_dir=second, database_url=second_db)
    assert verified.returncode == 0 and json.loads(verified.stdout)["ok"] is True
    # The restored installation keeps working: a new audited write verifies too.
    again = casewatch("import", str(sheet), "--json", data_dir=second, database_url=second_db)
    assert again.returncode == 0, again.stderr
    assert casewatch("audit", "verify", data_dir=second, database_url=second_db).returncode == 0

    twice = casewatch("restore", str(backup), data_dir=second, database_url=second_db)
    assert twice.returncode == 2 and "already holds data" in twice.stderr
    assert twice.stderr.count("\n") == 1


# --- mail kept without an SMTP server --------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_kept_mail_is_rotated_with_the_rest_and_read_with_casewatch_mail(
    own_keys: Path, settings: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from django.core.mail import send_mail

    from casewatch.cli.main import main

    settings.EMAIL_BACKEND = key_rotation.KEPT_MAIL_BACKEND
    settings.EMAIL_FILE_PATH = str(own_keys / "mail")
    send_mail("Caso aprobado", "USCIS aprobó su caso.", None, ["test.client@example.test"])
    kept = next((own_keys / "mail").iterdir())
    before = kept.read_bytes()

    report = rotate()

    assert report.tables[key_rotation.MAIL] == 1
    newest = Fernet(config.fernet_keys()[0].encode("ascii"))
    assert newest.decrypt(kept.read_bytes()) != b"" and kept.read_bytes() != before
    assert retire_old_keys().ok
    cipher.cache_clear()
    assert main(["mail", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(m["number"], m["to"], m["subject"]) for m in listed] == [
        (1, "test.client@example.test", "Caso aprobado")
    ]
    assert listed[0]["body"].strip() == "USCIS aprobó su caso."
    assert main(["mail", "--show", "1"]) == 0
    assert "To: test.client@example.test" in capsys.readouterr().out
    assert main(["mail", "--show", "2"]) == 2
    assert "there are 1 kept message(s)" in capsys.readouterr().err
