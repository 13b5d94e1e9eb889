"""Starting runs outside the schedule: now, from admin, a command or (later) the API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from celery import uuid
from django.db import transaction

from communities.models import Community

from . import audit
from .models import CommunityAutomationSetting, JobRun
from .registry import JobSpec


def _new_run(spec: JobSpec, community: Community, trigger: str, now: datetime,
             params: dict[str, Any] | None) -> tuple[JobRun, dict[str, Any]]:
    # Refuse bad params here, where a person typed them, not later in a worker; the run
    # merges the community's stored params under them, so validate what it will use.
    setting = CommunityAutomationSetting.objects.filter(
        community=community, job_name=spec.name).first()
    spec.clean_params({**(setting.params if setting else {}), **(params or {})})
    run = JobRun.objects.create(
        job_name=spec.name,
        community=community,
        trigger=trigger,
        scheduled_for=now,
        queue=spec.queue,
        params=params or {},
        celery_task_id=uuid(),
    )
    kwargs = {
        "community_id": community.pk,
        "trigger": trigger,
        "run_id": run.pk,
        "scheduled_for": now.isoformat(),
        "params": params or None,
    }
    return run, kwargs


def enqueue_run(spec: JobSpec, community: Community, *, trigger: str, now: datetime,
                params: dict[str, Any] | None = None) -> JobRun:
    """Record a queued run and publish its message once the transaction commits."""
    run, kwargs = _new_run(spec, community, trigger, now, params)
    audit.record("run.trigger", community=community, job_name=spec.name,
                 target=f"{spec.name} @ {community.slug} run {run.pk}",
                 after={"run_id": run.pk, "trigger": trigger, "params": params or {}})
    task = spec.func.task
    transaction.on_commit(
        lambda: task.apply_async(kwargs=kwargs, task_id=run.celery_task_id, queue=spec.queue)
    )
    return run


def run_inline(spec: JobSpec, community: Community, *, trigger: str, now: datetime,
               params: dict[str, Any] | None = None) -> JobRun:
    """Run in this process through the same path a worker takes (retries run at once)."""
    run, kwargs = _new_run(spec, community, trigger, now, params)
    spec.func.task.apply(kwargs=kwargs, task_id=run.celery_task_id)
    run.refresh_from_db()
    return run
