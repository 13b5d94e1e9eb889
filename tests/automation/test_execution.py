"""The execution path on a real prefork worker: locks, skips, limits, retries, metrics."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pytest
from django.test import Client
from django.utils import timezone
from django_celery_beat.models import PeriodicTask
from django_celery_beat.schedulers import DatabaseScheduler, ModelEntry

from automation.connections import get_redis
from automation.locks import RunLock
from automation.models import JobRun
from automation.registry import get_job
from automation.runs import enqueue_run
from automation.schedules import periodic_task_name
from communities.models import Community
from config.celery import app
from tests.conftest import wait_for

pytestmark = pytest.mark.worker


def finished(run: JobRun, timeout: float = 20.0) -> JobRun:
    def done() -> JobRun | None:
        run.refresh_from_db()
        return run if run.is_finished else None

    return wait_for(done, timeout=timeout)


def start(job: str, community: Community, **params) -> JobRun:
    return enqueue_run(get_job(job), community, trigger=JobRun.Trigger.MANUAL,
                       now=timezone.now(), params=params or None)


def metric_value(text: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith(f"{name}{{") and all(
            f'{key}="{value}"' in line for key, value in labels.items()
        ):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no sample {name}{{{wanted}}} in /metrics")


def scrape() -> str:
    return Client().get("/metrics").content.decode()


def test_beat_row_to_recorded_run_and_metrics(worker, community: Community) -> None:
    """Setting → sync → beat row → beat publishes → worker → lock → run record → /metrics."""
    before = scrape()
    row = PeriodicTask.objects.get(name=periodic_task_name(community.pk, "test_sleep"))
    assert json.loads(row.kwargs) == {"community_id": community.pk}

    # Publish exactly as beat does: the scheduler's own entry and apply path.
    scheduler = DatabaseScheduler(app=app, lazy=True)
    scheduler.apply_entry(ModelEntry(row, app=app), producer=None)

    run = wait_for(lambda: JobRun.objects.filter(job_name="test_sleep").first())
    run = finished(run)
    assert run.status == JobRun.Status.SUCCEEDED
    assert run.trigger == JobRun.Trigger.SCHEDULE
    assert run.community == community
    assert run.attempts == 1
    assert run.worker_hostname.startswith("test-")
    assert run.result == {"slept": 0.0}
    # The slot is the cron fire time (*/5) at or before the publish moment.
    assert run.scheduled_for.minute % 5 == 0 and run.scheduled_for.second == 0
    assert get_redis().llen(f"test:ran:{community.pk}") == 1

    after = scrape()
    labels = {"job": "test_sleep", "queue": "automation", "status": "succeeded"}
    try:
        previous = metric_value(before, "automation_job_runs_total", **labels)
    except AssertionError:
        previous = 0.0
    assert metric_value(after, "automation_job_runs_total", **labels) == previous + 1
    assert metric_value(
        after, "automation_job_last_success_timestamp_seconds", job="test_sleep",
        queue="automation",
    ) >= run.finished_at.timestamp() - 1
    assert 'automation_job_duration_seconds_count{job="test_sleep"' in after


def test_redelivered_schedule_slot_runs_once(worker, community: Community) -> None:
    """Two beat messages for the same slot (two beats, a redelivery): the second is skipped."""
    task = get_job("test_sleep").func.task
    slot = datetime(2026, 7, 1, 16, 0, tzinfo=UTC).isoformat()
    first = task.apply_async(kwargs={"community_id": community.pk, "scheduled_for": slot})
    run_one = finished(wait_for(lambda: JobRun.objects.filter(celery_task_id=first.id).first()))
    second = task.apply_async(kwargs={"community_id": community.pk, "scheduled_for": slot})
    run_two = finished(wait_for(lambda: JobRun.objects.filter(celery_task_id=second.id).first()))
    assert run_one.status == JobRun.Status.SUCCEEDED
    assert (run_two.status, run_two.skip_reason) == (JobRun.Status.SKIPPED, "slot_already_done")
    assert get_redis().llen(f"test:ran:{community.pk}") == 1


def test_concurrent_runs_of_one_job_and_community_skip(worker, community: Community) -> None:
    """Two runs of the same (job, community) at once: one runs, the other is skipped."""
    first = start("test_sleep", community, seconds=1.5)
    wait_for(lambda: JobRun.objects.get(pk=first.pk).status == JobRun.Status.RUNNING)
    second = start("test_sleep", community, seconds=0)
    second = finished(second)
    assert (second.status, second.skip_reason) == (JobRun.Status.SKIPPED, "already_running")
    assert finished(first).status == JobRun.Status.SUCCEEDED
    assert get_redis().llen(f"test:ran:{community.pk}") == 1


def test_different_communities_run_in_parallel(
    worker, community: Community, other_community: Community
) -> None:
    """The lock is per community: two communities' runs overlap in time."""
    one = start("test_sleep", community, seconds=1.5)
    two = start("test_sleep", other_community, seconds=1.5)
    one, two = finished(one), finished(two)
    assert one.status == two.status == JobRun.Status.SUCCEEDED
    assert one.started_at < two.finished_at and two.started_at < one.finished_at


