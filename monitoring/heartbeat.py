"""Beat's heartbeat: proof that the scheduler is publishing, and that workers consume.

Beat schedules the platform task `monitoring.beat_heartbeat` every 30 s. Two timestamps
follow from it, both in Redis:

- `automation:beat:last_tick` is written in the *publishing* process when the heartbeat
  message is published (Celery's `after_task_publish` signal). Only beat publishes that
  task, so the key says "beat was alive and sending due entries at this time". It works with
  any scheduler that sends the signal: the stock DatabaseScheduler (through apply_async) and
  `automation.beat` (which sends it after each batch).
- `automation:beat:heartbeat_processed` is written by the worker that runs the task, so it
  says "a message beat sent went through the automation queue and ran".

Beat stopped: both go stale. Workers of the automation queue stopped or backed up: only
the second does.
"""

from __future__ import annotations

import time

from automation.connections import get_redis

LAST_TICK_KEY = "automation:beat:last_tick"
PROCESSED_KEY = "automation:beat:heartbeat_processed"
HEARTBEAT_TASK = "monitoring.beat_heartbeat"
# Long enough to survive any outage worth alerting on; short enough not to linger forever.
KEY_TTL_SECONDS = 30 * 24 * 3600


def _write(key: str, at: float | None) -> None:
    get_redis().set(key, repr(time.time() if at is None else at), ex=KEY_TTL_SECONDS)


def record_tick(at: float | None = None) -> None:
    _write(LAST_TICK_KEY, at)


def record_processed(at: float | None = None) -> None:
    _write(PROCESSED_KEY, at)


def read_timestamps() -> tuple[float | None, float | None]:
    """(last tick, last processed heartbeat) as Unix times; None where never written."""
    raw_tick, raw_processed = get_redis().mget([LAST_TICK_KEY, PROCESSED_KEY])
    return _float(raw_tick), _float(raw_processed)


def _float(raw: bytes | None) -> float | None:
    try:
        return float(raw) if raw is not None else None
    except ValueError:
        return None
