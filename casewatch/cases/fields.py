"""Client data encrypted at rest with MultiFernet, keys kept in the data directory."""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.db import models

from casewatch import config


@cache
def cipher() -> MultiFernet:
    """Encrypts with the newest key and decrypts with any (rotation keeps old ones)."""
    return MultiFernet([Fernet(key) for key in config.fernet_keys()])


def encrypt(text: str) -> str:
    return cipher().encrypt(text.encode("utf-8")).decode("ascii")


def decrypt(token: str) -> str:
    try:
        return cipher().decrypt(token.encode("ascii")).decode("utf-8")
    except InvalidToken as exc:
        raise ValueError("encrypted value cannot be read with the configured keys") from exc


class EncryptedTextField(models.TextField):  # type: ignore[type-arg]
    """A text column whose stored value is a Fernet token; empty stays empty."""

    encrypts = True  # casewatch.bulk never reuses a prepared value of this field
    _pyi_private_set_type: str
    _pyi_private_get_type: str

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> str:
        return decrypt(value) if value else ""

    def get_prep_value(self, value: Any) -> str:
        text = "" if value is None else str(value)
        return encrypt(text) if text else ""


class EncryptedJSONField(models.TextField):  # type: ignore[type-arg]
    """A small JSON object encrypted as one token, so a record costs one encryption."""

    encrypts = True
    _pyi_private_set_type: dict[str, Any]  # type: ignore[assignment]
    _pyi_private_get_type: dict[str, Any]  # type: ignore[assignment]

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> dict[str, Any]:
        if not value:
            return {}
        loaded: dict[str, Any] = json.loads(decrypt(value))
        return loaded

    def to_python(self, value: Any) -> dict[str, Any]:
        if isinstance(value, dict):
            return value
        return json.loads(value) if value else {}

    def get_prep_value(self, value: Any) -> str:
        if not value:
            return ""
        return encrypt(json.dumps(value, ensure_ascii=False, separators=(",", ":")))
