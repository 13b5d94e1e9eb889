"""Wiring: beat entries, routing, task guards, registry catch_up, settings checks, admin."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings as django_settings
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from automation.connections import get_redis
from automation.models import AuditEntry
from automation.registry import get_job, tenant_job
from automation.routing import route_job
from config.celery import app
from monitoring import tasks
from monitoring.checks import check_monitoring_settings
from monitoring.models import Alert

from .conftest import PROBE_JOB

PLATFORM_TASKS = ["monitoring.beat_heartbeat", "monitoring.check_alerts",
                  "monitoring.missed_run_watchdog", "monitoring.reap_stuck_runs",
                  "monitoring.prune_run_history"]


def test_beat_schedules_every_platform_task_on_the_automation_queue() -> None:
    scheduled = {entry["task"] for entry in django_settings.CELERY_BEAT_SCHEDULE.values()}
    assert set(PLATFORM_TASKS) <= scheduled
    for name in PLATFORM_TASKS:
        assert name in app.tasks
        assert route_job(name, (), {}, {}) == {"queue": "automation"}
        assert app.tasks[name].ignore_result


def test_tasks_run_and_do_not_overlap(db) -> None:
    assert tasks.reap_stuck_runs.apply().get() == {"resumed": 0, "republished": 0,
                                                   "worker_lost": 0, "never_picked_up": 0}
    assert tasks.check_alerts.apply().get()["scanned"] == 0
    assert tasks.missed_run_watchdog.apply().get()["missed"] == 0
    assert tasks.prune_run_history.apply().get()["complete"] is True
    get_redis().set("monitoring:running:check_alerts", "1", ex=60)
    assert tasks.check_alerts.apply().get() == {"skipped": "already running"}


def test_catch_up_is_validated_and_defaults_to_skip() -> None:
    assert get_job("test_sleep").catch_up == "skip"
    with pytest.raises(ValueError, match="catch_up must be one of"):
        tenant_job(name="x_bad_catch_up", description="x", category="testing",
                   cron="* * * * *", catch_up="always")
    with pytest.raises(ValueError, match="needs a schedule"):
        tenant_job(name="x_on_demand", description="x", category="testing", catch_up="once")


def test_registry_page_shows_catch_up(admin_client: Client, probe_job) -> None:
    page = admin_client.get(reverse("admin:job_registry")).content.decode()
    assert "<th>Missed slots</th>" in page
    row = page[page.index(f"<code>{PROBE_JOB}</code>"):]
    assert '<td class="catch-up">run once</td>' in row[:row.index("</tr>")]
    row = page[page.index("<code>test_sleep</code>"):]
    assert '<td class="catch-up">skip</td>' in row[:row.index("</tr>")]


def test_settings_are_checked(settings) -> None:
    assert check_monitoring_settings() == []
    settings.ALERT_SLACK_WEBHOOK_URL = "hooks.slack.com/services/x"
    settings.ALERT_EMAILS = ["ops@example.com", "not an address"]
    settings.ALERT_COOLDOWN_SECONDS = -1
    settings.AUTOMATION_RUN_RETENTION_DAYS = 0
    settings.AUTOMATION_WATCHDOG_GRACE_SECONDS = 7 * 3600
    messages = " ".join(error.msg for error in check_monitoring_settings())
    for fragment in ("ALERT_SLACK_WEBHOOK_URL must be an http(s) URL",
                     "invalid address: 'not an address'", "ALERT_COOLDOWN_SECONDS must be",
                     "AUTOMATION_RUN_RETENTION_DAYS must be",
                     "GRACE_SECONDS must be less than"):
        assert fragment in messages


def test_admin_lists_alerts_and_resolves_them_with_an_audit(admin_client: Client,
                                                            community) -> None:
    now = timezone.now()
    alert = Alert.objects.create(kind="failure", job_name="test_broken", community=community,
                                 fingerprint=Alert.key("failure", "test_broken", community.pk),
                                 first_seen=now - timedelta(hours=1), last_seen=now, count=4,
                                 last_run_id=12345, last_message="ValueError: bad data")
    url = reverse("admin:monitoring_alert_changelist")
    page = admin_client.get(url).content.decode()
    assert "test_broken" in page and "run 12345" in page
    response = admin_client.post(url, {"action": "mark_resolved",
                                       "_selected_action": [alert.pk]})
    assert response.status_code == 302
    alert.refresh_from_db()
    assert alert.resolved_at is not None and alert.resolved_notified_at is not None
    assert AuditEntry.objects.get(action="alert.resolve").after == {"alert_ids": [alert.pk]}
    assert admin_client.get(reverse("admin:monitoring_missedrun_changelist")).status_code == 200
