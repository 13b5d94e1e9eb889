"""Celery router: every job goes to the queue the registry names for it."""

from typing import Any

from .registry import get_job, is_registered


def route_job(name: str, args: Any, kwargs: Any, options: dict, task: Any = None,
              **_: Any) -> dict | None:
    if is_registered(name):
        return {"queue": get_job(name).queue}
    return None
