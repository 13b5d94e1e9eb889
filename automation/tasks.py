"""The one execution path every tenant job runs through.

`make_job_task(spec)` creates a thin Celery task per registered job (named after the
job, so Flower and beat rows show job names); all of them call `execute_run`, which
owns the run record, the lock, time limits, retries and metrics.
"""

from __future__ import annotations

import contextlib
import logging
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NoReturn

from celery import Task, shared_task
from celery.exceptions import Reject, Retry, SoftTimeLimitExceeded
from celery.worker.request import Request
from django.conf import settings
from django.db import close_old_connections, connections
from django.db.models import Exists, F, Subquery, Value
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from redis import RedisError

from communities.models import Community

from .connections import get_redis
from .cron import previous_fire_time
from .errors import (
    INFRASTRUCTURE_EXCEPTIONS,
    InvalidJobParams,
    RetryableJobError,
    is_database_error,
    is_retryable,
)
from .lease import Acquired, RunLease
from .locks import release_run
from .metrics import observe_finished_run, observe_retry, observe_summary
from .models import CommunityAutomationSetting, JobRun
from .progress import reporting_progress, use_writer
from .registry import JobSpec, get_job, use_task_factory

logger = logging.getLogger(__name__)

SENT_AT_HEADER = "automation_sent_at"
FINISH_FIELDS = ["status", "finished_at", "duration_seconds", "attempts", "celery_task_id",
                 "worker_hostname"]


def backoff_delay(spec: JobSpec, retries_so_far: int, rng: random.Random | None = None) -> float:
    """Exponential backoff with jitter: base·2^n capped, then a random half of it added.

    The jitter spreads retries of many communities that failed together (an outage)
    so they do not return all at once.
    """
    ceiling = min(spec.backoff_cap, spec.backoff_base * (2**retries_so_far))
    return ceiling / 2 + (rng or random).uniform(0, ceiling / 2)


class JobRequest(Request):
    """A job message as the worker's main process handles it."""

    def on_timeout(self, soft: bool, timeout: float) -> None:
        super().on_timeout(soft, timeout)
        # A hard time limit kills the pool process: the main process is the only one left
        # to close the run record and free the lock (celery calls no task hook for it).
        if not soft:
            try:
                record_hard_timeout(self.task.name, self.id, f"TimeLimitExceeded({timeout})")
            except Exception:
                # Never let the bookkeeping take the worker down (the database may be away):
                # the reaper settles a run whose attempt no longer holds its lease.
                logger.exception("could not record the hard time limit of %s", self.id)


class JobTask(Task):
    """Base class of job tasks; JobRun is the run record, so Celery results are not kept."""

    abstract = True
    ignore_result = True
    acks_late = True
    typing = True
    Request = JobRequest


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


