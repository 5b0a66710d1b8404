"""Getting a cold data directory ready: keys, Django, and the database schema."""

from __future__ import annotations

import os

from casewatch.config import ConfigError


def prepare_django(*, migrate: bool = True) -> None:
    """Set up Django and apply any pending migrations, quietly."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "casewatch.settings")
    import django
    from django.core.management import call_command
    from django.db import DatabaseError, connection
    from django.db.migrations.executor import MigrationExecutor

    django.setup()
    if not migrate:
        return
    try:
        executor = MigrationExecutor(connection)
        if executor.migration_plan(executor.loader.graph.leaf_nodes()):
            call_command("migrate", interactive=False, verbosity=0)
    except DatabaseError as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"cannot use the database: {first_line}") from exc
