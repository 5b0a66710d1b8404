"""The audit app's periodic work: forgetting access records past their retention."""

from __future__ import annotations

from huey import crontab
from huey.contrib.djhuey import db_periodic_task

from casewatch import config
from casewatch.audit import access


@db_periodic_task(crontab(minute="41", hour="3"))
def prune_access_log() -> int:
    """Once a day: looks older than CASEWATCH_ACCESS_LOG_DAYS leave the access log."""
    return access.prune(keep_days=config.access_log_days())