def test_job_disabled_after_queueing_is_skipped(worker, community: Community) -> None:
    """The setting is re-checked at run time, not only when the message was sent."""
    setting = community.automation_settings.get(job_name="test_sleep")
    setting.enabled = False
    setting.save()
    run = finished(start("test_sleep", community))
    assert (run.status, run.skip_reason) == (JobRun.Status.SKIPPED, "disabled")
    assert get_redis().llen(f"test:ran:{community.pk}") == 0


def test_inactive_community_is_skipped(worker, community: Community) -> None:
    run = start("test_sleep", community)
    Community.objects.filter(pk=community.pk).update(is_active=False)
    run = finished(run)
    assert (run.status, run.skip_reason) == (JobRun.Status.SKIPPED, "community_inactive")


def test_soft_time_limit_records_timed_out(worker, community: Community) -> None:
    """A job past its soft limit (2 s) is stopped and recorded timed_out; its lock is freed."""
    run = finished(start("test_sleep", community, seconds=4), timeout=30)
    assert run.status == JobRun.Status.TIMED_OUT
    assert "soft time limit of 2s" in run.error_message
    assert 1.9 < run.duration_seconds < 4
    assert RunLock(get_redis(), "test_sleep", community.pk, ttl=1, token="x").owner() is None


def test_retryable_error_is_retried_with_backoff_then_succeeds(
    worker, community: Community
) -> None:
    """Two 503s then success: one run, three attempts, waits between attempts."""
    began = time.monotonic()
    run = finished(start("test_flaky", community, failures=2))
    assert run.status == JobRun.Status.SUCCEEDED
    assert run.attempts == 3
    assert run.result == {"attempt": 3}
    assert JobRun.objects.filter(job_name="test_flaky").count() == 1
    # backoff base 0.2 s: at least 0.1 s then 0.2 s (each is half jittered)
    assert time.monotonic() - began >= 0.3


def test_retryable_error_gives_up_after_max_retries(worker, community: Community) -> None:
    run = finished(start("test_flaky", community, failures=10), timeout=30)
    assert run.status == JobRun.Status.FAILED
    assert run.attempts == 4  # the first attempt plus max_retries=3
    assert run.error_type == "RetryableJobError"
    assert run.error_message.startswith("gave up after 4 attempts: upstream returned 503")


def test_non_retryable_error_fails_at_once(worker, community: Community) -> None:
    run = finished(start("test_broken", community))
    assert run.status == JobRun.Status.FAILED
    assert run.attempts == 1
    assert (run.error_type, run.error_message) == ("ValueError", "bad data in community settings")


def test_hard_time_limit_kills_and_records_timed_out(worker, community: Community) -> None:
    """A job that ignores its soft limit is killed at the hard limit; the run and lock close."""
    run = finished(start("test_stubborn", community), timeout=30)
    assert run.status == JobRun.Status.TIMED_OUT
    assert run.error_type == "TimeLimitExceeded"
    assert "hard time limit of 2s" in run.error_message
    assert RunLock(get_redis(), "test_stubborn", community.pk, ttl=1, token="x").owner() is None
    # The pool replaced the killed process: the next run goes through.
    assert finished(start("test_sleep", community)).status == JobRun.Status.SUCCEEDED
