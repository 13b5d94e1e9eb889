"""Stuck-run reaper: close runs whose worker died, so they stop showing as running.

A run is `running` from the start of an attempt until execute_run records its end; a hard
time limit is recorded by the worker's main process (record_hard_timeout). Only when the
whole worker died (OOM kill, host lost) does nobody record anything. Such a run is marked
failed when both hold:

- it started more than the job's hard time limit + AUTOMATION_REAPER_MARGIN_SECONDS ago;
- its run lock no longer names it. Each attempt takes the lock with a TTL of the hard limit
  plus the lock margin, so a lock still held by the run means an attempt started recently
  (a retry of a run started long ago, for instance) and the run is left alone.

Runs still `queued` without ever starting, AUTOMATION_REAPER_QUEUED_SECONDS after they were
created (the broker's visibility timeout by default: by then a lost message would have come
back), are marked failed as never picked up. A message that does arrive later finds its run
finished and does nothing. Locks and messages are not touched.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings

from automation.connections import get_redis
from automation.locks import lock_key
from automation.metrics import observe_finished_run
from automation.models import JobRun
from automation.registry import all_jobs, get_job, is_registered

logger = logging.getLogger(__name__)

WORKER_LOST = "WorkerLost"
NEVER_PICKED_UP = "NeverPickedUp"


@dataclass
class ReapReport:
    worker_lost: list[int] = field(default_factory=list)
    never_picked_up: list[int] = field(default_factory=list)
    still_locked: list[int] = field(default_factory=list)


def _hard_limit(job_name: str) -> int:
    if is_registered(job_name):
        return get_job(job_name).time_limit
    # A job removed from the code: the longest limit of any job is the safe bound.
    return max((spec.time_limit for spec in all_jobs()), default=3600)


def reap_stuck_runs(now: datetime) -> ReapReport:
    report = ReapReport()
    margin = settings.AUTOMATION_REAPER_MARGIN_SECONDS
    running = list(JobRun.objects.filter(status=JobRun.Status.RUNNING).order_by().values_list(
        "pk", "job_name", "community_id", "queue", "started_at", "attempts", "worker_hostname"))
    stale = []
    for row in running:
        pk, job_name, _, _, started_at, _, _ = row
        limit = _hard_limit(job_name) + margin
        if started_at is not None and (now - started_at).total_seconds() > limit:
            stale.append((row, limit))
    if stale:
        redis = get_redis()
        owners = redis.mget([lock_key(row[1], row[2] or 0) for row, _ in stale])
        for (row, limit), owner in zip(stale, owners, strict=True):
            pk, job_name, _, queue, started_at, attempts, host = row
            if owner is not None and owner.decode() == f"run:{pk}":
                report.still_locked.append(pk)
                continue
            duration = (now - started_at).total_seconds()
            message = (f"worker lost: no result within {limit} s of start (hard limit "
                       f"{limit - margin} s + {margin} s margin); started "
                       f"{started_at:%Y-%m-%d %H:%M:%S} UTC, attempt {attempts}, "
                       f"worker {host or 'unknown'}")
            # Conditional on the state read: a worker that records its end meanwhile wins.
            updated = JobRun.objects.filter(
                pk=pk, status=JobRun.Status.RUNNING, attempts=attempts
            ).update(status=JobRun.Status.FAILED, finished_at=now, duration_seconds=duration,
                     error_type=WORKER_LOST, error_message=message)
            if updated:
                report.worker_lost.append(pk)
                observe_finished_run(job_name, queue, JobRun.Status.FAILED, duration,
                                     now.timestamp())
                logger.warning("reaper: run %s of %s marked failed: %s", pk, job_name, message)

    queued_limit = settings.AUTOMATION_REAPER_QUEUED_SECONDS
    never = list(JobRun.objects.filter(
        status=JobRun.Status.QUEUED, started_at__isnull=True,
        created_at__lt=now - timedelta(seconds=queued_limit),
    ).order_by().values_list("pk", "job_name", "queue"))
    if never:
        updated = JobRun.objects.filter(
            pk__in=[pk for pk, _, _ in never], status=JobRun.Status.QUEUED,
            started_at__isnull=True,
        ).update(status=JobRun.Status.FAILED, finished_at=now, error_type=NEVER_PICKED_UP,
                 error_message=f"never picked up: no worker started this run within "
                               f"{queued_limit} s of it being queued")
        if updated:
            # Re-read which ones changed: a worker may have started one in between.
            changed = JobRun.objects.filter(
                pk__in=[pk for pk, _, _ in never], error_type=NEVER_PICKED_UP,
                finished_at=now).values_list("pk", "job_name", "queue")
            for pk, job_name, queue in changed:
                report.never_picked_up.append(pk)
                observe_finished_run(job_name, queue, JobRun.Status.FAILED, None,
                                     now.timestamp())
            logger.warning("reaper: %d queued run(s) never picked up, marked failed",
                           len(report.never_picked_up))
    return report
