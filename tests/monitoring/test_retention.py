"""Retention: old run records deleted in batches within a time budget; recent ones kept."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_celery_results.models import TaskResult

from automation.models import JobRun
from monitoring.models import Alert, MissedRun
from monitoring.retention import prune_run_history


def _runs(community, count: int, created) -> None:
    JobRun.objects.bulk_create(
        JobRun(job_name="test_sleep", community=community, trigger="schedule",
               scheduled_for=created, status="succeeded", queue="automation")
        for _ in range(count))
    JobRun.objects.filter(created_at__gte=timezone.now() - timedelta(minutes=5),
                          scheduled_for=created).update(created_at=created)


def _results(count: int, done) -> None:
    TaskResult.objects.bulk_create(
        TaskResult(task_id=f"t-{done.timestamp()}-{i}", status="SUCCESS") for i in range(count))
    TaskResult.objects.filter(task_id__startswith=f"t-{done.timestamp()}-").update(
        date_done=done)


def test_deletes_old_rows_in_batches_and_keeps_recent(db, community, settings) -> None:
    settings.AUTOMATION_RUN_RETENTION_DAYS = 90
    now = timezone.now()
    old, recent = now - timedelta(days=91), now - timedelta(days=89)
    _runs(community, 12, old)
    _runs(community, 3, recent)
    _results(7, old)
    _results(2, recent)
    MissedRun.objects.create(job_name="test_sleep", community=community, slot=old,
                             detected_at=old, action="skipped")
    Alert.objects.create(kind="failure", job_name="test_sleep", fingerprint="f:old",
                         first_seen=old, last_seen=old, resolved_at=old)
    Alert.objects.create(kind="failure", job_name="test_sleep", fingerprint="f:open",
                         first_seen=old, last_seen=old)  # still open: kept

    with CaptureQueriesContext(connection) as queries:
        report = prune_run_history(now, batch_size=5)
    deletes = [q["sql"] for q in queries if q["sql"].startswith('DELETE FROM "automation_jobrun"')]
    assert len(deletes) == 3  # 5 + 5 + 2
    assert report.complete
    assert report.deleted == {"job_runs": 12, "task_results": 7, "missed_runs": 1,
                              "resolved_alerts": 1}
    assert JobRun.objects.count() == 3
    assert TaskResult.objects.count() == 2
    assert list(Alert.objects.values_list("fingerprint", flat=True)) == ["f:open"]


def test_time_budget_stops_between_batches(db, community) -> None:
    now = timezone.now()
    _runs(community, 12, now - timedelta(days=100))
    ticks = iter([0.0, 0.0, 5.0])  # start, first batch, then past the 1 s budget
    report = prune_run_history(now, retention_days=90, batch_size=5, time_budget=1.0,
                               clock=lambda: next(ticks))
    assert not report.complete
    assert report.deleted == {"job_runs": 5}
    assert JobRun.objects.count() == 7


def test_retention_must_be_positive(db) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        prune_run_history(timezone.now(), retention_days=0)
