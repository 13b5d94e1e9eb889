"""Missed-run watchdog: scheduled slots that have no run, i.e. beat did not send them.

Every few minutes (platform task `monitoring.missed_run_watchdog`) each enabled scheduled
setting of an active, unpaused community is checked: its cron's fire times (community
timezone, automation.cron semantics) in the window are compared with JobRun.scheduled_for
of that job and community. A run records its slot as scheduled_for whatever its outcome
(skipped and failed runs count as "beat sent it"), so a slot without any run was never
delivered to a worker.

Window, per queue: from the queue's cursor (the end of the previous check, a little
overlap) — never earlier than now - lookback — to now - grace. A slot is judged only once
it is older than the grace period and older than the oldest message still waiting in its
queue (a backlog is not a miss). Per setting the window starts no earlier than the
setting's or the community's last change and the end of a pause.

Missed slots are recorded (MissedRun, once per slot) and alerted as "missed: scheduler not
running" (one de-duplicated alert per job). The job's registry `catch_up` decides what else
happens: "skip" records only; "once" enqueues one run for the latest missed slot of each
setting, with scheduled_for = that slot, so it is idempotent (execute_run skips a slot that
already succeeded).
"""

from __future__ import annotations

import bisect
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import transaction

from automation import audit
from automation.connections import get_redis
from automation.cron import next_fire_time
from automation.models import CommunityAutomationSetting, JobRun
from automation.registry import JobSpec, scheduled_jobs
from automation.runs import enqueue_run
from communities.models import Community

from . import alerts
from .broker import is_redis_broker, queue_states
from .models import Alert, MissedRun
from .notify import DeliveryResult, Notice

logger = logging.getLogger(__name__)

CURSOR_KEY = "monitoring:watchdog:checked_until:{queue}"
OVERLAP = timedelta(minutes=1)
# Workers create a run when they take its message; allow for clock skew between hosts.
CLOCK_SKEW = timedelta(minutes=5)
ACTOR = "monitoring.watchdog"
_SLOTS_IN_MESSAGE = 3
_COMMUNITIES_IN_MESSAGE = 10


@dataclass
class WatchdogReport:
    windows: dict[str, tuple[datetime, datetime]] = field(default_factory=dict)
    settings_checked: int = 0
    expected_slots: int = 0
    missed: list[MissedRun] = field(default_factory=list)
    catch_up_runs: list[JobRun] = field(default_factory=list)
    touches: list[alerts.Touch] = field(default_factory=list)
    notices: list[Notice] = field(default_factory=list)
    delivery: DeliveryResult | None = None


@dataclass
class _Setting:
    pk: int
    community_id: int
    spec: JobSpec
    cron: str
    tz: str
    not_before: datetime
    missed: list[datetime] = field(default_factory=list)


def _queue_windows(now: datetime, queues: set[str]) -> dict[str, tuple[datetime, datetime]]:
    grace = timedelta(seconds=settings.AUTOMATION_WATCHDOG_GRACE_SECONDS)
    lookback = timedelta(seconds=settings.AUTOMATION_WATCHDOG_LOOKBACK_SECONDS)
    ends = dict.fromkeys(queues, now - grace)
    if is_redis_broker():
        try:
            states, _ = queue_states(sorted(queues))
        except Exception:
            logger.warning("watchdog: cannot read the broker's queues", exc_info=True)
        else:
            for state in states:
                if state.oldest_sent_at is not None:
                    # That message may carry a slot of ours: judge only slots before it.
                    oldest = state.oldest_sent_at - timedelta(microseconds=1)
                    ends[state.queue] = min(ends[state.queue], oldest)
    redis = get_redis()
    raw = redis.mget([CURSOR_KEY.format(queue=q) for q in sorted(queues)])
    windows = {}
    for queue, cursor in zip(sorted(queues), raw, strict=True):
        start = now - lookback
        if cursor is not None:
            start = max(start, datetime.fromtimestamp(float(cursor), tz=UTC) - OVERLAP)
        if start < ends[queue]:
            windows[queue] = (start, ends[queue])
    return windows


def _fire_times(cron: str, tz: str, start: datetime, end: datetime) -> list[datetime]:
    """Fire times in (start, end], in UTC."""
    times = []
    at = start
    while True:
        at = next_fire_time(cron, tz, at)
        if at > end:
            return times
        times.append(at)


