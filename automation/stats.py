"""Figures of runs for the dashboard and the API, aggregated in the database.

Success rate = succeeded / (succeeded + failed + timed out): skipped runs (disabled,
already done, already running) say nothing about whether the job works.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import Avg, Count, Max, Min, Q, QuerySet
from django.db.models.functions import TruncDay, TruncHour

from communities.models import Community

from .cron import describe_cron, next_fire_time
from .models import CommunityAutomationSetting, JobRun
from .registry import JobSpec, all_jobs

S = JobRun.Status
FAILED = (S.FAILED, S.TIMED_OUT)
GREEN, YELLOW = 95.0, 80.0


def _counts() -> dict[str, Any]:
    return {
        "runs": Count("id"),
        "succeeded": Count("id", filter=Q(status=S.SUCCEEDED)),
        "failed": Count("id", filter=Q(status__in=FAILED)),
        "skipped": Count("id", filter=Q(status=S.SKIPPED)),
        "avg_duration": Avg("duration_seconds", filter=Q(status=S.SUCCEEDED)),
    }


def success_rate(succeeded: int, failed: int) -> float | None:
    decided = succeeded + failed
    return round(100.0 * succeeded / decided, 1) if decided else None


def health(rate: float | None) -> str:
    """green ≥ 95 %, yellow 80-95 %, red < 80 %; grey without decided runs."""
    if rate is None:
        return "grey"
    return "green" if rate >= GREEN else "yellow" if rate >= YELLOW else "red"


def runs_in(since: datetime, until: datetime | None = None, *, job_name: str | None = None,
            community: Community | None = None) -> QuerySet[JobRun]:
    runs = JobRun.objects.filter(created_at__gte=since)
    if until is not None:
        runs = runs.filter(created_at__lt=until)
    if job_name:
        runs = runs.filter(job_name=job_name)
    if community is not None:
        runs = runs.filter(community=community)
    return runs


def visible_jobs() -> list[JobSpec]:
    return [spec for spec in all_jobs() if spec.category != "testing"] or all_jobs()


def summary(since: datetime, until: datetime | None = None,
            community: Community | None = None) -> dict[str, Any]:
    settings = CommunityAutomationSetting.objects.all()
    if community is not None:
        settings = settings.filter(community=community)
    toggles = settings.aggregate(n_enabled=Count("id", filter=Q(enabled=True)),
                                 n_disabled=Count("id", filter=Q(enabled=False)))
    figures = runs_in(since, until, community=community).aggregate(**_counts())
    running = JobRun.objects.filter(status=S.RUNNING)
    if community is not None:
        running = running.filter(community=community)
    rate = success_rate(figures["succeeded"], figures["failed"])
    return {
        "jobs": len(visible_jobs()),
        "settings_enabled": toggles["n_enabled"],
        "settings_disabled": toggles["n_disabled"],
        "running": running.count(),
        "runs": figures["runs"],
        "succeeded": figures["succeeded"],
        "failures": figures["failed"],
        "skipped": figures["skipped"],
        "success_rate": rate,
        "health": health(rate),
    }


def next_run_of(job: JobSpec, now: datetime) -> datetime | None:
    """The job's next fire time over all communities where it is on.

    Computed per distinct (cron, timezone) pair, of which there are a handful however
    many communities share them.
    """
    if not job.scheduled:
        return None
    pairs = (CommunityAutomationSetting.objects
             .filter(job_name=job.name, enabled=True, community__is_active=True)
             .values_list("cron_override", "community__timezone").distinct())
    fires = [next_fire_time(cron or job.default_cron, tz, now) for cron, tz in pairs]
    return min(fires) if fires else None


def job_rows(now: datetime, since: datetime, *, category: str | None = None,
             only: JobSpec | None = None) -> list[dict[str, Any]]:
    """One row per job: schedule, toggles, next and last run, success rate, duration.

    `only` gives the row of that one job, hidden (testing) jobs included.
    """
    jobs = [only] if only is not None else [
        spec for spec in visible_jobs() if not category or spec.category == category]
    names = [spec.name for spec in jobs]
    per_job = {row["job_name"]: row for row in runs_in(since).filter(job_name__in=names)
               .values("job_name").annotate(**_counts())}
    toggles = {row["job_name"]: row for row in CommunityAutomationSetting.objects
               .filter(job_name__in=names).values("job_name")
               .annotate(n_enabled=Count("id", filter=Q(enabled=True)), total=Count("id"))}
    last = {}
    for name in names:  # one indexed query each (jobrun_job_time), not a scan
        last[name] = (JobRun.objects.filter(job_name=name).exclude(status=S.QUEUED)
                      .order_by("-created_at").values("id", "status", "finished_at",
                                                      "created_at").first())
    running = dict(JobRun.objects.filter(status=S.RUNNING, job_name__in=names)
                   .values_list("job_name").annotate(n=Count("id")))
    rows = []
    for spec in jobs:
        figures = per_job.get(spec.name, {"runs": 0, "succeeded": 0, "failed": 0,
                                          "skipped": 0, "avg_duration": None})
        rate = success_rate(figures["succeeded"], figures["failed"])
        toggle = toggles.get(spec.name, {"n_enabled": 0, "total": 0})
        rows.append({
            "name": spec.name,
            "description": spec.description,
            "category": spec.category,
            "queue": spec.queue,
            "cron": spec.default_cron,
            "schedule": describe_cron(spec.default_cron) if spec.default_cron else "on demand",
            "enabled": toggle["n_enabled"],
            "communities": toggle["total"],
            "next_run": next_run_of(spec, now),
            "last_run": last[spec.name],
            "running": running.get(spec.name, 0),
            "runs": figures["runs"],
            "succeeded": figures["succeeded"],
            "failures": figures["failed"],
            "success_rate": rate,
            "health": health(rate),
            "avg_duration": figures["avg_duration"],
        })
    return rows


def timeline_unit(since: datetime, until: datetime) -> str:
    """The width of a history timeline's bars: "hour" up to three days, "day" beyond —
    a chart of a few dozen bars either way."""
    return "hour" if (until - since).total_seconds() <= 3 * 86400 else "day"


@dataclass(frozen=True)
class History:
    stats: dict[str, Any]
    timeline: list[dict[str, Any]]
    runs: list[JobRun]


def job_history(job_name: str, since: datetime, until: datetime, *,
                community: Community | None = None, limit: int = 50) -> History:
    runs = runs_in(since, until, job_name=job_name, community=community)
    figures = runs.aggregate(
        **_counts(),
        min_duration=Min("duration_seconds", filter=Q(status=S.SUCCEEDED)),
        max_duration=Max("duration_seconds", filter=Q(status=S.SUCCEEDED)),
        last_success=Max("finished_at", filter=Q(status=S.SUCCEEDED)),
        last_failure=Max("finished_at", filter=Q(status__in=FAILED)),
    )
    figures["success_rate"] = success_rate(figures["succeeded"], figures["failed"])
    figures["health"] = health(figures["success_rate"])
    bucket = TruncHour if timeline_unit(since, until) == "hour" else TruncDay
    buckets: dict[datetime, dict[str, Any]] = {}
    for row in (runs.annotate(bucket=bucket("created_at")).values("bucket", "status")
                .annotate(n=Count("id")).order_by("bucket")):
        entry = buckets.setdefault(row["bucket"], {"bucket": row["bucket"], "succeeded": 0,
                                                   "failed": 0, "skipped": 0, "other": 0})
        status = row["status"]
        key = ("succeeded" if status == S.SUCCEEDED else "failed" if status in FAILED
               else "skipped" if status == S.SKIPPED else "other")
        entry[key] += row["n"]
    recent = list(runs.select_related("community").order_by("-created_at")[:limit])
    return History(stats=figures, timeline=list(buckets.values()), runs=recent)


def running_now(community: Community | None = None) -> list[JobRun]:
    runs = JobRun.objects.filter(status=S.RUNNING).select_related("community")
    if community is not None:
        runs = runs.filter(community=community)
    return list(runs.order_by("started_at")[:100])
