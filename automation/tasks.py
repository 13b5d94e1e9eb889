"""The one execution path every tenant job runs through.

`make_job_task(spec)` creates a thin Celery task per registered job (named after the
job, so Flower and beat rows show job names); all of them call `execute_run`, which
owns the run record, the lock, time limits, retries and metrics.
"""

from __future__ import annotations

import logging
import random
import time
from datetime import datetime
from typing import Any

from celery import Task, shared_task
from celery.exceptions import Retry, SoftTimeLimitExceeded, TimeLimitExceeded
from django.db import close_old_connections
from django.db.models import Exists
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from communities.models import Community

from .connections import get_redis
from .cron import previous_fire_time
from .errors import InvalidJobParams, RetryableJobError, is_retryable
from .locks import RunLock
from .metrics import observe_finished_run, observe_retry, observe_summary
from .models import CommunityAutomationSetting, JobRun
from .progress import reporting_progress
from .registry import JobSpec, get_job

logger = logging.getLogger(__name__)

SENT_AT_HEADER = "automation_sent_at"
RUNNING_FIELDS = ["status", "attempts", "started_at", "celery_task_id", "worker_hostname"]
FINISH_FIELDS = ["status", "finished_at", "duration_seconds", "attempts", "celery_task_id",
                 "worker_hostname"]


def backoff_delay(spec: JobSpec, retries_so_far: int, rng: random.Random | None = None) -> float:
    """Exponential backoff with jitter: base·2^n capped, then a random half of it added.

    The jitter spreads retries of many communities that failed together (an outage)
    so they do not return all at once.
    """
    ceiling = min(spec.backoff_cap, spec.backoff_base * (2**retries_so_far))
    return ceiling / 2 + (rng or random).uniform(0, ceiling / 2)


class JobTask(Task):
    """Base class of job tasks; JobRun is the run record, so Celery results are not kept."""

    abstract = True
    ignore_result = True
    acks_late = True
    typing = True

    def on_failure(self, exc, task_id, args, kwargs, einfo):
        # A hard time limit kills the pool process; the worker's main process reports it
        # here, and this is the only place left to close the run record and the lock.
        if isinstance(exc, TimeLimitExceeded):
            record_hard_timeout(self.name, task_id, str(exc))


def make_job_task(spec: JobSpec) -> Task:
    @shared_task(
        name=spec.name,
        bind=True,
        base=JobTask,
        soft_time_limit=spec.soft_time_limit,
        time_limit=spec.time_limit,
        max_retries=spec.max_retries,
    )
    def run_job(
        self: Task,
        community_id: int,
        trigger: str = JobRun.Trigger.SCHEDULE,
        run_id: int | None = None,
        scheduled_for: str | None = None,
        params: dict[str, Any] | None = None,
    ) -> str:
        return execute_run(
            self,
            spec,
            community_id=community_id,
            trigger=trigger,
            run_id=run_id,
            scheduled_for=parse_datetime(scheduled_for) if scheduled_for else None,
            params=params,
        )

    run_job.__doc__ = spec.description
    return run_job


def _slot_for_schedule(spec: JobSpec, community: Community | None,
                       setting: CommunityAutomationSetting | None, sent_at: datetime) -> datetime:
    """The cron fire time a beat message is for: the last fire time at or before sending."""
    cron = (setting.cron if setting else None) or spec.default_cron
    if community is None or cron is None:
        return sent_at
    return previous_fire_time(cron, community.timezone, sent_at)


def _skip_reason(community: Community | None,
                 setting: CommunityAutomationSetting | None) -> str | None:
    if community is None:
        return "community_missing"
    if not community.is_active:
        return "community_inactive"
    if setting is not None and not setting.enabled:
        return "disabled"
    return None


def _finish(run: JobRun, spec: JobSpec, status: str, *, now: datetime, **fields: Any) -> str:
    run.status = status
    run.finished_at = now
    if run.started_at:
        run.duration_seconds = max(0.0, (now - run.started_at).total_seconds())
    for name, value in fields.items():
        setattr(run, name, value)
    if run.pk:
        run.save(update_fields=[*FINISH_FIELDS, *fields])
    else:
        run.save()  # a skip decided before the run was ever written
    observe_finished_run(spec.name, spec.queue, status, run.duration_seconds, now.timestamp())
    if status == JobRun.Status.SUCCEEDED and isinstance(run.result, dict):
        observe_summary(spec.name, spec.queue, run.result)
    logger.info("job %s community=%s run=%s %s %s", spec.name, run.community_id, run.pk,
                status, run.skip_reason or run.error_message[:200])
    return status


