"""Missed-run watchdog: expected fire times vs runs, records, one alert, catch-up."""

from __future__ import annotations

import dataclasses
import time
from datetime import UTC, datetime, timedelta

from django.core import mail
from django.utils import timezone

from automation import registry
from automation.connections import get_redis
from automation.cron import next_fire_time
from automation.models import CommunityAutomationSetting, JobRun
from communities.models import Community
from config.celery import app
from monitoring.models import Alert, MissedRun
from monitoring.watchdog import find_missed_runs

from .conftest import PROBE_JOB, make_run


def _only_probe(community: Community) -> CommunityAutomationSetting:
    """Leave the probe job as the community's only enabled scheduled job."""
    CommunityAutomationSetting.objects.exclude(job_name=PROBE_JOB).update(enabled=False)
    setting, _ = CommunityAutomationSetting.objects.get_or_create(
        community=community, job_name=PROBE_JOB)
    return setting


def _slots(start: datetime, end: datetime, cron: str = "*/5 * * * *",
           tz: str = "America/New_York") -> list[datetime]:
    slots, at = [], start
    while (at := next_fire_time(cron, tz, at)) <= end:
        slots.append(at)
    return slots


def _created_at(report, at: datetime) -> None:
    """Catch-up runs are created at detection time; the tests' clock runs ahead of the DB's."""
    JobRun.objects.filter(pk__in=[r.pk for r in report.catch_up_runs]).update(created_at=at)


def test_missed_slots_are_recorded_alerted_once_and_caught_up_once(
        db, probe_job, community, alert_channels, settings,
        django_capture_on_commit_callbacks) -> None:
    setting = _only_probe(community)
    created = setting.updated_at
    now = created + timedelta(hours=1)
    grace = timedelta(seconds=settings.AUTOMATION_WATCHDOG_GRACE_SECONDS)
    slots = _slots(created, now - grace)
    assert len(slots) >= 9
    # Beat sent the first three slots (one of them failed: still "sent"), then stopped.
    for slot, status in zip(slots[:3], ["succeeded", "failed", "succeeded"], strict=False):
        make_run(community, PROBE_JOB, status, scheduled_for=slot,
                 finished=slot + timedelta(seconds=5), started=slot + timedelta(seconds=1))

    with django_capture_on_commit_callbacks() as published:
        report = find_missed_runs(now)
    missed = slots[3:]
    assert report.expected_slots == len(slots)
    assert sorted(m.slot for m in MissedRun.objects.filter(job_name=PROBE_JOB)) == missed
    assert set(MissedRun.objects.values_list("action", flat=True)) == {"caught_up"}

    # Catch-up "once": exactly one run, for the latest missed slot, as a scheduled run.
    [run] = report.catch_up_runs
    _created_at(report, now)
    assert len(published) == 1
    assert (run.trigger, run.status, run.scheduled_for) == ("schedule", "queued", missed[-1])
    assert set(MissedRun.objects.values_list("catch_up_run_id", flat=True)) == {run.pk}

    alert = Alert.objects.get(kind="missed")
    assert (alert.job_name, alert.community_id, alert.count) == (PROBE_JOB, None, len(missed))
    texts = [r.json()["text"] for r in alert_channels.requests]
    assert len(texts) == 1 and len(mail.outbox) == 1
    assert f"[NEW] missed {PROBE_JOB}: missed: scheduler not running? {len(missed)} slot(s)" \
        in texts[0]
    assert "acme: " in texts[0] and "one catch-up run each" in texts[0]
    assert f"{missed[-1]:%Y-%m-%d %H:%M}" in texts[0]

    # The same pass again (a duplicate message from beat): nothing new, nobody paged.
    with django_capture_on_commit_callbacks() as published:
        again = find_missed_runs(now)
    assert not again.missed and not again.catch_up_runs and not published
    assert len(alert_channels.requests) == 1
    assert JobRun.objects.filter(job_name=PROBE_JOB).count() == 4
    assert MissedRun.objects.count() == len(missed)

    # Beat still down five minutes on: only the new slot, one more catch-up, no page
    # (cooldown), the alert's count grows.
    with django_capture_on_commit_callbacks() as published:
        again = find_missed_runs(now + timedelta(minutes=5))
    [new] = _slots(now - grace, now + timedelta(minutes=5) - grace)
    assert [m.slot for m in again.missed] == [new] and len(published) == 1
    assert again.catch_up_runs[0].scheduled_for == new
    _created_at(again, now + timedelta(minutes=5))
    assert len(alert_channels.requests) == 1
    alert.refresh_from_db()
    assert alert.count == len(missed) + 1
    now += timedelta(minutes=5)

    # Beat is back: the next slots have runs, so the alert resolves (one notice).
    later = now + timedelta(minutes=30)
    for slot in _slots(now - grace, later - grace):
        make_run(community, PROBE_JOB, "succeeded", scheduled_for=slot,
                 finished=slot + timedelta(seconds=5), started=slot + timedelta(seconds=1))
    report = find_missed_runs(later)
    assert not report.missed and report.expected_slots >= 5
    alert.refresh_from_db()
    assert alert.resolved_at == later
    texts = [r.json()["text"] for r in alert_channels.requests]
    assert len(texts) == 2 and texts[1].startswith(f"*[automation] [RESOLVED] missed {PROBE_JOB}")


