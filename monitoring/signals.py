"""Celery signal handlers: beat's heartbeat stamp and a sent-at header on every message."""

from __future__ import annotations

import logging
from typing import Any

from celery.signals import after_task_publish, before_task_publish
from django.utils import timezone

from automation.tasks import SENT_AT_HEADER

from .heartbeat import HEARTBEAT_TASK, record_tick

logger = logging.getLogger(__name__)


@before_task_publish.connect(dispatch_uid="monitoring.stamp_sent_at")
def stamp_sent_at(sender: Any = None, headers: dict | None = None, **_: Any) -> None:
    # Job messages are stamped by automation.signals (their run derives its slot from it);
    # stamping platform tasks too lets /metrics and the watchdog date any waiting message.
    if headers is not None:
        headers.setdefault(SENT_AT_HEADER, timezone.now().isoformat())


@after_task_publish.connect(dispatch_uid="monitoring.heartbeat_published")
def heartbeat_published(sender: Any = None, headers: dict | None = None, **_: Any) -> None:
    # Celery sends the task name as `sender`; fall back to the protocol-2 header.
    name = sender if isinstance(sender, str) else (headers or {}).get("task")
    if name != HEARTBEAT_TASK:
        return
    try:
        record_tick()
    except Exception:  # a Redis hiccup must not fail beat's publish path
        logger.warning("could not record beat's tick", exc_info=True)
