"""Values every page needs: whether what it shows comes from a sandbox."""

from __future__ import annotations

from django.http import HttpRequest

from casewatch.config import USCIS_SANDBOX_BASE_URL, ConfigError, uscis_settings


def reads_sandbox() -> bool:
    """True when casewatch's own sandbox or USCIS's sandbox answers, not production USCIS."""
    try:
        settings = uscis_settings()
    except ConfigError:
        return True
    base = (settings.base_url or "").rstrip("/")
    return settings.uses_builtin_sandbox or base == USCIS_SANDBOX_BASE_URL


def sandbox_notice(request: HttpRequest) -> dict[str, bool]:
    from casewatch.cases.models import Case

    sandbox = reads_sandbox()
    if not sandbox and request.user.is_authenticated:
        sandbox = Case.objects.filter(source="sandbox").exists()
    return {"sandbox_mode": sandbox}
