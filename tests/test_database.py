"""The database a cold start gets: schema applied, on SQLite or PostgreSQL alike."""

from __future__ import annotations

import os

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from casewatch.cli.bootstrap import prepare_django

pytestmark = pytest.mark.django_db


def test_the_database_is_the_one_the_environment_names() -> None:
    expected = (
        "postgresql" if os.environ.get("DATABASE_URL", "").startswith("postgres") else "sqlite"
    )
    assert connection.vendor == expected


def test_a_cold_start_leaves_no_migration_pending() -> None:
    prepare_django()
    executor = MigrationExecutor(connection)
    assert executor.migration_plan(executor.loader.graph.leaf_nodes()) == []


def test_the_schema_holds_and_returns_data() -> None:
    from django.contrib.auth.models import Group

    Group.objects.create(name="paralegals")
    assert list(Group.objects.values_list("name", flat=True)) == ["paralegals"]