def test_skip_policy_records_only(db, community, settings,
                                  django_capture_on_commit_callbacks) -> None:
    settings.ALERT_SLACK_WEBHOOK_URL, settings.ALERT_EMAILS = "", []
    CommunityAutomationSetting.objects.exclude(job_name="test_sleep").update(enabled=False)
    setting = CommunityAutomationSetting.objects.get(community=community, job_name="test_sleep")
    now = setting.updated_at + timedelta(minutes=40)
    with django_capture_on_commit_callbacks() as published:
        report = find_missed_runs(now)
    assert report.missed and not report.catch_up_runs and not published
    assert set(MissedRun.objects.values_list("action", flat=True)) == {"skipped"}
    assert JobRun.objects.count() == 0
    assert Alert.objects.get(kind="missed").job_name == "test_sleep"


def test_not_expected_paused_disabled_inactive_or_before_a_change(
        db, probe_job, community, other_community) -> None:
    t0 = timezone.now().replace(second=0, microsecond=0)
    paused_then = _only_probe(community)
    inactive = _only_probe(other_community)
    paused_now = _only_probe(Community.objects.create(name="P", slug="p", timezone="UTC"))
    changed = _only_probe(Community.objects.create(name="C", slug="c", timezone="UTC"))
    old = t0 - timedelta(hours=3)
    Community.objects.update(updated_at=old)
    CommunityAutomationSetting.objects.update(updated_at=old)
    CommunityAutomationSetting.objects.filter(pk=paused_then.pk).update(
        paused_until=t0 - timedelta(hours=1))
    CommunityAutomationSetting.objects.filter(pk=paused_now.pk).update(
        paused_until=t0 + timedelta(days=1))
    Community.objects.filter(pk=other_community.pk).update(is_active=False)
    CommunityAutomationSetting.objects.filter(pk=changed.pk).update(updated_at=t0)
    assert inactive.pk

    now = t0 + timedelta(minutes=30)
    report = find_missed_runs(now)
    end = now - timedelta(minutes=10)
    assert report.settings_checked == 2
    assert sorted((m.community.slug, m.slot) for m in report.missed) == sorted(
        [("acme", slot) for slot in _slots(t0 - timedelta(hours=1), end)]
        + [("c", slot) for slot in _slots(t0, end, tz="UTC")])


def test_a_queue_backlog_is_not_a_miss(db, probe_job, community, settings) -> None:
    setting = _only_probe(community)
    now = setting.updated_at + timedelta(hours=1)
    grace = timedelta(seconds=settings.AUTOMATION_WATCHDOG_GRACE_SECONDS)
    slots = _slots(setting.updated_at, now - grace)
    # A message sent at the fourth slot still waits in the automation queue. It is published
    # under a key prefix of its own, which the session's worker (if any) does not consume.
    options = {**settings.CELERY_BROKER_TRANSPORT_OPTIONS, "global_keyprefix": "wd-test:"}
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = options
    with app.connection_for_write(transport_options=options) as connection:
        app.send_task(PROBE_JOB, kwargs={"community_id": community.pk}, queue="automation",
                      headers={"automation_sent_at": slots[3].isoformat()},
                      connection=connection)
    assert get_redis().llen("wd-test:automation") == 1
    report = find_missed_runs(now)
    assert report.windows["automation"][1] < slots[3]
    assert sorted(m.slot for m in report.missed) == slots[:3]


def test_thousands_of_settings_take_few_queries(db, probe_job, settings,
                                                django_assert_max_num_queries) -> None:
    settings.ALERT_SLACK_WEBHOOK_URL, settings.ALERT_EMAILS = "", []
    zones = ["UTC", "America/New_York", "Asia/Kolkata", "Europe/Berlin", "Australia/Lord_Howe"]
    Community.objects.bulk_create(
        Community(name=f"c{i}", slug=f"c{i}", timezone=zones[i % len(zones)])
        for i in range(2000))
    communities = list(Community.objects.values_list("pk", flat=True))
    CommunityAutomationSetting.objects.bulk_create(
        CommunityAutomationSetting(community_id=pk, job_name=PROBE_JOB) for pk in communities)
    start = datetime.now(tz=UTC)
    now = start + timedelta(minutes=20)
    # Beat ran for half of them.
    runs = []
    for pk in communities[:1000]:
        for slot in _slots(start, now - timedelta(minutes=10), tz="UTC"):
            runs.append(JobRun(job_name=PROBE_JOB, community_id=pk, trigger="schedule",
                               scheduled_for=slot, status="succeeded", queue="automation"))
    JobRun.objects.bulk_create(runs)
    # Measure detection, not a thousand catch-up enqueues.
    registry._registry[PROBE_JOB] = dataclasses.replace(probe_job, catch_up="skip")

    with django_assert_max_num_queries(12):
        began = time.perf_counter()
        report = find_missed_runs(now)
        elapsed = time.perf_counter() - began
    assert report.settings_checked == 2000
    assert len(report.missed) == report.expected_slots - len(runs)
    assert elapsed < 5, elapsed