@dataclass
class _Delivery:
    """What one message asked for, and what this delivery has learned so far."""

    community_id: int
    trigger: str
    run_id: int | None
    scheduled_for: datetime | None
    params: dict[str, Any] | None
    sent_at: datetime | None = None  # beat stamps its slot here (SENT_AT_HEADER)
    run: JobRun | None = None

    def retry_kwargs(self) -> dict[str, Any]:
        # A retry carries the slot explicitly: it is sent later, and a scheduled message's
        # slot must not move to the time of the retry.
        run = self.run
        slot = run.scheduled_for if run is not None else self.scheduled_for
        if slot is None and self.trigger == JobRun.Trigger.SCHEDULE:
            slot = self.sent_at
        return {
            "community_id": self.community_id,
            "trigger": self.trigger,
            "run_id": run.pk if run is not None and run.pk else self.run_id,
            "scheduled_for": slot.isoformat() if slot else None,
            "params": self.params,
        }


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

    When the database, Redis or the broker goes away under it, the attempt is retried on
    the platform's own budget and its record is written only once they are back; if even
    the retry cannot be published, the message goes back to the broker unacknowledged.
    """
    delivery = _Delivery(community_id, trigger, run_id, scheduled_for, params,
                         sent_at=parse_datetime(task.request.get(SENT_AT_HEADER) or ""))
    try:
        return _attempt(task, spec, delivery, clock)
    except (Retry, Reject):
        raise
    except INFRASTRUCTURE_EXCEPTIONS as exc:
        return _retry_after_outage(task, spec, delivery, exc, clock)


def _attempt(task: Task, spec: JobSpec, delivery: _Delivery, clock: Any) -> str:
    """The common path costs four statements: the setting (with its community), the slot
    check or the run's own row, the run written as running, and its end. A run record is
    created only when the message has none (beat), and then directly in the state it
    starts in."""
    close_old_connections()
    now = clock()
    community_id, trigger, run_id = delivery.community_id, delivery.trigger, delivery.run_id
    scheduled_for, params = delivery.scheduled_for, delivery.params
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
    # A message without a run id that comes back (its worker died, the broker restored it)
    # continues the run its first delivery recorded: same task id, same logical run.
    task_id = task.request.id
    if not run_id and task_id:
        settings_query = settings_query.annotate(delivered_run=Subquery(JobRun.objects.filter(
            celery_task_id=task_id, job_name=spec.name).values("pk")[:1]))
    setting = settings_query.first()
    community = (setting.community if setting is not None
                 else Community.objects.filter(pk=community_id).first())
    if not run_id and task_id:
        run_id = (setting.delivered_run if setting is not None
                  else JobRun.objects.filter(celery_task_id=task_id, job_name=spec.name)
                  .values_list("pk", flat=True).first())
        if run_id:
            logger.info("job %s: message %s delivered again; continuing run %s",
                        spec.name, task_id, run_id)
            candidate_slot = None
    run = JobRun.objects.filter(pk=run_id).first() if run_id else None
    if delivery.run_id and run is None:
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
            queued_at=now,
        )
    delivery.run = run

    reason = _skip_reason(community, setting)
    if reason is None and trigger == JobRun.Trigger.SCHEDULE and setting is not None \
            and setting.is_paused(now):
        reason = "paused"
    if reason is None and trigger == JobRun.Trigger.SCHEDULE:
        if setting is not None and candidate_slot is not None \
                and run.scheduled_for == candidate_slot:
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
        _stamp_worker(run, task)
        return _finish(run, spec, JobRun.Status.SKIPPED, now=now, skip_reason=reason)

    try:
        cleaned = spec.clean_params({**(setting.params if setting else {}), **(params or {})})
    except InvalidJobParams as exc:
        _stamp_worker(run, task)
        return _finish(run, spec, JobRun.Status.FAILED, now=now,
                       error_type="InvalidJobParams", error_message=str(exc))

    lease_ttl = settings.AUTOMATION_RUN_LEASE_SECONDS
    if run.pk:
        # An existing run (queued by a person, a retry, a resume, a redelivery): take its
        # lock before touching the record, so a second delivery of a run that is alive
        # elsewhere changes nothing. A dead attempt's lease expires within one TTL.
        lease = RunLease(get_redis(), spec.name, community_id, run.pk, ttl=lease_ttl)
        outcome = lease.acquire(wait_for_same_run=lease_ttl + 1)
        if outcome is Acquired.SAME_RUN:
            logger.warning("job %s: run %s is running in %s; this delivery (%s) dropped",
                           spec.name, run.pk, lease.owner(), task_id)
            return "duplicate_delivery"
        if outcome is Acquired.OTHER_RUN:
            _stamp_worker(run, task)
            return _finish(run, spec, JobRun.Status.SKIPPED, now=now,
                           skip_reason="already_running",
                           error_message=f"lock held by {lease.owner()}")
        if not _start_existing(run, task, now):
            # It ended while this delivery waited for the lock: nothing more to do.
            _release_quietly(lease)
            return "duplicate_delivery"
    else:
        # Written as running before the lock is taken, so the lock's token can name the run;
        # losing the lock race (rare) turns the same row into a skip.
        _start(run, task, now)
        lease = RunLease(get_redis(), spec.name, community_id, run.pk, ttl=lease_ttl)
        if lease.acquire() is not Acquired.ACQUIRED:
            run.attempts -= 1
            return _finish(run, spec, JobRun.Status.SKIPPED, now=now,
                           skip_reason="already_running",
                           error_message=f"lock held by {lease.owner()}", started_at=None)
    try:
        with lease.kept_alive(), reporting_progress(run.pk):
            summary = spec.func(community, run.scheduled_for, **cleaned)
        return _finish(run, spec, JobRun.Status.SUCCEEDED, now=clock(), result=summary or {},
                       error_type="", error_message="")
    except SoftTimeLimitExceeded:
        return _finish(run, spec, JobRun.Status.TIMED_OUT, now=clock(),
                       error_type="SoftTimeLimitExceeded",
                       error_message=f"exceeded the soft time limit of {spec.soft_time_limit}s")
    except Retry:
        raise
    except Exception as exc:
        if is_database_error(exc):
            raise  # execute_run retries it without writing through a dead connection
        return _fail_or_retry(task, spec, delivery, exc, clock)
    finally:
        _release_quietly(lease)


def _stamp_worker(run: JobRun, task: Task) -> None:
    run.celery_task_id = task.request.id or run.celery_task_id
    run.worker_hostname = task.request.hostname or ""


def _start(run: JobRun, task: Task, now: datetime) -> None:
    """Insert a new run directly in the running state."""
    _stamp_worker(run, task)
    run.status = JobRun.Status.RUNNING
    run.attempts += 1
    run.started_at = now
    run.save()


def _start_existing(run: JobRun, task: Task, now: datetime) -> bool:
    """Mark an existing run running, unless it finished meanwhile (one statement)."""
    _stamp_worker(run, task)
    started = JobRun.objects.filter(
        pk=run.pk, status__in=[JobRun.Status.QUEUED, JobRun.Status.RUNNING]
    ).update(status=JobRun.Status.RUNNING, attempts=F("attempts") + 1,
             started_at=Coalesce("started_at", Value(now)),
             celery_task_id=run.celery_task_id, worker_hostname=run.worker_hostname)
    if not started:
        return False
    run.status = JobRun.Status.RUNNING
    run.attempts += 1
    run.started_at = run.started_at or now
    return True


def _fail_or_retry(task: Task, spec: JobSpec, delivery: _Delivery, exc: Exception,
                   clock: Any) -> str:
    """A job's own error: retried with backoff while attempts remain, else the run fails."""
    run = delivery.run
    error_type = type(exc).__name__
    if is_retryable(exc) and run.attempts <= spec.max_retries:
        delay = backoff_delay(spec, run.attempts - 1)
        if isinstance(exc, RetryableJobError) and exc.retry_after:
            delay = max(delay, exc.retry_after)
        # Recorded queued before the lock is released, so no moment shows a running run
        # that no lock names (which the reaper would take for a lost worker).
        run.status = JobRun.Status.QUEUED
        run.queued_at = clock() + timedelta(seconds=delay)
        run.error_type, run.error_message = error_type, str(exc)[:2000]
        run.save(update_fields=["status", "queued_at", "error_type", "error_message"])
        observe_retry(spec.name, spec.queue)
        _retry(task, delivery, delay, exc, clock)
    logger.exception("job %s failed for community %s", spec.name, delivery.community_id)
    message = str(exc)[:2000] or error_type
    if is_retryable(exc):
        message = f"gave up after {run.attempts} attempts: {message}"
    return _finish(run, spec, JobRun.Status.FAILED, now=clock(), error_type=error_type,
                   error_message=message)


