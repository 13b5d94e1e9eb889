"""Retention of run history: JobRun and Celery TaskResult rows, in batches, on a time budget.

Each batch selects up to `batch_size` primary keys past the cutoff (an index range scan on
the time column) and deletes them in one statement and one short transaction, so neither
locks nor WAL pile up and the web keeps serving; a run that hits its time budget stops and
the next day's run continues. Monitoring's own records past the cutoff (missed slots,
resolved alerts) go with them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Model, QuerySet
from django_celery_results.models import TaskResult

from automation.models import JobRun

from .models import Alert, MissedRun

logger = logging.getLogger(__name__)


@dataclass
class PruneReport:
    cutoff: datetime
    deleted: dict[str, int] = field(default_factory=dict)
    batches: int = 0
    complete: bool = True  # False: the time budget ran out with rows left


def _delete_in_batches(queryset: QuerySet, batch_size: int, deadline: float,
                       clock: Callable[[], float], report: PruneReport, label: str) -> bool:
    """Delete the queryset's rows batch by batch; False when the deadline stopped it."""
    model: type[Model] = queryset.model
    total = 0
    while True:
        if clock() >= deadline:
            report.deleted[label] = total
            return False
        ids = list(queryset.order_by().values_list("pk", flat=True)[:batch_size])
        if not ids:
            report.deleted[label] = total
            return True
        _, per_model = model.objects.filter(pk__in=ids).delete()
        total += per_model.get(model._meta.label, 0)
        report.batches += 1


def prune_run_history(now: datetime, *, retention_days: int | None = None,
                      batch_size: int | None = None, time_budget: float | None = None,
                      clock: Callable[[], float] = time.monotonic) -> PruneReport:
    days = retention_days if retention_days is not None else settings.AUTOMATION_RUN_RETENTION_DAYS
    if days < 1:
        raise ValueError(f"retention_days must be at least 1, not {days}")
    batch_size = batch_size or settings.AUTOMATION_PRUNE_BATCH_SIZE
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, not {batch_size}")
    budget = time_budget if time_budget is not None \
        else settings.AUTOMATION_PRUNE_TIME_BUDGET_SECONDS
    cutoff = now - timedelta(days=days)
    report = PruneReport(cutoff=cutoff)
    deadline = clock() + budget
    targets = [
        ("job_runs", JobRun.objects.filter(created_at__lt=cutoff)),
        ("task_results", TaskResult.objects.filter(date_done__lt=cutoff)),
        ("missed_runs", MissedRun.objects.filter(slot__lt=cutoff)),
        ("resolved_alerts", Alert.objects.filter(resolved_at__isnull=False,
                                                 last_seen__lt=cutoff)),
    ]
    for label, queryset in targets:
        if not _delete_in_batches(queryset, batch_size, deadline, clock, report, label):
            report.complete = False
            break
    logger.info("retention: cutoff %s, deleted %s in %d batches%s", cutoff.isoformat(),
                report.deleted, report.batches, "" if report.complete else " (budget spent)")
    return report
