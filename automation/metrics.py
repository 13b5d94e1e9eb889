"""Prometheus metrics of job runs, shared by every worker process (multiprocess mode).

Labels are job and queue only: a label per community would multiply series by the
number of tenants. Per-community history lives in JobRun.
"""

from __future__ import annotations

import os
from pathlib import Path

from django.conf import settings
from django.utils.module_loading import import_string
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)

# prometheus-client picks single- or multi-process storage when first imported, and the
# celery command imports it before Django settings export PROMETHEUS_MULTIPROC_DIR. Pick
# again now that the variable is set, before any metric of ours is created.
values.ValueClass = values.get_value_class()

JOB_DURATION = Histogram(
    "automation_job_duration_seconds",
    "Wall time of finished job runs.",
    ["job", "queue", "status"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 1800, 3600),
)
JOB_RUNS = Counter(
    "automation_job_runs_total", "Finished job runs by outcome.", ["job", "queue", "status"]
)
JOB_FAILURES = Counter(
    "automation_job_failures_total", "Job runs that failed or timed out.", ["job", "queue"]
)
JOB_LAST_SUCCESS = Gauge(
    "automation_job_last_success_timestamp_seconds",
    "Unix time of the last successful run of the job (any community).",
    ["job", "queue"],
    multiprocess_mode="max",
)
JOB_RETRIES = Counter(
    "automation_job_retries_total", "Attempts scheduled again after a retryable error.",
    ["job", "queue"],
)
JOB_ITEMS = Counter(
    "automation_job_items_total",
    "Counts reported in the summaries of successful runs (sent, skipped, charged, ...).",
    ["job", "queue", "item"],
)


def observe_summary(job: str, queue: str, summary: dict) -> None:
    """Add each top-level count of a run's summary to its counter.

    Only non-negative integers count: rates and latencies do not add up across runs (derive
    rates from counts in PromQL), and nested details stay in the run record, so the series
    per job are bounded by the keys its summary declares.
    """
    for item, value in summary.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            continue
        JOB_ITEMS.labels(job, queue, str(item)[:64]).inc(value)


def observe_finished_run(job: str, queue: str, status: str, duration: float | None,
                         finished_timestamp: float) -> None:
    JOB_RUNS.labels(job, queue, status).inc()
    if duration is not None:
        JOB_DURATION.labels(job, queue, status).observe(duration)
    if status in ("failed", "timed_out"):
        JOB_FAILURES.labels(job, queue).inc()
    if status == "succeeded":
        JOB_LAST_SUCCESS.labels(job, queue).set(finished_timestamp)


def observe_retry(job: str, queue: str) -> None:
    JOB_RETRIES.labels(job, queue).inc()


class _AllHostsCollector:
    """Merges the sample files of every process on every host under METRICS_DIR."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def collect(self):
        files = sorted(str(path) for path in self.root.glob("**/*.db"))
        return multiprocess.MultiProcessCollector.merge(files, accumulate=True)


def render_latest() -> tuple[bytes, str]:
    """All processes' samples, merged, in the Prometheus text format."""
    registry = CollectorRegistry()
    registry.register(_AllHostsCollector(Path(settings.METRICS_DIR)))
    # Figures read at scrape time (queue depth, beat's tick, ...), e.g. the monitoring app's.
    for path in getattr(settings, "METRICS_EXTRA_COLLECTORS", ()):
        registry.register(import_string(path)())
    return generate_latest(registry), CONTENT_TYPE_LATEST


def mark_process_dead(pid: int) -> None:
    """Drop a dead worker process's live gauges (its counters stay summed)."""
    multiprocess.mark_process_dead(pid, os.environ["PROMETHEUS_MULTIPROC_DIR"])
