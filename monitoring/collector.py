"""Figures /metrics computes at scrape time (no background thread): broker, beat, registry.

Each section is read with one cheap round trip (a Redis pipeline, or one grouped query on a
small or indexed set); the settings-derived part is cached briefly per process. A section
that fails is reported by `automation_metrics_collector_up{section} 0` instead of failing
the whole scrape.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from functools import lru_cache

from croniter import croniter
from django.conf import settings
from django.db.models import Count, Sum
from prometheus_client.core import GaugeMetricFamily, Metric

from automation.models import CommunityAutomationSetting, JobRun
from automation.registry import all_jobs

from .broker import is_amqp_broker, is_redis_broker, queue_states
from .heartbeat import read_timestamps
from .models import Alert, MissedRun

logger = logging.getLogger(__name__)

SETTINGS_CACHE_SECONDS = 60.0
_PERIOD_REFERENCE = datetime(2024, 1, 1, tzinfo=UTC)  # a leap year: Feb 29 crons have a gap
_PERIOD_SAMPLES = 2000
_PERIOD_HORIZON = timedelta(days=8 * 366)


@lru_cache(maxsize=512)
def cron_period_seconds(expression: str) -> float:
    """The longest gap between consecutive fire times of a cron (a weekday cron: Fri→Mon).

    Sampled over up to 2000 fire times or 8 years from a fixed date, in UTC; a timezone's
    DST shift moves a gap by an hour at most, well inside the alert's factor of two.
    """
    iterator = croniter(expression, _PERIOD_REFERENCE)
    previous = iterator.get_next(datetime)
    longest = 0.0
    for _ in range(_PERIOD_SAMPLES):
        current = iterator.get_next(datetime)
        longest = max(longest, (current - previous).total_seconds())
        if current - _PERIOD_REFERENCE > _PERIOD_HORIZON:
            break
        previous = current
    return longest


def expected_period_seconds(default_cron: str, effective_crons: Iterable[str]) -> float | None:
    """The job's platform-wide expected period: the longest gap of its default schedule.

    A community's override never moves it: a rare one (Feb 29) would silence the "not
    succeeded" alert for every community, a frequent one (every minute) would page for one
    tenant's schedule. The watchdog checks each community by its own cron instead. None
    (no series) when no enabled setting runs at least as often as the default: then nobody
    is due within the period and the alert could only page falsely.
    """
    period = cron_period_seconds(default_cron)
    crons = set(effective_crons)
    if default_cron in crons or any(cron_period_seconds(c) <= period for c in crons):
        return period
    return None


class PlatformCollector:
    """A prometheus-client custom collector; see docs/monitoring.md for every series."""

    _settings_cache: tuple[float, dict] | None = None

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("automation_metrics_collector_up",
                               "1 when the section's figures could be read at this scrape.",
                               labels=["section"])
        for section, method in (("broker", self._broker), ("beat", self._beat),
                                ("jobs", self._jobs), ("runs", self._runs)):
            try:
                families = list(method())
            except Exception:
                logger.warning("metrics: section %s failed", section, exc_info=True)
                up.add_metric([section], 0)
                continue
            up.add_metric([section], 1)
            yield from families
        yield up

    # -- broker ---------------------------------------------------------------------------

    def _broker(self) -> Iterator[Metric]:
        if not (is_redis_broker() or is_amqp_broker()):
            return
        now = time.time()
        states, unacked = queue_states(list(settings.MONITORING_QUEUES))
        depth = GaugeMetricFamily(
            "automation_queue_depth",
            "Messages waiting in the broker queue (all priority sub-queues).", labels=["queue"])
        for state in states:
            depth.add_metric([state.queue], state.depth)
        yield depth
        if not is_redis_broker():
            # RabbitMQ cannot show a waiting message without taking it, nor count unacked
            # messages on a passive look (docs/broker.md): depth only.
            return
        age = GaugeMetricFamily(
            "automation_queue_oldest_message_age_seconds",
            "Age of the oldest waiting message (by its sent-at header); 0 when none waits.",
            labels=["queue"])
        for state in states:
            oldest = state.oldest_sent_at.timestamp() if state.oldest_sent_at else now
            age.add_metric([state.queue], max(0.0, now - oldest))
        yield age
        yield GaugeMetricFamily(
            "automation_broker_unacked_messages",
            "Messages taken by workers and not yet acknowledged (running or reserved).",
            value=unacked)

    # -- beat -----------------------------------------------------------------------------

    def _beat(self) -> Iterator[Metric]:
        tick, processed = read_timestamps()
        yield GaugeMetricFamily(
            "automation_beat_last_tick_timestamp_seconds",
            "Unix time beat last published its heartbeat (every 30 s); 0: never seen.",
            value=tick or 0.0)
        yield GaugeMetricFamily(
            "automation_beat_heartbeat_processed_timestamp_seconds",
            "Unix time a worker last ran beat's heartbeat task; 0: never seen.",
            value=processed or 0.0)

    # -- jobs (registry and settings) ------------------------------------------------------

    def _settings_summary(self) -> dict:
        cached = PlatformCollector._settings_cache
        if cached is not None and time.monotonic() - cached[0] < SETTINGS_CACHE_SECONDS:
            return cached[1]
        enabled: dict[str, int] = defaultdict(int)
        crons: dict[str, set[str]] = defaultdict(set)
        rows = CommunityAutomationSetting.objects.filter(
            enabled=True, community__is_active=True
        ).values("job_name", "cron_override").annotate(n=Count("id")).values_list(
            "job_name", "cron_override", "n")
        for job_name, override, n in rows:
            enabled[job_name] += n
            crons[job_name].add(override)
        summary = {"enabled": dict(enabled), "crons": dict(crons)}
        PlatformCollector._settings_cache = (time.monotonic(), summary)
        return summary

    def _jobs(self) -> Iterator[Metric]:
        summary = self._settings_summary()
        streaks: dict[tuple[str, int | None], int] = defaultdict(int)
        for job_name, community_id, total in Alert.objects.filter(
            resolved_at__isnull=True, kind__in=(Alert.Kind.FAILURE, Alert.Kind.TIMEOUT)
        ).values("job_name", "community_id").annotate(total=Sum("count")).values_list(
            "job_name", "community_id", "total"
        ):
            streaks[(job_name, community_id)] = total
        longest: dict[str, int] = defaultdict(int)
        failing: dict[str, int] = defaultdict(int)
        for (job_name, _), total in streaks.items():
            longest[job_name] = max(longest[job_name], total)
            failing[job_name] += 1

        labels = ["job", "queue"]
        period = GaugeMetricFamily(
            "automation_job_expected_period_seconds",
            "Longest gap between fire times of the job's default schedule (overrides do not "
            "move it); only for scheduled jobs enabled in an active community that runs at "
            "least that often.", labels=labels)
        communities = GaugeMetricFamily(
            "automation_job_enabled_communities",
            "Active communities with the job enabled.", labels=labels)
        streak = GaugeMetricFamily(
            "automation_job_consecutive_failures",
            "Longest current run of failed/timed-out runs of the job in any one community "
            "(reset by a success; from the in-app alerts, updated every minute).",
            labels=labels)
        failing_communities = GaugeMetricFamily(
            "automation_job_failing_communities",
            "Communities whose latest runs of the job failed (open failure alerts).",
            labels=labels)
        for spec in all_jobs():
            values = [spec.name, spec.queue]
            count = summary["enabled"].get(spec.name, 0)
            communities.add_metric(values, count)
            streak.add_metric(values, longest.get(spec.name, 0))
            failing_communities.add_metric(values, failing.get(spec.name, 0))
            if spec.scheduled and count:
                expected = expected_period_seconds(
                    spec.default_cron,
                    (override or spec.default_cron
                     for override in summary["crons"].get(spec.name, ())))
                if expected is not None:
                    period.add_metric(values, expected)
        yield period
        yield communities
        yield streak
        yield failing_communities

    # -- runs and alerts ------------------------------------------------------------------

    def _runs(self) -> Iterator[Metric]:
        active = GaugeMetricFamily(
            "automation_runs_active", "Runs queued or running now (all jobs).",
            labels=["status"])
        counts = dict(JobRun.objects.filter(
            status__in=(JobRun.Status.QUEUED, JobRun.Status.RUNNING)
        ).values("status").annotate(n=Count("id")).values_list("status", "n"))
        for status in (JobRun.Status.QUEUED, JobRun.Status.RUNNING):
            active.add_metric([status.value], counts.get(status, 0))
        yield active
        open_alerts = GaugeMetricFamily(
            "automation_alerts_open", "Open in-app alerts by kind.", labels=["kind"])
        by_kind = dict(Alert.objects.filter(resolved_at__isnull=True).values("kind").annotate(
            n=Count("id")).values_list("kind", "n"))
        for kind in Alert.Kind:
            open_alerts.add_metric([kind.value], by_kind.get(kind, 0))
        yield open_alerts
        since = datetime.now(tz=UTC) - timedelta(days=1)
        yield GaugeMetricFamily(
            "automation_missed_runs_last_day",
            "Scheduled slots found without a run by the watchdog in the last 24 hours.",
            value=MissedRun.objects.filter(detected_at__gte=since).count())
