"""Runs resume, never vanish: lost attempts, duplicate deliveries, infrastructure errors.

On the real prefork worker of the session (run leases of 4 s, tests/settings.py).
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from automation.connections import get_redis
from automation.models import JobRun
from automation.registry import get_job
from automation.runs import publish
from communities.models import Community
from monitoring.reaper import reap_stuck_runs
from tests.conftest import wait_for

from .test_execution import finished, start

pytestmark = pytest.mark.worker


def test_a_lost_attempt_is_resumed_and_completes(worker, community: Community) -> None:
    """A run left `running` by a worker that vanished (no lease) is resumed by the reaper as
    the same run record: same slot and params, attempts counted, and it completes."""
    now = timezone.now()
    slot = now - timedelta(minutes=3)
    run = JobRun.objects.create(
        job_name="test_sleep", community=community, trigger=JobRun.Trigger.SCHEDULE,
        scheduled_for=slot, status=JobRun.Status.RUNNING, queue="automation",
        params={"seconds": 0.1}, started_at=now - timedelta(minutes=2), attempts=1,
        celery_task_id="lost-task-1", worker_hostname="automation@gone",
    )
    report = reap_stuck_runs(timezone.now())
    assert report.resumed == [run.pk]

    run = finished(run)
    assert (run.status, run.attempts, run.resumes, run.scheduled_for) == \
        ("succeeded", 2, 1, slot)
    assert run.celery_task_id == "lost-task-1"
    assert JobRun.objects.filter(job_name="test_sleep", community=community).count() == 1
    assert get_redis().lrange(f"test:ran:{community.pk}", 0, -1) == [slot.isoformat().encode()]


def test_a_duplicate_delivery_of_a_running_run_changes_nothing(worker,
                                                               community: Community) -> None:
    """A second message of a run that is running elsewhere (a resume racing a redelivery)
    waits out one lease, sees the run alive or ended, and leaves it alone: one execution."""
    run = start("test_sleep", community, seconds=1.8)
    wait_for(lambda: JobRun.objects.filter(pk=run.pk, status="running").exists())
    publish(get_job("test_sleep"), run)

    run = finished(run)
    assert (run.status, run.attempts) == ("succeeded", 1)
    assert get_redis().llen(f"test:ran:{community.pk}") == 1
    # The duplicate delivery returned without touching the record.
    time.sleep(1.5)
    run.refresh_from_db()
    assert (run.status, run.attempts) == ("succeeded", 1)


def test_a_redelivered_message_continues_its_run(worker, community: Community) -> None:
    """A message without a run id (beat's) that comes back after its run ended is dropped:
    the run its first delivery recorded is found by the message's task id."""
    task = get_job("test_sleep").func.task
    task.apply_async(kwargs={"community_id": community.pk}, task_id="beat-msg-1",
                     queue="automation")
    run = finished(wait_for(lambda: JobRun.objects.filter(celery_task_id="beat-msg-1").first()))
    assert run.status == "succeeded"

    task.apply_async(kwargs={"community_id": community.pk}, task_id="beat-msg-1",
                     queue="automation")
    time.sleep(2)
    assert JobRun.objects.filter(job_name="test_sleep", community=community).count() == 1
    assert get_redis().llen(f"test:ran:{community.pk}") == 1


def test_database_errors_are_retried_on_the_platform_budget(worker,
                                                            community: Community) -> None:
    """A job that loses its database connection twice succeeds on the third attempt, though
    its own retry budget is zero: infrastructure errors have a budget of their own."""
    run = finished(start("test_db_blip", community, failures=2), timeout=30)
    assert (run.status, run.attempts, run.result) == ("succeeded", 3, {"attempt": 3})
