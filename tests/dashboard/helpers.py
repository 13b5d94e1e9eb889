"""Helpers for the dashboard tests: runs placed at a given time."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.utils import timezone

from automation.models import JobRun
from communities.models import Community


def make_run(community: Community | None, job_name: str, status: str, *,
             at: datetime | None = None, duration: float | None = 1.0, **fields) -> JobRun:
    """A run created at `at` (created_at is auto_now_add, so it is moved after the insert)."""
    at = at or timezone.now()
    finished = status not in (JobRun.Status.QUEUED, JobRun.Status.RUNNING)
    run = JobRun.objects.create(
        job_name=job_name, community=community, trigger=fields.pop("trigger", "schedule"),
        scheduled_for=at, status=status, started_at=fields.pop("started_at", at),
        finished_at=at + timedelta(seconds=duration or 0) if finished else None,
        duration_seconds=duration if finished and status != JobRun.Status.SKIPPED else None,
        **fields)
    JobRun.objects.filter(pk=run.pk).update(created_at=at)
    run.created_at = at
    return run
