"""Fixtures of the monitoring tests: alert channels, a catch-up job, run rows."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest

from automation import registry
from automation.models import JobRun
from automation.registry import JobSpec, tenant_job
from communities.models import Community

PROBE_JOB = "monitoring_probe"


@pytest.fixture(autouse=True)
def fresh_settings_summary(monkeypatch) -> None:
    """/metrics caches the settings-derived figures for a minute; tests change settings."""
    from monitoring.collector import PlatformCollector

    monkeypatch.setattr(PlatformCollector, "_settings_cache", None)


@pytest.fixture
def alert_channels(settings, receiver) -> Any:
    """Slack webhook on the local receiver, email to one address (locmem unless smtp)."""
    settings.WEBHOOKS_ALLOW_LOOPBACK = True  # the receiver listens on loopback
    settings.ALERT_SLACK_WEBHOOK_URL = f"{receiver.base_url}/slack/hook"
    settings.ALERT_EMAILS = ["ops@example.com"]
    settings.ALERT_COOLDOWN_SECONDS = 3600
    settings.ALERT_HTTP_TIMEOUT_SECONDS = 2
    return receiver


_probe: list[JobSpec] = []


@pytest.fixture
def probe_job(monkeypatch) -> Iterator[JobSpec]:
    """A scheduled job with catch_up="once", in the registry for this test only.

    Its Celery task is created once per session (Celery keeps tasks for good).
    """
    monkeypatch.setattr(registry, "_registry", dict(registry._registry))
    if not _probe:
        @tenant_job(name=PROBE_JOB, description="Monitoring test job.", category="testing",
                    cron="*/5 * * * *", catch_up="once")
        def monitoring_probe(community, now):
            return {"ok": 1}

        _probe.append(monitoring_probe.spec)
    registry._registry[PROBE_JOB] = _probe[0]
    yield _probe[0]


def make_run(community: Community | None, job_name: str, status: str, *, finished: datetime,
             scheduled_for: datetime | None = None, started: datetime | None = None,
             error: str = "", trigger: str = JobRun.Trigger.SCHEDULE, **fields: Any) -> JobRun:
    """A run record as the execution path leaves it (created_at is set to the start)."""
    run = JobRun.objects.create(
        job_name=job_name, community=community, trigger=trigger,
        scheduled_for=scheduled_for or started or finished, status=status, queue="automation",
        started_at=started, finished_at=None if status in ("queued", "running") else finished,
        error_type="ValueError" if error else "", error_message=error, **fields,
    )
    JobRun.objects.filter(pk=run.pk).update(created_at=started or scheduled_for or finished)
    run.refresh_from_db()
    return run
