"""Platform tasks scheduled by beat (CELERY_BEAT_SCHEDULE): they read the clock, the
functions they call take `now`.

All are routed to the automation queue by their "monitoring." prefix, keep no Celery result
(a row a minute would fill TaskResult), and run one at a time: a second copy (beat catching
up, a manual call) returns at once while the first holds the Redis guard.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import wraps
from typing import Any

from celery import shared_task
from django.utils import timezone

from automation.connections import get_redis

from .heartbeat import HEARTBEAT_TASK, record_processed

logger = logging.getLogger(__name__)


def single_flight(name: str, ttl: int) -> Callable:
    """Skip the call while another copy runs; the guard expires after `ttl` regardless."""

    def decorate(func: Callable[..., dict]) -> Callable[..., dict]:
        @wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> dict:
            redis = get_redis()
            key = f"monitoring:running:{name}"
            if not redis.set(key, "1", nx=True, ex=ttl):
                logger.info("%s: another copy is running, skipped", name)
                return {"skipped": "already running"}
            try:
                return func(*args, **kwargs)
            finally:
                redis.delete(key)

        return wrapper

    return decorate


@shared_task(name=HEARTBEAT_TASK, ignore_result=True, soft_time_limit=10, time_limit=20)
def beat_heartbeat() -> None:
    """Beat sends this every 30 s; publishing it stamps beat's tick, running it the worker's."""
    record_processed()


@shared_task(name="monitoring.check_alerts", ignore_result=True, soft_time_limit=50,
             time_limit=60)
@single_flight("check_alerts", ttl=60)
def check_alerts() -> dict:
    from .alerts import check_alerts as run_check

    report = run_check(timezone.now())
    return {"scanned": report.scanned, "opened": report.count("opened"),
            "repeated": report.count("repeated"), "resolved": report.count("resolved"),
            "notices": len(report.notices)}


@shared_task(name="monitoring.missed_run_watchdog", ignore_result=True, soft_time_limit=240,
             time_limit=270)
@single_flight("missed_run_watchdog", ttl=270)
def missed_run_watchdog() -> dict:
    from .watchdog import find_missed_runs

    report = find_missed_runs(timezone.now())
    return {"settings": report.settings_checked, "expected": report.expected_slots,
            "missed": len(report.missed), "caught_up": len(report.catch_up_runs),
            "notices": len(report.notices)}


@shared_task(name="monitoring.reap_stuck_runs", ignore_result=True, soft_time_limit=120,
             time_limit=150)
@single_flight("reap_stuck_runs", ttl=150)
def reap_stuck_runs() -> dict:
    from .reaper import reap_stuck_runs as reap

    report = reap(timezone.now())
    return {"resumed": len(report.resumed), "republished": len(report.republished),
            "worker_lost": len(report.worker_lost),
            "never_picked_up": len(report.never_picked_up)}


@shared_task(name="monitoring.prune_run_history", ignore_result=True, soft_time_limit=900,
             time_limit=960)
@single_flight("prune_run_history", ttl=960)
def prune_run_history() -> dict:
    from .retention import prune_run_history as prune

    report = prune(timezone.now())
    return {"deleted": report.deleted, "batches": report.batches, "complete": report.complete}
