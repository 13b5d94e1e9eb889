"""In-app alerting: failures, timeouts and missed runs, de-duplicated, to Slack and/or email.

`check_alerts(now)` runs every minute (platform task `monitoring.check_alerts`). It reads the
runs that finished since its cursor, outside the execution path, and keeps one open Alert
per (kind, job, community):

- a failed / timed-out run opens the key's alert, or adds to its count;
- the next success of that job for that community resolves every open failure/timeout alert
  of the key;
- a notice goes out when an alert opens, then at most once per ALERT_COOLDOWN_SECONDS while
  it keeps recurring, and once when it resolves (if its opening was notified).

Processing is idempotent: alert times are event times, and an event no newer than what the
key's alerts already account for is ignored, so the scan can overlap the previous one
(late commits, clock skew between workers) without counting a run twice.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

from django.conf import settings
from django.db import transaction
from django.db.models import Max, Q

from automation.connections import get_redis
from automation.models import JobRun
from communities.models import Community

from .models import Alert
from .notify import DeliveryResult, Notice, channels_configured, deliver

logger = logging.getLogger(__name__)

CURSOR_KEY = "monitoring:alerts:cursor"
# Re-read this much before the cursor: a run's finish time is stamped by its worker's clock
# before the row commits, so a run can appear "in the past" of a check that already ran.
SCAN_OVERLAP = timedelta(minutes=2)
# Without a cursor (first check, Redis flushed) look back this far.
FIRST_SCAN_LOOKBACK = timedelta(minutes=15)
# Finished runs are found through the (status, created_at) index: a run is assumed to finish
# within this long of its creation (retries and queue waits included); the stuck-run reaper
# closes anything older (see run_age_bound()).
RUN_AGE_BOUND = timedelta(days=2)
# Notices lost to a delivery failure are sent again with the next check, if this recent.
RETRY_UNSENT_WITHIN = timedelta(days=1)
_KEY_CHUNK = 200

FAILURE_KINDS = (Alert.Kind.FAILURE, Alert.Kind.TIMEOUT)
Event = Literal["opened", "repeated", "resolved"]


@dataclass
class Touch:
    """What a check did to an alert; notify() turns touches into notices."""

    alert: Alert
    event: Event
    #: Opened and resolved within the same check: one notice says both.
    recovered: bool = False


@dataclass
class CheckReport:
    since: datetime
    until: datetime
    scanned: int = 0
    touches: list[Touch] = field(default_factory=list)
    notices: list[Notice] = field(default_factory=list)
    delivery: DeliveryResult | None = None

    def count(self, event: Event) -> int:
        return sum(t.event == event for t in self.touches)


# --- the shared open / repeat / resolve operations ---------------------------------------


def open_or_repeat(kind: str, job_name: str, community_id: int | None, *, at: datetime,
                   message: str, run_id: int | None = None, increment: int = 1,
                   existing: Alert | None = None) -> Touch:
    """Open the key's alert, or add `increment` occurrences to the open one."""
    if existing is None:
        existing = Alert.objects.filter(
            fingerprint=Alert.key(kind, job_name, community_id), resolved_at__isnull=True
        ).first()
    if existing is None:
        alert = Alert.objects.create(
            kind=kind, job_name=job_name, community_id=community_id,
            fingerprint=Alert.key(kind, job_name, community_id), first_seen=at, last_seen=at,
            count=increment, last_message=message[:4000], last_run_id=run_id,
        )
        return Touch(alert, "opened")
    existing.count += increment
    existing.last_seen = max(existing.last_seen, at)
    existing.last_message = message[:4000]
    existing.last_run_id = run_id if run_id is not None else existing.last_run_id
    existing.save(update_fields=["count", "last_seen", "last_message", "last_run_id"])
    return Touch(existing, "repeated")


def resolve(alert: Alert, at: datetime) -> Touch:
    alert.resolved_at = at
    alert.save(update_fields=["resolved_at"])
    return Touch(alert, "resolved")


# --- notices -----------------------------------------------------------------------------


def _describe(alert: Alert, event: Event, recovered: bool) -> str:
    if event == "resolved":
        if alert.kind == Alert.Kind.MISSED:
            return f"runs on schedule again ({alert.count} slot(s) had been missed)"
        return (f"succeeded again at {alert.resolved_at:%Y-%m-%d %H:%M} UTC after "
                f"{alert.count} failed run(s)")
    if alert.kind == Alert.Kind.MISSED:
        text = f"missed: scheduler not running? {alert.count} slot(s) without a run; " \
               f"{alert.last_message}"
    else:
        noun = "failed" if alert.kind == Alert.Kind.FAILURE else "timed-out"
        text = f"{alert.count} {noun} run(s) in a row; last (run {alert.last_run_id}): " \
               f"{alert.last_message}"
    if recovered:
        text += " — succeeded again since"
    return text[:1500]


