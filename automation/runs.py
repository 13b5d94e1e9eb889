"""Starting runs outside the schedule: now, from admin, a command or (later) the API."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from celery import uuid
from django.db import transaction
from kombu.exceptions import OperationalError

from communities.models import Community

from . import audit
from .models import CommunityAutomationSetting, JobRun
from .registry import JobSpec

logger = logging.getLogger(__name__)


def message_kwargs(run: JobRun) -> dict[str, Any]:
    """The job task's kwargs that (re)start this run record."""
    return {
        "community_id": run.community_id,
        "trigger": run.trigger,
        "run_id": run.pk,
        "scheduled_for": run.scheduled_for.isoformat(),
        "params": run.params or None,
    }


def publish(spec: JobSpec, run: JobRun) -> None:
    """Send the run's message under the run's task id (a second copy is harmless: a
    delivery of a finished run is dropped, one of a running run waits out its lease)."""
    spec.func.task.apply_async(kwargs=message_kwargs(run), task_id=run.celery_task_id,
                               queue=spec.queue)


def publish_or_leave_to_reaper(spec: JobSpec, run: JobRun) -> bool:
    """Publish; if the broker is unreachable, the queued run stays recorded and the reaper
    publishes it again once its queue has moved past it (AUTOMATION_REQUEUE_AFTER_SECONDS).
    A person's request is not failed for it."""
    try:
        publish(spec, run)
    except (OperationalError, ConnectionError, OSError) as exc:
        logger.warning("run %s of %s: broker unreachable (%s); the reaper will publish it",
                       run.pk, spec.name, exc)
        return False
    return True


def run_params(spec: JobSpec, community: Community,
               params: dict[str, Any] | None) -> dict[str, Any]:
    """A run's own params as cleaned (JSON form), checked merged over the community's
    stored params as the run will use them; InvalidJobParams when that merge is invalid.

    Only the params given are kept: the run overlays them on the stored ones when it
    starts. One given as null that has no default stays null, so that overlay cannot
    bring back a stored value the check did not see.
    """
    if not isinstance(params, dict | None):
        spec.clean_params(params)  # refuses it, with the message for what is not an object
    given = params or {}
    setting = CommunityAutomationSetting.objects.filter(
        community=community, job_name=spec.name).first()
    cleaned = spec.clean_params({**(setting.params if setting else {}), **given})
    return {name: cleaned.get(name) for name in given}


def _new_run(spec: JobSpec, community: Community, trigger: str, now: datetime,
             params: dict[str, Any] | None) -> JobRun:
    # Refuse bad params here, where a person typed them, not later in a worker.
    run = JobRun.objects.create(
        job_name=spec.name,
        community=community,
        trigger=trigger,
        scheduled_for=now,
        queue=spec.queue,
        params=run_params(spec, community, params),
        celery_task_id=uuid(),
        queued_at=now,
    )
    return run


def enqueue_run(spec: JobSpec, community: Community, *, trigger: str, now: datetime,
                params: dict[str, Any] | None = None) -> JobRun:
    """Record a queued run and publish its message once the transaction commits."""
    run = _new_run(spec, community, trigger, now, params)
    audit.record("run.trigger", community=community, job_name=spec.name,
                 target=f"{spec.name} @ {community.slug} run {run.pk}",
                 after={"run_id": run.pk, "trigger": trigger, "params": run.params})
    transaction.on_commit(lambda: publish_or_leave_to_reaper(spec, run))
    return run


def run_inline(spec: JobSpec, community: Community, *, trigger: str, now: datetime,
               params: dict[str, Any] | None = None) -> JobRun:
    """Run in this process through the same path a worker takes (retries run at once)."""
    run = _new_run(spec, community, trigger, now, params)
    spec.func.task.apply(kwargs=message_kwargs(run), task_id=run.celery_task_id)
    run.refresh_from_db()
    return run
