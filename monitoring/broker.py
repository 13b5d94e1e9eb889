"""Read-only looks at the Celery broker's Redis: queue depth and the oldest waiting message.

kombu's Redis transport keeps each queue as Redis lists: the queue's own name for priority
0 and `<queue><sep><step>` for the other priority steps (sep "\\x06\\x16", steps 0/3/6/9),
all under the optional `global_keyprefix`. Messages are LPUSHed and RPOPed, so the oldest
waiting message of each list is at index -1. Messages taken by a worker but not yet
acknowledged (acks_late) leave the lists and sit in the `unacked` hash until acked.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from urllib.parse import urlsplit

import redis
from django.conf import settings
from django.utils.dateparse import parse_datetime
from kombu.transport.redis import PRIORITY_STEPS, Channel

from automation.tasks import SENT_AT_HEADER

logger = logging.getLogger(__name__)

REDIS_SCHEMES = ("redis", "rediss", "socket", "unix")


@dataclass(frozen=True)
class QueueState:
    queue: str
    depth: int
    #: When the oldest waiting message was sent (its automation_sent_at header), if any.
    oldest_sent_at: datetime | None


@dataclass(frozen=True)
class BrokerLayout:
    sep: str
    priority_steps: tuple[int, ...]
    prefix: str
    unacked_key: str

    def lists_of(self, queue: str) -> list[str]:
        """The Redis keys of a queue's lists, one per priority step (as kombu names them)."""
        keys = []
        for step in self.priority_steps:
            name = f"{queue}{self.sep}{step}" if step else queue
            keys.append(self.prefix + name)
        return keys


def broker_layout() -> BrokerLayout:
    """Key naming from the broker transport options, with kombu's defaults."""
    options = getattr(settings, "CELERY_BROKER_TRANSPORT_OPTIONS", {}) or {}
    steps = tuple(sorted(set(options.get("priority_steps", PRIORITY_STEPS))))
    prefix = options.get("global_keyprefix", "") or ""
    return BrokerLayout(
        sep=options.get("sep", Channel.sep),
        priority_steps=steps,
        prefix=prefix,
        unacked_key=prefix + options.get("unacked_key", Channel.unacked_key),
    )


def is_redis_broker() -> bool:
    return urlsplit(settings.CELERY_BROKER_URL).scheme in REDIS_SCHEMES


@lru_cache(maxsize=4)
def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)


def broker_client() -> redis.Redis:
    """A client of the broker's Redis (which may differ from REDIS_URL)."""
    return _client(settings.CELERY_BROKER_URL)


def _sent_at(raw: bytes | None) -> datetime | None:
    if not raw:
        return None
    try:
        message = json.loads(raw)
        value = (message.get("headers") or {}).get(SENT_AT_HEADER)
    except (ValueError, AttributeError):
        return None
    return parse_datetime(value) if isinstance(value, str) else None


def queue_states(queues: list[str] | tuple[str, ...]) -> tuple[list[QueueState], int]:
    """Depth and oldest waiting message of each queue, and the unacked count: one round trip."""
    layout = broker_layout()
    client = broker_client()
    with client.pipeline(transaction=False) as pipe:
        for queue in queues:
            for key in layout.lists_of(queue):
                pipe.llen(key)
                pipe.lindex(key, -1)
        pipe.hlen(layout.unacked_key)
        replies = pipe.execute()
    states = []
    per_queue = 2 * len(layout.priority_steps)
    for index, queue in enumerate(queues):
        chunk = replies[index * per_queue:(index + 1) * per_queue]
        depth = sum(int(n or 0) for n in chunk[0::2])
        stamps = [s for s in (_sent_at(raw) for raw in chunk[1::2]) if s is not None]
        states.append(QueueState(queue, depth, min(stamps) if stamps else None))
    return states, int(replies[-1] or 0)