def _retry_after_outage(task: Task, spec: JobSpec, delivery: _Delivery, exc: Exception,
                        clock: Any) -> str:
    """The database, Redis or the broker failed under this delivery.

    Reconnect and retry with a short capped backoff on the platform's budget
    (AUTOMATION_INFRA_MAX_RETRIES), leaving the job's own retries untouched. Nothing is
    acknowledged without a successor: if the retry cannot be published either, the message
    is handed back to the broker. A run left `running` meanwhile is the reaper's to resume.
    """
    _reset_database_connections()
    retries = task.request.retries
    logger.warning("job %s community=%s: infrastructure error (%s: %s); retry %d",
                   spec.name, delivery.community_id, type(exc).__name__, exc, retries + 1)
    run = delivery.run
    if retries >= settings.AUTOMATION_INFRA_MAX_RETRIES:
        if run is not None and run.pk:
            try:
                return _finish(run, spec, JobRun.Status.FAILED, now=clock(),
                               error_type=type(exc).__name__,
                               error_message=f"infrastructure unavailable after {retries} "
                                             f"retries: {exc}"[:2000])
            except INFRASTRUCTURE_EXCEPTIONS:
                _reset_database_connections()
        raise Reject(exc, requeue=False) from exc
    delay = min(settings.AUTOMATION_INFRA_BACKOFF_CAP_SECONDS, 2.0 ** retries)
    delay = delay / 2 + random.uniform(0, delay / 2)
    if run is not None and run.pk:
        try:
            JobRun.objects.filter(pk=run.pk, status=JobRun.Status.RUNNING).update(
                status=JobRun.Status.QUEUED, queued_at=clock() + timedelta(seconds=delay),
                error_type=type(exc).__name__, error_message=str(exc)[:2000])
        except INFRASTRUCTURE_EXCEPTIONS:
            _reset_database_connections()  # still down: the reaper settles the record later
    observe_retry(spec.name, spec.queue)
    _retry(task, delivery, delay, exc, clock)


