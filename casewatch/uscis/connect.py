"""Choosing who answers: the official API with credentials, else casewatch's own sandbox."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from casewatch.config import UscisSettings
from casewatch.core.clock import ScaledClock
from casewatch.uscis.client import OfficialClient
from casewatch.uscis.sandbox.app import SandboxApp
from casewatch.uscis.sandbox.server import serve_in_thread
from casewatch.uscis.sandbox.world import SyntheticWorld

# Credentials casewatch's sandbox accepts when none are configured.
SANDBOX_CLIENT_ID = "casewatch-sandbox"
SANDBOX_CLIENT_SECRET = "casewatch-sandbox"  # noqa: S105 - not a secret: the local sandbox takes any


@contextmanager
def official_client(settings: UscisSettings) -> Iterator[OfficialClient]:
    """A client for the configured API, or for a sandbox started here for the duration."""
    if settings.uses_builtin_sandbox:
        app = SandboxApp(SyntheticWorld(), ScaledClock())
        with (
            serve_in_thread(app) as server,
            OfficialClient(
                base_url=server.url,
                token_url=f"{server.url}/oauth/accesstoken",
                client_id=SANDBOX_CLIENT_ID,
                client_secret=SANDBOX_CLIENT_SECRET,
                timeout=settings.timeout_seconds,
            ) as client,
        ):
            yield client
        return
    assert settings.base_url is not None and settings.token_url is not None
    with OfficialClient(
        base_url=settings.base_url,
        token_url=settings.token_url,
        client_id=settings.client_id or SANDBOX_CLIENT_ID,
        client_secret=settings.client_secret or SANDBOX_CLIENT_SECRET,
        timeout=settings.timeout_seconds,
    ) as client:
        yield client
