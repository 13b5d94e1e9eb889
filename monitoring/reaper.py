"""The reaper: runs that stopped without an outcome are resumed, never left behind.

Every `AUTOMATION_REAPER_INTERVAL_SECONDS` (60 s) it settles three kinds of run record whose
broker side and database side disagree (docs/reliability.md):

- **Lost attempt**: `running`, but no lock names the run. A live attempt renews its lock
  (its lease) every third of `AUTOMATION_RUN_LEASE_SECONDS`, so a lock that is gone means
  the attempt's process is gone (worker killed, out of memory, host lost) or the attempt
  died on a database outage before it could record anything. The run is put back to
  `queued` and its message published again: the same run record (same slot, params and
  trigger) continues, its attempts counted, its `resumes` incremented, and the job's own
  ledger makes the work already done a no-op. After `AUTOMATION_MAX_RESUMES` resumes it
  fails instead (`WorkerLost`): a job that kills its worker every time must not loop.
- **Lost message**: `queued`, due more than `AUTOMATION_REQUEUE_AFTER_SECONDS` ago, in a
  queue that has moved past it (empty, or its oldest waiting message is newer than the
  run's): the message was lost (a broker restarted without persistence) or never published
  (the broker was down at the time). Published again under the same task id. A copy of a
  message that still exists somewhere is harmless: a delivery of a finished run is dropped,
  one of a running run waits out the lease and is dropped.
- **Never picked up**: `queued` and never started `AUTOMATION_REAPER_QUEUED_SECONDS` after
  creation: failed `NeverPickedUp`, the final bound on a run that no worker ever takes.

A hard time limit is recorded by the worker's main process (record_hard_timeout), not here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import F
from django.db.models.functions import Coalesce

from automation.connections import get_redis
from automation.locks import is_held_by_run, lock_key
from automation.metrics import observe_finished_run
from automation.models import JobRun
from automation.registry import get_job, is_registered
from automation.runs import publish_or_leave_to_reaper

from .broker import queue_states

logger = logging.getLogger(__name__)

WORKER_LOST = "WorkerLost"
MESSAGE_LOST = "MessageLost"
NEVER_PICKED_UP = "NeverPickedUp"
PUBLISH_TOLERANCE = timedelta(seconds=60)
# Runs settled per pass: a bounded pass every minute, not one giant one after an outage.
BATCH = 2000


@dataclass
class ReapReport:
    resumed: list[int] = field(default_factory=list)
    republished: list[int] = field(default_factory=list)
    worker_lost: list[int] = field(default_factory=list)  # given up: failed
    never_picked_up: list[int] = field(default_factory=list)
    still_locked: list[int] = field(default_factory=list)


def reap_stuck_runs(now: datetime) -> ReapReport:
    report = ReapReport()
    _resume_lost_attempts(now, report)
    _fail_never_picked_up(now, report)
    _republish_lost_messages(now, report)
    return report


def _resume_lost_attempts(now: datetime, report: ReapReport) -> None:
    # An attempt writes `running` and takes its lock within milliseconds; one lease of age
    # leaves no doubt that a run without a lock is not just starting.
    horizon = now - timedelta(seconds=settings.AUTOMATION_RUN_LEASE_SECONDS)
    running = list(JobRun.objects.filter(status=JobRun.Status.RUNNING, started_at__lt=horizon)
                   .order_by("started_at")[:BATCH])
    if not running:
        return
    owners = get_redis().mget([lock_key(run.job_name, run.community_id or 0)
                               for run in running])
    for run, owner in zip(running, owners, strict=True):
        if is_held_by_run(owner, run.pk):
            report.still_locked.append(run.pk)
            continue
        what = (f"attempt {run.attempts} lost its worker ({run.worker_hostname or 'unknown'}): "
                f"no live lease at {now:%Y-%m-%d %H:%M:%S} UTC")
        if _give_up(run, now, WORKER_LOST, what, from_status=JobRun.Status.RUNNING):
            report.worker_lost.append(run.pk)
        elif _requeue(run, now, WORKER_LOST, f"{what}; resumed",
                      from_status=JobRun.Status.RUNNING):
            report.resumed.append(run.pk)


def _republish_lost_messages(now: datetime, report: ReapReport) -> None:
    due_before = now - timedelta(seconds=settings.AUTOMATION_REQUEUE_AFTER_SECONDS)
    queued = list(JobRun.objects.annotate(due=Coalesce("queued_at", "created_at"))
                  .filter(status=JobRun.Status.QUEUED, due__lt=due_before)
                  .order_by("due")[:BATCH])
    if not queued:
        return
    try:
        states = {state.queue: state for state in
                  queue_states(sorted({run.queue for run in queued if run.queue}))[0]}
    except Exception as exc:  # the broker is down: nothing can be published anyway
        logger.warning("reaper: broker unreachable (%s); lost messages left for later", exc)
        return
    for run in queued:
        state = states.get(run.queue)
        # FIFO: a queue that is empty, or whose oldest waiting message was sent well after
        # this run fell due, no longer holds this run's message (which was sent at about
        # its due time: PUBLISH_TOLERANCE covers the gap, e.g. a commit before publishing).
        moved_past = state is not None and (
            state.depth == 0
            or (state.oldest_sent_at is not None
                and state.oldest_sent_at > run.due + PUBLISH_TOLERANCE))
        if not moved_past:
            continue
        what = f"message lost: still queued {int((now - run.due).total_seconds())} s after " \
               f"it fell due, and queue {run.queue} has moved past it"
        if _give_up(run, now, MESSAGE_LOST, what, from_status=JobRun.Status.QUEUED):
            report.worker_lost.append(run.pk)
        elif _requeue(run, now, MESSAGE_LOST, f"{what}; published again",
                      from_status=JobRun.Status.QUEUED):
            report.republished.append(run.pk)


def _give_up(run: JobRun, now: datetime, error_type: str, what: str, *,
             from_status: str) -> bool:
    """Fail the run when it cannot be resumed (resumed too often, job or community gone)."""
    if run.resumes < settings.AUTOMATION_MAX_RESUMES and is_registered(run.job_name) \
            and run.community_id is not None:
        return False
    duration = (now - run.started_at).total_seconds() if run.started_at else None
    reason = (f"{what}; gave up after {run.resumes} resumes" if is_registered(run.job_name)
              else f"{what}; job {run.job_name} is no longer registered")
    updated = JobRun.objects.filter(
        pk=run.pk, status=from_status, attempts=run.attempts
    ).update(status=JobRun.Status.FAILED, finished_at=now, duration_seconds=duration,
             error_type=error_type, error_message=reason)
    if updated:
        observe_finished_run(run.job_name, run.queue, JobRun.Status.FAILED, duration,
                             now.timestamp())
        logger.warning("reaper: run %s of %s failed: %s", run.pk, run.job_name, reason)
    return True


def _requeue(run: JobRun, now: datetime, error_type: str, what: str, *,
             from_status: str) -> bool:
    # Conditional on the state read: an attempt that started or ended meanwhile wins.
    updated = JobRun.objects.filter(
        pk=run.pk, status=from_status, attempts=run.attempts
    ).update(status=JobRun.Status.QUEUED, queued_at=now, resumes=F("resumes") + 1,
             error_type=error_type, error_message=what)
    if not updated:
        return False
    logger.warning("reaper: run %s of %s: %s", run.pk, run.job_name, what)
    publish_or_leave_to_reaper(get_job(run.job_name), run)
    return True


def _fail_never_picked_up(now: datetime, report: ReapReport) -> None:
    queued_limit = settings.AUTOMATION_REAPER_QUEUED_SECONDS
    never = list(JobRun.objects.filter(
        status=JobRun.Status.QUEUED, started_at__isnull=True,
        created_at__lt=now - timedelta(seconds=queued_limit),
    ).order_by().values_list("pk", "job_name", "queue")[:BATCH])
    if not never:
        return
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
            observe_finished_run(job_name, queue, JobRun.Status.FAILED, None, now.timestamp())
        logger.warning("reaper: %d queued run(s) never picked up, marked failed",
                       len(report.never_picked_up))