def notify(touches: Iterable[Touch], now: datetime) -> tuple[list[Notice], DeliveryResult | None]:
    """Send the notices these touches call for (plus earlier unsent ones), as one digest."""
    if not channels_configured():
        return [], None
    cooldown = timedelta(seconds=settings.ALERT_COOLDOWN_SECONDS)
    chosen: dict[int, tuple[Alert, Event, bool]] = {}
    for touch in touches:
        alert = touch.alert
        if touch.event == "opened":
            chosen[alert.pk] = (alert, "opened", touch.recovered)
        elif touch.event == "repeated":
            if alert.last_notified_at is None or now - alert.last_notified_at >= cooldown:
                chosen[alert.pk] = (alert, "repeated", False)
        elif alert.last_notified_at is not None and alert.resolved_notified_at is None:
            chosen[alert.pk] = (alert, "resolved", False)
    # Notices a failed delivery left unsent: open alerts never notified, resolutions of
    # notified alerts not yet told.
    recent = now - RETRY_UNSENT_WITHIN
    unsent = Alert.objects.filter(
        Q(resolved_at__isnull=True, last_notified_at__isnull=True)
        | Q(resolved_at__isnull=False, last_notified_at__isnull=False,
            resolved_notified_at__isnull=True),
        last_seen__gte=recent,
    ).exclude(pk__in=list(chosen))
    for alert in unsent:
        chosen[alert.pk] = (alert, "opened" if alert.is_open else "resolved", False)
    if not chosen:
        return [], None

    slugs = dict(Community.objects.filter(
        pk__in={a.community_id for a, _, _ in chosen.values() if a.community_id}
    ).values_list("pk", "slug"))
    order = {"opened": 0, "repeated": 1, "resolved": 2}
    entries = sorted(chosen.values(), key=lambda e: (order[e[1]], e[0].job_name, e[0].pk))
    notices = [
        Notice(event, alert.kind, alert.job_name, slugs.get(alert.community_id, ""),
               alert.count, _describe(alert, event, recovered))
        for alert, event, recovered in entries
    ]
    result = deliver(notices)
    if result.delivered:
        for alert, event, recovered in entries:
            fields = ["last_notified_at", "notifications_sent"]
            alert.notifications_sent += 1
            if event != "resolved":
                alert.last_notified_at = now
            if event == "resolved" or recovered:
                alert.last_notified_at = alert.last_notified_at or now
                alert.resolved_notified_at = now
                fields.append("resolved_notified_at")
            alert.save(update_fields=fields)
    return notices, result


# --- the check ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Run:
    pk: int
    job_name: str
    community_id: int | None
    status: str
    finished_at: datetime
    error: str = ""


def run_age_bound() -> timedelta:
    """How long after its creation a run can finish: the reaper closes queued runs late."""
    reaped = timedelta(seconds=settings.AUTOMATION_REAPER_QUEUED_SECONDS) + timedelta(days=1)
    return max(RUN_AGE_BOUND, reaped)


def _read_cursor(now: datetime) -> datetime:
    raw = get_redis().get(CURSOR_KEY)
    if raw is None:
        return now - FIRST_SCAN_LOOKBACK
    cursor = datetime.fromtimestamp(float(raw), tz=UTC)
    return min(cursor, now)


def _key_filter(keys: Iterable[tuple[str, int | None]], thresholds: dict) -> Q:
    bound = run_age_bound()
    query = Q()
    for job_name, community_id in keys:
        since = thresholds[(job_name, community_id)]
        part = Q(job_name=job_name, finished_at__gt=since,
                 scheduled_for__gte=since - bound)
        part &= (Q(community_id=community_id) if community_id is not None
                 else Q(community__isnull=True))
        query |= part
    return query


def _successes(thresholds: dict[tuple[str, int | None], datetime],
               now: datetime) -> list[_Run]:
    runs: list[_Run] = []
    keys = list(thresholds)
    for start in range(0, len(keys), _KEY_CHUNK):
        chunk = keys[start:start + _KEY_CHUNK]
        rows = JobRun.objects.filter(
            _key_filter(chunk, thresholds), status=JobRun.Status.SUCCEEDED, finished_at__lte=now
        ).order_by().values_list("pk", "job_name", "community_id", "finished_at")
        runs.extend(_Run(pk, job, cid, JobRun.Status.SUCCEEDED, at) for pk, job, cid, at in rows)
    return runs


