"""Start-up checks of the monitoring settings: a bad value is an error here, not at 3 a.m."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import Error, register
from django.core.exceptions import ValidationError
from django.core.validators import validate_email

_MINIMUMS = {
    "ALERT_COOLDOWN_SECONDS": 0,
    "ALERT_HTTP_TIMEOUT_SECONDS": 0.1,
    "AUTOMATION_WATCHDOG_GRACE_SECONDS": 60,
    "AUTOMATION_WATCHDOG_LOOKBACK_SECONDS": 600,
    "AUTOMATION_RUN_LEASE_SECONDS": 3,
    "AUTOMATION_MAX_RESUMES": 0,
    "AUTOMATION_REQUEUE_AFTER_SECONDS": 30,
    "AUTOMATION_INFRA_MAX_RETRIES": 0,
    "AUTOMATION_INFRA_BACKOFF_CAP_SECONDS": 1,
    "AUTOMATION_REAPER_QUEUED_SECONDS": 60,
    "AUTOMATION_RUN_RETENTION_DAYS": 1,
    "AUTOMATION_PRUNE_BATCH_SIZE": 1,
    "AUTOMATION_PRUNE_TIME_BUDGET_SECONDS": 1,
}


@register()
def check_monitoring_settings(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    errors: list[Error] = []
    for name, minimum in _MINIMUMS.items():
        value = getattr(settings, name)
        if not isinstance(value, int | float) or value < minimum:
            errors.append(Error(f"{name} must be a number >= {minimum}, not {value!r}.",
                                id="monitoring.E001"))
    if settings.AUTOMATION_PRUNE_BATCH_SIZE > 100_000:
        errors.append(Error("AUTOMATION_PRUNE_BATCH_SIZE must be at most 100000 (one DELETE "
                            "statement per batch).", id="monitoring.E001"))
    if settings.AUTOMATION_PRUNE_TIME_BUDGET_SECONDS > 840:
        errors.append(Error("AUTOMATION_PRUNE_TIME_BUDGET_SECONDS must stay under the prune "
                            "task's 900 s soft time limit (at most 840).", id="monitoring.E001"))
    if settings.AUTOMATION_WATCHDOG_GRACE_SECONDS >= settings.AUTOMATION_WATCHDOG_LOOKBACK_SECONDS:
        errors.append(Error("AUTOMATION_WATCHDOG_GRACE_SECONDS must be less than "
                            "AUTOMATION_WATCHDOG_LOOKBACK_SECONDS.", id="monitoring.E002"))
    heartbeat = (settings.CELERY_BEAT_SCHEDULE.get("monitoring-beat-heartbeat") or {})
    every = heartbeat.get("schedule")
    if not isinstance(every, int | float) or not 1 <= every <= 60:
        errors.append(Error("MONITORING_HEARTBEAT_SECONDS must be between 1 and 60: the "
                            "beat-not-ticking alert fires after 120 s without a tick.",
                            id="monitoring.E005"))
    url = settings.ALERT_SLACK_WEBHOOK_URL
    if url:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            errors.append(Error(f"ALERT_SLACK_WEBHOOK_URL must be an http(s) URL, not {url!r}.",
                                id="monitoring.E003"))
    for address in settings.ALERT_EMAILS:
        try:
            validate_email(address)
        except ValidationError:
            errors.append(Error(f"ALERT_EMAILS has an invalid address: {address!r}.",
                                id="monitoring.E004"))
    return errors