def execute_run(
    task: Task,
    spec: JobSpec,
    *,
    community_id: int,
    trigger: str,
    run_id: int | None,
    scheduled_for: datetime | None,
    params: dict[str, Any] | None,
    clock: Any = timezone.now,
) -> str:
    """Run one attempt of a job for a community and record it; returns the run's status.

    The common path costs four statements: the setting (with its community), the slot check
    or the run's own row, the run written as running, and its end. A run record is created
    only when the message has none (beat), and then directly in the state it starts in.
    """
    close_old_connections()
    now = clock()
    settings_query = (
        CommunityAutomationSetting.objects.filter(community_id=community_id, job_name=spec.name)
        .select_related("community")
    )
    # A new scheduled run usually knows its slot already (given, or stamped by beat at the
    # fire time): ask whether that slot is done in the same query as the setting.
    candidate_slot = None
    if trigger == JobRun.Trigger.SCHEDULE and not run_id:
        candidate_slot = scheduled_for or parse_datetime(task.request.get(SENT_AT_HEADER) or "")
    if candidate_slot is not None:
        settings_query = settings_query.annotate(slot_done=Exists(JobRun.objects.filter(
            job_name=spec.name, community_id=community_id, scheduled_for=candidate_slot,
            status=JobRun.Status.SUCCEEDED)))
    setting = settings_query.first()
    community = (setting.community if setting is not None
                 else Community.objects.filter(pk=community_id).first())
    run = JobRun.objects.filter(pk=run_id).first() if run_id else None
    if run_id and run is None:
        # The message names a run record that no longer exists (pruned by retention, or the
        # database was reset): recreating it would run a job nobody asked for any more.
        logger.warning("job %s: run %s of this message no longer exists; dropped",
                       spec.name, run_id)
        return "run_missing"
    if run is not None and run.is_finished:
        # A redelivered message of a run that already ended: nothing more to do.
        return run.status
    if run is None:
        if scheduled_for is None:
            sent_at = parse_datetime(task.request.get(SENT_AT_HEADER) or "") or now
            if trigger == JobRun.Trigger.SCHEDULE:
                scheduled_for = _slot_for_schedule(spec, community, setting, sent_at)
            else:
                scheduled_for = sent_at
        run = JobRun(
            job_name=spec.name,
            community=community,
            trigger=trigger,
            scheduled_for=scheduled_for,
            queue=spec.queue,
            params=params or {},
        )
    run.celery_task_id = task.request.id or run.celery_task_id
    run.worker_hostname = task.request.hostname or ""

    reason = _skip_reason(community, setting)
    if reason is None and trigger == JobRun.Trigger.SCHEDULE and setting is not None \
            and setting.is_paused(now):
        reason = "paused"
    if reason is None and trigger == JobRun.Trigger.SCHEDULE:
        if setting is not None and run.scheduled_for == candidate_slot:
            slot_done = setting.slot_done
        else:
            done = JobRun.objects.filter(
                job_name=spec.name, community_id=community_id, scheduled_for=run.scheduled_for,
                status=JobRun.Status.SUCCEEDED,
            )
            slot_done = done.exclude(pk=run.pk).exists() if run.pk else done.exists()
        if slot_done:
            reason = "slot_already_done"
    if reason:
        return _finish(run, spec, JobRun.Status.SKIPPED, now=now, skip_reason=reason)

    try:
        cleaned = spec.clean_params({**(setting.params if setting else {}), **(params or {})})
    except InvalidJobParams as exc:
        return _finish(run, spec, JobRun.Status.FAILED, now=now,
                       error_type="InvalidJobParams", error_message=str(exc))

    # Written as running before the lock is taken, so the lock's token can name the run;
    # losing the lock race (rare) turns the same row into a skip.
    first_started = run.started_at
    run.status = JobRun.Status.RUNNING
    run.attempts += 1
    run.started_at = run.started_at or now
    if run.pk:
        run.save(update_fields=RUNNING_FIELDS)
    else:
        run.save()
    lock = RunLock(get_redis(), spec.name, community_id, ttl=spec.lock_ttl, token=f"run:{run.pk}")
    if not lock.acquire():
        run.attempts -= 1
        run.started_at = first_started
        return _finish(run, spec, JobRun.Status.SKIPPED, now=now, skip_reason="already_running",
                       error_message=f"lock held by {lock.owner()}", started_at=first_started)
    try:
        started = time.monotonic()
        with reporting_progress(run.pk):
            summary = spec.func(community, run.scheduled_for, **cleaned)
        logger.debug("job %s took %.3fs", spec.name, time.monotonic() - started)
        return _finish(run, spec, JobRun.Status.SUCCEEDED, now=clock(), result=summary or {},
                       error_type="", error_message="")
    except SoftTimeLimitExceeded:
        return _finish(run, spec, JobRun.Status.TIMED_OUT, now=clock(),
                       error_type="SoftTimeLimitExceeded",
                       error_message=f"exceeded the soft time limit of {spec.soft_time_limit}s")
    except Retry:
        raise
    except Exception as exc:
        error_type = type(exc).__name__
        if is_retryable(exc) and task.request.retries < spec.max_retries:
            lock.release()
            delay = backoff_delay(spec, task.request.retries)
            if isinstance(exc, RetryableJobError) and exc.retry_after:
                delay = max(delay, exc.retry_after)
            run.status = JobRun.Status.QUEUED
            run.error_type, run.error_message = error_type, str(exc)[:2000]
            run.save(update_fields=["status", "error_type", "error_message"])
            observe_retry(spec.name, spec.queue)
            raise task.retry(
                countdown=delay,
                exc=exc,
                kwargs={
                    "community_id": community_id,
                    "trigger": trigger,
                    "run_id": run.pk,
                    "scheduled_for": run.scheduled_for.isoformat(),
                    "params": params,
                },
            ) from exc
        logger.exception("job %s failed for community %s", spec.name, community_id)
        message = str(exc)[:2000] or error_type
        if is_retryable(exc):
            message = f"gave up after {run.attempts} attempts: {message}"
        return _finish(run, spec, JobRun.Status.FAILED, now=clock(), error_type=error_type,
                       error_message=message)
    finally:
        if lock.held:
            lock.release()


def record_hard_timeout(job_name: str, task_id: str, reason: str) -> None:
    """Close the run a killed process left `running`, and free its lock."""
    spec = get_job(job_name)
    close_old_connections()
    run = JobRun.objects.filter(celery_task_id=task_id, status=JobRun.Status.RUNNING).first()
    if run is None:
        return
    if run.community_id:
        RunLock(get_redis(), job_name, run.community_id, ttl=spec.lock_ttl,
                token=f"run:{run.pk}").release()
    _finish(run, spec, JobRun.Status.TIMED_OUT, now=timezone.now(),
            error_type="TimeLimitExceeded",
            error_message=f"killed at the hard time limit of {spec.time_limit}s ({reason})")
