"""Read-only looks at the Celery broker's queues: depth, oldest waiting message, consumers.

Both brokers the app supports (docs/broker.md) answer `queue_states(queues)` with the same
shape, `(list of QueueState, unacked)`:

- Redis. kombu's Redis transport keeps each queue as Redis lists: the queue's own name for
  priority 0 and `<queue><sep><step>` for the other priority steps (sep "\\x06\\x16", steps
  0/3/6/9), all under the optional `global_keyprefix`. Messages are LPUSHed and RPOPed, so
  the oldest waiting message of each list is at index -1, and its `automation_sent_at`
  header gives `oldest_sent_at`. Messages taken by a worker but not yet acknowledged
  (acks_late) leave the lists and sit in the `unacked` hash until acked: that hash's size is
  `unacked`. `consumers` is None (Redis has no such count).
- RabbitMQ (amqp://, amqps://, pyamqp://). One connection per call; each queue is looked at
  with a passive `queue.declare`, which creates nothing and answers the number of messages
  ready for delivery (`depth`) and of consumers (`consumers`: 0 means no worker is taking
  from it). A queue that was never declared has no messages: depth 0, consumers 0.
  AMQP 0-9-1 has no way to read a waiting message without taking it, so `oldest_sent_at`
  is always None, and none to count unacknowledged messages (the management HTTP API has
  them), so `unacked` is None. Callers must treat both None values as "not known".
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from urllib.parse import urlsplit

import redis
from amqp.exceptions import NotFound
from django.conf import settings
from django.utils.dateparse import parse_datetime
from kombu import Connection
from kombu.transport.redis import PRIORITY_STEPS, Channel

from automation.tasks import SENT_AT_HEADER

logger = logging.getLogger(__name__)

REDIS_SCHEMES = ("redis", "rediss", "socket", "unix")
AMQP_SCHEMES = ("amqp", "amqps", "pyamqp")
#: Seconds to connect to RabbitMQ and to wait for each of its answers.
AMQP_TIMEOUT = 2.0


@dataclass(frozen=True)
class QueueState:
    queue: str
    depth: int
    #: When the oldest waiting message was sent (its automation_sent_at header), if any.
    #: Always None on RabbitMQ (a message cannot be read without being taken).
    oldest_sent_at: datetime | None
    #: Consumers of the queue (workers taking from it); RabbitMQ only, None on Redis.
    consumers: int | None = None


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


def _scheme() -> str:
    # A failover list ("amqp://a;amqp://b") starts with its first URL.
    return urlsplit(settings.CELERY_BROKER_URL.split(";", 1)[0]).scheme


def is_redis_broker() -> bool:
    return _scheme() in REDIS_SCHEMES


def is_amqp_broker() -> bool:
    return _scheme() in AMQP_SCHEMES


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


def queue_states(
    queues: list[str] | tuple[str, ...],
) -> tuple[list[QueueState], int | None]:
    """Depth and oldest waiting message of each queue, and the unacked count.

    Redis: one pipelined round trip. RabbitMQ: one connection, a passive declare per queue;
    `oldest_sent_at` and the unacked count are None there (see the module docstring).
    """
    if is_amqp_broker():
        return _amqp_queue_states(queues), None
    return _redis_queue_states(queues)


def _redis_queue_states(queues: list[str] | tuple[str, ...]) -> tuple[list[QueueState], int]:
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


def _amqp_queue_states(queues: list[str] | tuple[str, ...]) -> list[QueueState]:
    states = []
    with Connection(
        settings.CELERY_BROKER_URL, connect_timeout=AMQP_TIMEOUT, heartbeat=0,
        transport_options={"read_timeout": AMQP_TIMEOUT, "write_timeout": AMQP_TIMEOUT},
    ) as connection:
        connection.ensure_connection(max_retries=0)  # one attempt: a scrape must not wait
        channel = connection.channel()
        for queue in queues:
            try:
                _, depth, consumers = channel.queue_declare(queue=queue, passive=True)
            except NotFound:
                # Never declared (no publisher or worker used it yet): nothing waits in it.
                # The broker closed the channel with the error; the next queue needs another.
                depth = consumers = 0
                channel = connection.channel()
            states.append(QueueState(queue, int(depth), None, int(consumers)))
    return states
