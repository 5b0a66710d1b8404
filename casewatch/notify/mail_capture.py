"""Mail kept in the data directory when no SMTP server is configured, encrypted.

Without CASEWATCH_SMTP_URL nothing leaves the machine: each message (an invitation, a
password reset, a client's notification) is written to `mail/` in the data directory
so that the operator can read it with `casewatch mail`. Such a message holds a
client's address and news about their case, so it is stored as the client fields are:
a Fernet token under the data key, one file per message, readable by the owner only.
Key rotation re-encrypts these files too (casewatch.maintenance.keys).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email import message_from_bytes
from email.message import Message
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

from cryptography.fernet import InvalidToken
from django.conf import settings
from django.core.mail.backends.base import BaseEmailBackend
from django.core.mail.message import EmailMessage

from casewatch.cases.fields import cipher

SUFFIX = ".eml.fernet"


def capture_dir() -> Path:
    return Path(str(settings.EMAIL_FILE_PATH))


class EncryptedFileBackend(BaseEmailBackend):
    """Django's mail backend for "no SMTP server": one encrypted file per message."""

    def send_messages(self, email_messages: Sequence[EmailMessage]) -> int:
        folder = capture_dir()
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        sent = 0
        for message in email_messages:
            if not message.recipients():
                continue
            token = cipher().encrypt(message.message().as_bytes())
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
            path = folder / f"{stamp}-{uuid.uuid4().hex[:12]}{SUFFIX}"
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "wb") as out:
                out.write(token)
            sent += 1
        return sent


@dataclass(frozen=True)
class CapturedMail:
    """One kept message, decrypted: `name` is its file's name, which says when."""

    name: str
    message: Message

    @property
    def subject(self) -> str:
        return str(self.message.get("Subject", "")).strip()

    @property
    def to(self) -> str:
        return str(self.message.get("To", "")).strip()

    @property
    def date(self) -> str:
        return str(self.message.get("Date", "")).strip()

    def text(self) -> str:
        """The plain-text body (the first text/plain part), as a person would read it."""
        part: Any = self.message
        if part.is_multipart():
            part = next((p for p in part.walk() if p.get_content_type() == "text/plain"), part)
        payload = part.get_payload(decode=True)
        if isinstance(payload, bytes):
            return payload.decode(part.get_content_charset() or "utf-8", "replace")
        return str(part.get_payload())


def kept_files(folder: Path) -> list[Path]:
    """The kept messages' files, oldest first."""
    return sorted(folder.glob(f"*{SUFFIX}")) if folder.is_dir() else []


def captured(folder: Path | None = None) -> Iterator[CapturedMail]:
    """Every kept message that the configured keys can read, oldest first."""
    for path in kept_files(folder or capture_dir()):
        try:
            raw = cipher().decrypt(path.read_bytes())
        except InvalidToken:
            continue
        yield CapturedMail(path.name, message_from_bytes(raw, policy=default_policy))


def replace_file(path: Path, token: bytes) -> None:
    """Write a kept message's new token in place, whole or not at all, owner-only."""
    temporary = path.with_name(path.name + ".new")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as out:
        out.write(token)
    temporary.replace(path)
