"""Celery router: every job goes to the queue the registry names for it.

Platform tasks that are not tenant jobs (outbox delivery, backfill chunks) are routed by
their name's app prefix, so their queue is decided here rather than per task.
"""

from typing import Any

from .registry import get_job, is_registered

PLATFORM_TASK_QUEUES = {
    "notifications.": "notifications",
    "billing.": "billing",
    "analytics.": "automation",
    "moderation.": "automation",
    "communities.": "automation",
    "monitoring.": "automation",
}


def route_job(name: str, args: Any, kwargs: Any, options: dict, task: Any = None,
              **_: Any) -> dict | None:
    if is_registered(name):
        return {"queue": get_job(name).queue}
    for prefix, queue in PLATFORM_TASK_QUEUES.items():
        if name.startswith(prefix):
            return {"queue": queue}
    return None