def _retry(task: Task, delivery: _Delivery, delay: float, exc: Exception,
           clock: Any) -> NoReturn:
    """Publish the next attempt; if the broker cannot take it, hand this message back.

    Celery rejects the message *without* requeueing when it cannot publish a retry, which
    would lose the run's only message. It is rejected with requeue instead, and the queued
    run is marked due now, so that if even the requeue cannot reach the broker, the reaper
    publishes it again once AUTOMATION_REQUEUE_AFTER_SECONDS have passed.
    """
    try:
        raise task.retry(countdown=delay, exc=exc, kwargs=delivery.retry_kwargs(),
                         max_retries=task.request.retries + 1)
    except Reject as rejected:
        run = delivery.run
        logger.warning("job %s: could not publish the retry of run %s (%s); message handed "
                       "back to the broker", task.name, run.pk if run else None,
                       rejected.reason)
        if run is not None and run.pk:
            with contextlib.suppress(*INFRASTRUCTURE_EXCEPTIONS):
                JobRun.objects.filter(pk=run.pk, status=JobRun.Status.QUEUED).update(
                    queued_at=clock())
        raise Reject(rejected.reason, requeue=True) from exc


def _reset_database_connections() -> None:
    for connection in connections.all(initialized_only=True):
        # A dead connection may fail to close; it is dropped either way.
        with contextlib.suppress(Exception):
            connection.close()


def _release_quietly(lease: RunLease) -> None:
    if not lease.held:
        return
    try:
        lease.release()
    except RedisError as exc:
        # The lease expires by itself within its TTL.
        logger.warning("run %s: could not release the lock: %s", lease.run_id, exc)


def _write_progress(run_id: int, done: int, total: int | None) -> None:
    JobRun.objects.filter(pk=run_id).update(progress_done=done, progress_total=total)


def record_hard_timeout(job_name: str, task_id: str, reason: str) -> None:
    """Close the run a killed process left `running`, and free its lock."""
    spec = get_job(job_name)
    close_old_connections()
    run = JobRun.objects.filter(celery_task_id=task_id, status=JobRun.Status.RUNNING).first()
    if run is None:
        return
    if run.community_id:
        release_run(get_redis(), job_name, run.community_id, run.pk)
    _finish(run, spec, JobRun.Status.TIMED_OUT, now=timezone.now(),
            error_type="TimeLimitExceeded",
            error_message=f"killed at the hard time limit of {spec.time_limit}s ({reason})")


use_task_factory(make_job_task)
use_writer(_write_progress)