def check_alerts(now: datetime) -> CheckReport:
    """Turn the runs that finished since the last check into alert changes and notices."""
    since = _read_cursor(now) - SCAN_OVERLAP
    report = CheckReport(since=since, until=now)
    failed = [
        _Run(pk, job, cid, status, at, f"{etype}: {message}" if etype else message)
        for pk, job, cid, status, at, etype, message in JobRun.objects.filter(
            status__in=(JobRun.Status.FAILED, JobRun.Status.TIMED_OUT),
            created_at__gte=since - run_age_bound(), finished_at__gt=since, finished_at__lte=now,
        ).order_by().values_list("pk", "job_name", "community_id", "status", "finished_at",
                      "error_type", "error_message")
    ]
    report.scanned = len(failed)

    open_alerts: dict[tuple[str, int | None], dict[str, Alert]] = defaultdict(dict)
    for alert in Alert.objects.filter(resolved_at__isnull=True, kind__in=FAILURE_KINDS):
        open_alerts[(alert.job_name, alert.community_id)][alert.kind] = alert
    new_keys = {(r.job_name, r.community_id) for r in failed} - set(open_alerts)

    # Per key, the newest event its alerts already account for.
    watermark: dict[tuple[str, int | None], datetime] = {
        key: max(a.last_seen for a in kinds.values()) for key, kinds in open_alerts.items()
    }
    fingerprints = {Alert.key(kind, job, cid): (job, cid) for job, cid in new_keys
                    for kind in FAILURE_KINDS}
    for start in range(0, len(fingerprints), 1000):
        chunk = list(fingerprints)[start:start + 1000]
        for fingerprint, resolved in Alert.objects.filter(
            fingerprint__in=chunk, resolved_at__isnull=False
        ).values("fingerprint").annotate(at=Max("resolved_at")).values_list(
            "fingerprint", "at"
        ):
            key = fingerprints[fingerprint]
            watermark[key] = max(resolved, watermark.get(key, resolved))

    by_key: dict[tuple[str, int | None], list[_Run]] = defaultdict(list)
    for run in failed:
        by_key[(run.job_name, run.community_id)].append(run)
    thresholds = {}
    for key in set(open_alerts) | set(by_key):
        candidates = [watermark[key]] if key in watermark else []
        candidates += [min(r.finished_at for r in by_key[key])] if key in by_key else []
        thresholds[key] = min(candidates)
    for run in _successes(thresholds, now):
        by_key[(run.job_name, run.community_id)].append(run)

    with transaction.atomic():
        for key, runs in by_key.items():
            report.touches.extend(_apply(key, runs, open_alerts.get(key, {}),
                                         watermark.get(key)))
    report.notices, report.delivery = notify(report.touches, now)
    get_redis().set(CURSOR_KEY, repr(now.timestamp()))
    return report


def _apply(key: tuple[str, int | None], runs: list[_Run], open_kinds: dict[str, Alert],
           watermark: datetime | None) -> list[Touch]:
    """Play one key's events in finish order against its open alerts."""
    job_name, community_id = key
    touches: dict[int, Touch] = {}
    open_kinds = dict(open_kinds)
    for run in sorted(runs, key=lambda r: (r.finished_at, r.pk)):
        if watermark is not None and run.finished_at <= watermark:
            continue  # already accounted for by an earlier check
        watermark = run.finished_at
        if run.status == JobRun.Status.SUCCEEDED:
            for alert in open_kinds.values():
                touch = resolve(alert, run.finished_at)
                earlier = touches.get(alert.pk)
                if earlier is not None and earlier.event == "opened":
                    earlier.recovered = True  # one notice: failed, then recovered
                else:
                    touches[alert.pk] = touch
            open_kinds.clear()
            continue
        kind = Alert.Kind.TIMEOUT if run.status == JobRun.Status.TIMED_OUT else Alert.Kind.FAILURE
        touch = open_or_repeat(kind, job_name, community_id, at=run.finished_at,
                               message=run.error or run.status, run_id=run.pk,
                               existing=open_kinds.get(kind))
        open_kinds[kind] = touch.alert
        earlier = touches.get(touch.alert.pk)
        if earlier is None or earlier.event != "opened":
            touches[touch.alert.pk] = touch
    return list(touches.values())