def find_missed_runs(now: datetime) -> WatchdogReport:
    """Record (and alert, and maybe catch up) the slots that have no run; see module doc."""
    report = WatchdogReport()
    specs = {spec.name: spec for spec in scheduled_jobs()}
    if not specs:
        return report
    report.windows = windows = _queue_windows(now, {spec.queue for spec in specs.values()})
    if not windows:
        return report
    low = min(start for start, _ in windows.values())
    high = max(end for _, end in windows.values())

    checked: list[_Setting] = []
    rows = CommunityAutomationSetting.objects.filter(
        enabled=True, community__is_active=True, job_name__in=list(specs),
    ).order_by().values_list("pk", "community_id", "job_name", "cron_override", "updated_at",
                             "paused_until", "community__timezone", "community__updated_at")
    for pk, community_id, job_name, override, updated, paused, tz, community_updated in rows:
        spec = specs[job_name]
        window = windows.get(spec.queue)
        if window is None:
            continue
        not_before = max(window[0], updated, community_updated, paused or window[0])
        if not_before >= window[1]:
            continue
        checked.append(_Setting(pk, community_id, spec, override or spec.default_cron, tz,
                                not_before))
    report.settings_checked = len(checked)

    ran = set(JobRun.objects.filter(
        job_name__in=list(specs), created_at__gte=low - CLOCK_SKEW,
        scheduled_for__gt=low, scheduled_for__lte=high,
    ).order_by().values_list("job_name", "community_id", "scheduled_for"))
    known = set(MissedRun.objects.filter(slot__gt=low, slot__lte=high).order_by().values_list(
        "job_name", "community_id", "slot"))

    # One fire-time list per distinct (cron, timezone): thousands of settings share a few.
    fire_times: dict[tuple[str, str], list[datetime]] = {}
    expected: dict[str, int] = defaultdict(int)
    on_time: set[str] = set()  # jobs with a slot beat sent (a caught-up slot is not one)
    newly_missed: set[str] = set()
    for item in checked:
        times = fire_times.get((item.cron, item.tz))
        if times is None:
            times = fire_times[(item.cron, item.tz)] = _fire_times(item.cron, item.tz, low, high)
        end = windows[item.spec.queue][1]
        first = bisect.bisect_right(times, item.not_before)
        last = bisect.bisect_right(times, end)
        for slot in times[first:last]:
            expected[item.spec.name] += 1
            key = (item.spec.name, item.community_id, slot)
            if key in known:
                continue  # recorded by an earlier check (and maybe caught up since)
            if key in ran:
                on_time.add(item.spec.name)
            else:
                newly_missed.add(item.spec.name)
                item.missed.append(slot)
    report.expected_slots = sum(expected.values())

    with transaction.atomic():
        _record(report, [item for item in checked if item.missed], now)
        # Beat sent a slot and missed none since the last check: the job is back on schedule.
        for job_name in on_time - newly_missed:
            alert = Alert.objects.filter(
                fingerprint=Alert.key(Alert.Kind.MISSED, job_name, None),
                resolved_at__isnull=True,
            ).first()
            if alert is not None:
                report.touches.append(alerts.resolve(alert, now))
    report.notices, report.delivery = alerts.notify(report.touches, now)
    get_redis().mset({CURSOR_KEY.format(queue=queue): repr(end.timestamp())
                      for queue, (_, end) in windows.items()})
    return report


def _record(report: WatchdogReport, missed: list[_Setting], now: datetime) -> None:
    if not missed:
        return
    communities = Community.objects.in_bulk({item.community_id for item in missed})
    rows: list[MissedRun] = []
    by_job: dict[str, list[tuple[str, _Setting]]] = defaultdict(list)
    with audit.acting_as(ACTOR):
        for item in missed:
            community = communities[item.community_id]
            action, run_id, note = MissedRun.Action.SKIPPED, None, ""
            if item.spec.catch_up == "once":
                latest = max(item.missed)
                try:
                    run = enqueue_run(item.spec, community, trigger=JobRun.Trigger.SCHEDULE,
                                      now=latest)
                except Exception as exc:  # invalid stored params, say: record, go on
                    action, note = MissedRun.Action.CATCH_UP_FAILED, f"{type(exc).__name__}: {exc}"
                    logger.warning("watchdog: catch-up of %s @ %s failed: %s",
                                   item.spec.name, community.slug, exc)
                else:
                    action, run_id = MissedRun.Action.CAUGHT_UP, run.pk
                    note = f"one run for {latest:%Y-%m-%d %H:%M} UTC"
                    report.catch_up_runs.append(run)
            rows.extend(
                MissedRun(setting_id=item.pk, job_name=item.spec.name, community=community,
                          slot=slot, detected_at=now, action=action, catch_up_run_id=run_id,
                          note=note[:500])
                for slot in sorted(item.missed)
            )
            by_job[item.spec.name].append((community.slug, item))
    MissedRun.objects.bulk_create(rows, ignore_conflicts=True)
    report.missed = rows
    for job_name, entries in sorted(by_job.items()):
        count = sum(len(item.missed) for _, item in entries)
        report.touches.append(alerts.open_or_repeat(
            Alert.Kind.MISSED, job_name, None, at=now, increment=count,
            message=_summary(entries),
        ))


def _summary(entries: list[tuple[str, _Setting]]) -> str:
    parts = []
    for slug, item in sorted(entries, key=lambda e: e[0])[:_COMMUNITIES_IN_MESSAGE]:
        slots = sorted(item.missed)
        shown = ", ".join(f"{s:%Y-%m-%d %H:%M}" for s in slots[-_SLOTS_IN_MESSAGE:])
        more = f" (+{len(slots) - _SLOTS_IN_MESSAGE} earlier)" if len(slots) > 3 else ""
        parts.append(f"{slug}: {shown}{more}")
    if len(entries) > _COMMUNITIES_IN_MESSAGE:
        parts.append(f"+{len(entries) - _COMMUNITIES_IN_MESSAGE} more communities")
    policy = entries[0][1].spec.catch_up
    action = "one catch-up run each" if policy == "once" else "not caught up (catch_up=skip)"
    return f"UTC slots {'; '.join(parts)} — {action}"
