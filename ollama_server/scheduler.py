"""The background scheduler (APScheduler): built with the app's services, started only by a serving entry point."""
from __future__ import annotations

from datetime import timezone

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler


def build_scheduler() -> BackgroundScheduler:
    """A scheduler whose jobs never overlap themselves and never catch up on missed runs in a burst."""
    return BackgroundScheduler(
        timezone=timezone.utc,
        executors={"default": ThreadPoolExecutor(4)},
        # One instance per job: a slow run (a model load, a long directory listing) delays the next one
        # instead of piling up; missed runs collapse into one.
        job_defaults={"max_instances": 1, "coalesce": True, "misfire_grace_time": 30},
        daemon=True,
    )
