"""Stuck-run reaper: runs whose worker died are closed with a clear reason."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from automation.connections import get_redis
from automation.locks import lock_key
from automation.models import JobRun
from automation.registry import get_job
from monitoring.reaper import reap_stuck_runs

from .conftest import make_run


def test_stale_running_runs_fail_fresh_and_locked_ones_stay(db, community, other_community,
                                                           settings) -> None:
    settings.AUTOMATION_REAPER_MARGIN_SECONDS = 60
    now = timezone.now()
    limit = get_job("test_sleep").time_limit + 60  # 6 s hard limit + margin
    stale = make_run(community, "test_sleep", "running", finished=now,
                     started=now - timedelta(seconds=limit + 1), attempts=1,
                     worker_hostname="automation@host-a")
    fresh = make_run(other_community, "test_sleep", "running", finished=now,
                     started=now - timedelta(seconds=limit - 5), attempts=1)
    # Started long ago, but its current attempt holds the lock: a retry still running.
    retried = make_run(other_community, "test_broken", "running", finished=now,
                       started=now - timedelta(hours=2), attempts=3)
    get_redis().set(lock_key("test_broken", other_community.pk), f"run:{retried.pk}", ex=60)

    report = reap_stuck_runs(now)
    assert report.worker_lost == [stale.pk] and report.still_locked == [retried.pk]
    stale.refresh_from_db()
    assert (stale.status, stale.error_type, stale.finished_at) == ("failed", "WorkerLost", now)
    assert stale.error_message.startswith(f"worker lost: no result within {limit} s of start")
    assert "automation@host-a" in stale.error_message
    assert stale.duration_seconds == limit + 1
    for run in (fresh, retried):
        run.refresh_from_db()
        assert run.status == "running" and run.finished_at is None
    # The lock of the retried run is not touched.
    assert get_redis().get(lock_key("test_broken", other_community.pk)) == \
        f"run:{retried.pk}".encode()

    assert reap_stuck_runs(now).worker_lost == []  # idempotent


def test_old_queued_runs_never_picked_up_fail(db, community, settings) -> None:
    settings.AUTOMATION_REAPER_QUEUED_SECONDS = 3600
    now = timezone.now()
    old = make_run(community, "test_flaky", "queued", finished=now, trigger="manual",
                   scheduled_for=now - timedelta(seconds=3601))
    recent = make_run(community, "test_flaky", "queued", finished=now, trigger="manual",
                      scheduled_for=now - timedelta(seconds=3000))
    # Queued again between attempts (it started once): not "never picked up".
    retrying = make_run(community, "test_flaky", "queued", finished=now,
                        started=now - timedelta(hours=2), attempts=1)

    report = reap_stuck_runs(now)
    assert report.never_picked_up == [old.pk]
    old.refresh_from_db()
    assert (old.status, old.error_type) == ("failed", "NeverPickedUp")
    assert old.error_message == ("never picked up: no worker started this run within 3600 s "
                                 "of it being queued")
    for run in (recent, retrying):
        run.refresh_from_db()
        assert run.status == JobRun.Status.QUEUED
