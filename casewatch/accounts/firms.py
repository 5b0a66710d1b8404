"""Finding the firm a command or request works on, and creating the first one."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.db import transaction

from casewatch.accounts.models import Firm, Membership, Role
from casewatch.config import ConfigError

DEFAULT_FIRM_NAME = "My Firm"
DEFAULT_FIRM_SLUG = "default"
FIRST_ADMIN_USERNAME = "admin"


def default_firm() -> Firm:
    """The embedded default has one firm, created on first use."""
    firm = Firm.objects.order_by("pk").first()
    if firm is None:
        firm, _ = Firm.objects.get_or_create(
            slug=DEFAULT_FIRM_SLUG, defaults={"name": DEFAULT_FIRM_NAME}
        )
    return firm


def resolve_firm(slug: str | None) -> Firm:
    """`--firm SLUG`, or the only firm when none is named."""
    if slug:
        firm = Firm.objects.filter(slug=slug).first()
        if firm is None:
            known = ", ".join(Firm.objects.values_list("slug", flat=True)) or "none"
            raise ConfigError(f"no firm with slug {slug!r} (firms: {known})")
        return firm
    if Firm.objects.count() > 1:
        known = ", ".join(Firm.objects.values_list("slug", flat=True))
        raise ConfigError(f"several firms exist; name one with --firm ({known})")
    return default_firm()


@dataclass(frozen=True)
class FirstAdmin:
    username: str
    password: str


def create_first_admin(firm: Firm) -> FirstAdmin | None:
    """Create the first admin with a generated password; None when users exist already."""
    user_model = get_user_model()
    with transaction.atomic():
        if user_model.objects.exists():
            return None
        password = secrets.token_urlsafe(12)
        user: User = user_model.objects.create_user(
            username=FIRST_ADMIN_USERNAME, password=password, is_staff=True, is_superuser=True
        )
        Membership.objects.create(firm=firm, user=user, role=Role.ADMIN)
    return FirstAdmin(FIRST_ADMIN_USERNAME, password)
