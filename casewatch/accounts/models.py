"""A firm is the tenant: every case, client and rule belongs to exactly one."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _


class Role(models.TextChoices):
    ADMIN = "admin", _("Owner / admin")
    ATTORNEY = "attorney", _("Attorney")
    PARALEGAL = "paralegal", _("Paralegal")
    OPERATIONS = "operations", _("Operations lead")
    FRONT_DESK = "front_desk", _("Front desk")


class Firm(models.Model):
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=60, unique=True)
    # IANA name; dates are shown, and clients' quiet hours kept, in this zone unless
    # a member or client has their own.
    time_zone = models.CharField(max_length=64, default="America/New_York")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    """A user's place in a firm; a user may belong to several firms."""

    firm = models.ForeignKey(Firm, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=20, choices=Role.choices)
    # The language the staff app speaks to this person; empty: whatever the browser asks for.
    language = models.CharField(max_length=8, blank=True, default="")
    # IANA name for showing dates to this person; empty: the firm's.
    time_zone = models.CharField(max_length=64, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    # Until when the dashboard's "changes since you last looked" has been seen.
    changes_seen_until = models.DateTimeField(null=True, blank=True)
    # SHA-256 of the secret in this member's iCalendar feed URL; empty: no feed (revoked).
    calendar_token_hash = models.CharField(max_length=64, blank=True, default="")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["firm", "user"], name="one_membership_per_firm")
        ]

    def __str__(self) -> str:
        return f"{self.user} ({self.role}) at {self.firm}"


class Invitation(models.Model):
    """An e-mailed link that lets one person join a firm with a role, once, until it expires.

    `member` is set when the invitation brings to life a placeholder member (an attorney
    named in an imported sheet), so that the cases already assigned to them stay theirs.
    """

    firm = models.ForeignKey(Firm, on_delete=models.CASCADE, related_name="invitations")
    email = models.EmailField()
    role = models.CharField(max_length=20, choices=Role.choices)
    language = models.CharField(max_length=8, blank=True, default="")
    member = models.ForeignKey(
        Membership, null=True, blank=True, on_delete=models.CASCADE, related_name="invitations"
    )
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["firm", "email"])]

    def __str__(self) -> str:
        return f"invitation {self.pk} to {self.firm}"


class Scope(models.TextChoices):
    READ = "read", _("Read only")
    WRITE = "write", _("Read and write")


class ApiToken(models.Model):
    """One firm's key to the REST API; `write` may also change cases and see clients' details.

    Lives with the firm rather than in `api/` because the staff app issues and revokes
    tokens too, and the presenting layers know nothing of each other. Its secret is shown
    once and only its SHA-256 is stored: a secret of 32 random bytes needs no slow hash,
    and a lookup by unique index finds it in constant time. The table keeps the name it
    was created with in `api/`.
    """

    firm = models.ForeignKey(Firm, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, blank=True)
    scope = models.CharField(max_length=5, choices=Scope.choices)
    secret_hash = models.CharField(max_length=64, unique=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "api_apitoken"

    def __str__(self) -> str:
        return f"API token {self.pk} ({self.scope}) of firm {self.firm_id}"
