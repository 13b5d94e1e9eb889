"""Batched publishing: Celery protocol-2 messages LPUSHed by one fenced, deduplicating script.

`apply_async` costs about 1 ms per message here (one broker round trip each, plus a
task-sent event), so a 10,000-entry burst would take ~10 s. Instead:

- each message is built the way `send_task` builds it: the task's execution options under
  the row's options, the app's router, `app.amqp.as_task_v2`, kombu serialization, and the
  Redis channel's own `prepare_message` / body encoding / priority-to-list mapping, so a
  worker cannot tell it from an `apply_async` message (a test compares the two);
- up to `batch_size` messages go to Redis in one EVALSHA that, atomically, checks the lease
  value and the fencing token, adds each (entry, slot) to the slot's dedup set (SADD, the set
  expires after the catch-up window) and LPUSHes only the messages whose SADD was new.

Messages that need an exchange lookup (a row with its own exchange/routing key, a non-direct
exchange) or a broker that is not Redis go through `apply_async`, after the same fenced dedup
claim (then "at most once" holds, but a crash between claim and send loses that slot).

Not sent on the fast path: the `task-sent` monitoring event (workers still send
received/started/succeeded). `before_task_publish` / `after_task_publish` are sent.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis
from celery import Celery
from celery.signals import after_task_publish, before_task_publish
from celery.utils.nodenames import anon_nodename
from celery.utils.saferepr import saferepr
from kombu import serialization
from kombu.compression import compress
from kombu.entity import maybe_delivery_mode
from kombu.utils.uuid import uuid

from automation.tasks import SENT_AT_HEADER

from .entries import Entry
from .leader import Lease

logger = logging.getLogger(__name__)

FENCED_OUT = -1
_json_encode = json.JSONEncoder().encode

# KEYS: lease, fence, then (dedup set, queue list) per message.
# ARGV: lease token, fence, dedup ttl, then (member, payload) per message.
PUBLISH = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] or redis.call('GET', KEYS[2]) ~= ARGV[2] then
  return -1
end
local ttl = tonumber(ARGV[3])
local sent = {}
local expiring = {}
for k = 1, (#KEYS - 2) / 2 do
  local dedup = KEYS[1 + 2 * k]
  if redis.call('SADD', dedup, ARGV[2 + 2 * k]) == 1 then
    if not expiring[dedup] then
      redis.call('EXPIRE', dedup, ttl)
      expiring[dedup] = true
    end
    redis.call('LPUSH', KEYS[2 + 2 * k], ARGV[3 + 2 * k])
    sent[k] = 1
  else
    sent[k] = 0
  end
end
return sent
"""

# The same claim without the LPUSH, for messages sent by apply_async afterwards.
CLAIM = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] or redis.call('GET', KEYS[2]) ~= ARGV[2] then
  return -1
end
local ttl = tonumber(ARGV[3])
local fresh = {}
for k = 1, #KEYS - 2 do
  if redis.call('SADD', KEYS[2 + k], ARGV[3 + k]) == 1 then
    redis.call('EXPIRE', KEYS[2 + k], ttl)
    fresh[k] = 1
  else
    fresh[k] = 0
  end
end
return fresh
"""


@dataclass(frozen=True)
class Route:
    """Where and how a task's message goes; resolved once per (task, row options)."""

    queue: str | None  # Redis list name (before priority suffix); None: use apply_async
    exchange: str
    routing_key: str
    priority: int | None
    delivery_mode: int
    serializer: str
    compression: str | None
    ignore_result: bool | None
    time_limit: float | None
    soft_time_limit: float | None
    properties: tuple[tuple[str, Any], ...]


@dataclass
class Outcome:
    """What happened to the (entry, slot) pairs of one send."""

    sent: list[tuple[Entry, float]]  # newly published
    duplicates: list[tuple[Entry, float]]  # another leader published them already
    failed: list[tuple[Entry, float]]  # not published (Redis error, fenced): retry later
    broken: list[tuple[Entry, float]]  # cannot be built or sent: slot skipped
    fenced_out: bool = False


@dataclass(slots=True)
class Prepared:
    """One (entry, slot) message, built or still to build."""

    entry: Entry
    slot: float
    route: Route
    queue_key: str | None = None
    payload: str | None = None
    body: Any = None
    headers: dict | None = None
    broken: bool = False


def iso(slot: float) -> str:
    return datetime.fromtimestamp(slot, UTC).isoformat()


class Publisher:
    """Builds and publishes the due (entry, slot) pairs of one tick."""

    def __init__(self, app: Celery, client: redis.Redis, lease: Lease, *, key_prefix: str,
                 dedup_ttl: int, batch_size: int, fast: bool, clock: Callable[[], float]) -> None:
        self.app = app
        self.client = client
        self.lease = lease
        self.key_prefix = key_prefix
        self.dedup_ttl = dedup_ttl
        self.batch_size = batch_size
        self.clock = clock
        self.amqp = app.amqp
        self._routes: dict[tuple, Route] = {}
        self._slot_iso: dict[float, str] = {}
        self._publish = client.register_script(PUBLISH)
        self._claim = client.register_script(CLAIM)
        self.origin = anon_nodename()
        self.reply_to = app.thread_oid
        # app.conf lookups cost microseconds each: read them once.
        # task_repr_maxlevels exists from celery 5.7; before it, apply_async used
        # saferepr's default depth (3).
        self._repr_maxlevels = app.conf.get("task_repr_maxlevels", 3)
        self._argsrepr_maxsize = self.amqp.argsrepr_maxsize
        self._kwargsrepr_maxsize = self.amqp.kwargsrepr_maxsize
        self._connection = None
        self._channel = None
        self.fast = fast
        self._keyprefix = ""
        if fast:
            self._connection = app.connection_for_write()
            self._channel = self._connection.default_channel
            self._keyprefix = getattr(self._channel, "global_keyprefix", "") or ""

    def close(self) -> None:
        if self._connection is not None:
            self._connection.release()
            self._connection = self._channel = None

    # -- routing --------------------------------------------------------------------------

    def route(self, entry: Entry) -> Route:
        key = (entry.task, entry.options)
        route = self._routes.get(key)
        if route is None:
            route = self._routes[key] = self._resolve(entry.task, dict(entry.options))
        return route

    def _resolve(self, name: str, row_options: dict[str, Any]) -> Route:
        """The routing decisions of Task.apply_async → send_task → send_task_message."""
        conf = self.app.conf
        task = self.app.tasks.get(name)
        options: dict[str, Any] = {}
        if task is not None:
            options.update(task._get_exec_options())
            options.setdefault("ignore_result", task.ignore_result)
        options.update(row_options)
        ignore_result = options.pop("ignore_result", None)
        time_limit = options.pop("time_limit", None)
        soft_time_limit = options.pop("soft_time_limit", None)
        options.pop("expires", None)  # beat rows set their own expiry
        serializer = options.pop("serializer", None) or conf.task_serializer
        compression = options.pop("compression", None) or conf.task_compression
        delivery_mode = options.pop("delivery_mode", None)
        for unused in ("immediate", "mandatory"):
            options.pop(unused, None)
        options = {k: v for k, v in options.items() if v is not None}
        routed = self.amqp.router.route(options, name, (), {}, task)
        queue = routed.pop("queue", None)
        exchange = routed.pop("exchange", None)
        routing_key = routed.pop("routing_key", None)
        exchange_type = routed.pop("exchange_type", None)
        priority = routed.pop("priority", None)
        if queue is None and exchange is None:
            queue = self.amqp.default_queue
        if isinstance(queue, str):
            queue = self.amqp.queues[queue]
        qname = queue.name if queue is not None else None
        if delivery_mode is None and queue is not None:
            delivery_mode = queue.exchange.delivery_mode
        delivery_mode = maybe_delivery_mode(delivery_mode or conf.task_default_delivery_mode)
        if exchange_type is None:
            exchange_type = queue.exchange.type if queue is not None else "direct"
        anonymous = (not exchange or not routing_key) and exchange_type == "direct"
        if anonymous:
            # As send_task_message does: a direct exchange becomes the anonymous exchange with
            # the queue name as routing key, i.e. an LPUSH to the queue's list on Redis.
            exchange, routing_key = "", qname
        fast_queue = qname if (self.fast and anonymous and qname) else None
        return Route(
            queue=fast_queue,
            exchange=getattr(exchange, "name", exchange) or "",
            routing_key=routing_key or "",
            priority=priority,
            delivery_mode=delivery_mode,
            serializer=serializer,
            compression=compression,
            ignore_result=ignore_result,
            time_limit=time_limit,
            soft_time_limit=soft_time_limit,
            properties=tuple(sorted(routed.items())),
        )

    # -- building ---------------------------------------------------------------------------

    def headers_for(self, entry: Entry, slot: float) -> dict[str, Any]:
        sent_at = self._slot_iso.get(slot)
        if sent_at is None:
            if len(self._slot_iso) > 10000:
                self._slot_iso.clear()
            sent_at = self._slot_iso[slot] = iso(slot)
        headers = dict(entry.headers)
        headers["periodic_task_name"] = entry.name
        headers["celery_beat_task"] = True
        # The run's scheduled_for is derived from this header (execute_run): stamp the slot,
        # not the publish time, so a late or caught-up message still runs its own slot.
        headers[SENT_AT_HEADER] = sent_at
        return headers

    def _expiry(self, entry: Entry, now: float) -> tuple[str | None, float | None]:
        if entry.expires_ts is not None:
            at = entry.expires_ts
        elif entry.expire_seconds:
            at = now + entry.expire_seconds
        else:
            return None, None
        return iso(at), max(0.0, at - now)

    def build(self, entry: Entry, slot: float, route: Route, now: float
              ) -> tuple[str, str, tuple, dict]:
        """One message as the Redis transport stores it: (list key, JSON payload, body, headers)."""
        if entry.argsrepr is None:
            entry.argsrepr = self._repr(entry.args or (), self._argsrepr_maxsize)
            entry.kwargsrepr = self._repr(entry.kwargs, self._kwargsrepr_maxsize)
        expires, expiration = self._expiry(entry, now)
        task_id = uuid()
        headers, properties, body, _ = self.amqp.as_task_v2(
            task_id, entry.task, entry.args, entry.kwargs, expires=expires,
            time_limit=route.time_limit, soft_time_limit=route.soft_time_limit,
            reply_to=self.reply_to, argsrepr=entry.argsrepr, kwargsrepr=entry.kwargsrepr,
            origin=self.origin, ignore_result=route.ignore_result,
        )
        headers.update(self.headers_for(entry, slot))
        properties.update(route.properties)
        before_task_publish.send(
            sender=entry.task, body=body, exchange=route.exchange,
            routing_key=route.routing_key, declare=[], headers=headers,
            properties=properties, retry_policy={},
        )
        if route.serializer == "json":
            # The same bytes kombu's json serializer produces, without its per-call encoder
            # set-up; row args/kwargs are JSON already, so nothing needs the custom encoder.
            content_type, content_encoding = "application/json", "utf-8"
            data = _json_encode(body)
        else:
            content_type, content_encoding, data = serialization.dumps(body, route.serializer)
        if route.compression:
            data, headers["compression"] = compress(data, route.compression)
        properties["delivery_mode"] = route.delivery_mode
        if expiration is not None:
            properties["expiration"] = str(int(expiration * 1000))
        channel = self._channel
        message = channel.prepare_message(data, route.priority or 0, content_type,
                                          content_encoding, headers, properties)
        channel._inplace_augment_message(message, route.exchange, route.routing_key)
        key = channel._q_for_pri(route.queue, channel._get_message_priority(message))
        return self._keyprefix + key, _json_encode(message), body, headers

    def _repr(self, value: Any, maxsize: int) -> str:
        # saferepr equals repr for the short JSON values of beat rows, at a tenth of the cost;
        # it still handles the long ones (truncation).
        text = repr(value)
        if len(text) <= maxsize:
            return text
        return saferepr(value, maxsize, maxlevels=self._repr_maxlevels)

    def dedup_key(self, slot: float) -> str:
        return f"{self.key_prefix}:sent:{round(slot * 1000)}"

    # -- publishing -------------------------------------------------------------------------

    def prepare(self, due: Sequence[tuple[Entry, float]], now: float | None = None
                ) -> list[Prepared]:
        """Build the messages of (entry, slot) pairs, e.g. a few seconds before they are due.

        Building is most of the cost (~50 µs a message); doing it ahead leaves only the
        publish script calls for the due moment.
        """
        now = self.clock() if now is None else now
        items = []
        for entry, slot in due:
            item = Prepared(entry, slot, self.route(entry))
            if item.route.queue is not None:
                self._build_into(item, now)
            items.append(item)
        return items

    def _build_into(self, item: Prepared, now: float) -> None:
        try:
            item.queue_key, item.payload, item.body, item.headers = self.build(
                item.entry, item.slot, item.route, now)
        except Exception:
            # A row whose message cannot be built (e.g. args the serializer refuses) must not
            # hold up the others; its slot is skipped.
            logger.exception("beat: cannot build the message of %s", item.entry.name)
            item.broken = True

    def publish(self, due: Sequence[tuple[Entry, float]],
                on_batch: Callable[[], bool] | None = None) -> Outcome:
        """Build and publish (entry, slot) pairs."""
        return self.send([Prepared(e, s, self.route(e)) for e, s in due], on_batch)

    def send(self, items: Sequence[Prepared], on_batch: Callable[[], bool] | None = None
             ) -> Outcome:
        """Publish items in batches under the current lease term; build any not built yet.

        Stops at the first fencing refusal. `on_batch` runs between batches (lease renewal);
        returning False stops publishing.
        """
        outcome = Outcome(sent=[], duplicates=[], failed=[], broken=[])
        token, fence = self.lease.token, self.lease.fence
        if token is None or fence is None:
            outcome.failed = [(p.entry, p.slot) for p in items]
            outcome.fenced_out = True
            return outcome
        fast = [p for p in items if p.route.queue is not None]
        slow = [p for p in items if p.route.queue is None]
        for start in range(0, len(fast), self.batch_size):
            if start and on_batch is not None and not on_batch():
                outcome.failed.extend((p.entry, p.slot) for p in fast[start:])
                outcome.fenced_out = True  # the lease is gone
                break
            batch = fast[start:start + self.batch_size]
            if not self._send_batch(batch, token, fence, outcome):
                outcome.failed.extend((p.entry, p.slot) for p in fast[start + len(batch):])
                break
        if slow and not outcome.fenced_out:
            self._send_slow(slow, token, fence, outcome)
        return outcome

    def _send_batch(self, batch: list[Prepared], token: str, fence: int,
                    outcome: Outcome) -> bool:
        now = self.clock()
        keys = [self.lease.lease_key, self.lease.fence_key]
        args: list[Any] = [token, fence, self.dedup_ttl]
        ready = []
        for item in batch:
            if item.payload is None and not item.broken:
                self._build_into(item, now)
            if item.broken:
                outcome.broken.append((item.entry, item.slot))
                continue
            keys += (self.dedup_key(item.slot), item.queue_key)
            args += (item.entry.id, item.payload)
            ready.append(item)
        if not ready:
            return True
        try:
            result = self._publish(keys=keys, args=args)
        except redis.RedisError:
            logger.exception("beat: publishing %d messages failed; retrying later", len(ready))
            outcome.failed.extend((p.entry, p.slot) for p in ready)
            return False
        if result == FENCED_OUT:
            outcome.fenced_out = True
            outcome.failed.extend((p.entry, p.slot) for p in ready)
            return False
        for flag, item in zip(result, ready, strict=True):
            if flag:
                outcome.sent.append((item.entry, item.slot))
                after_task_publish.send(sender=item.entry.task, body=item.body,
                                        headers=item.headers, exchange=item.route.exchange,
                                        routing_key=item.route.routing_key)
            else:
                outcome.duplicates.append((item.entry, item.slot))
        return True

    def _send_slow(self, items: list[Prepared], token: str, fence: int,
                   outcome: Outcome) -> None:
        keys = [self.lease.lease_key, self.lease.fence_key]
        keys += [self.dedup_key(p.slot) for p in items]
        args = [token, fence, self.dedup_ttl] + [p.entry.id for p in items]
        try:
            result = self._claim(keys=keys, args=args)
        except redis.RedisError:
            logger.exception("beat: dedup claim failed; retrying later")
            outcome.failed.extend((p.entry, p.slot) for p in items)
            return
        if result == FENCED_OUT:
            outcome.fenced_out = True
            outcome.failed.extend((p.entry, p.slot) for p in items)
            return
        now = self.clock()
        with self.app.producer_or_acquire() as producer:
            for flag, item in zip(result, items, strict=True):
                if not flag:
                    outcome.duplicates.append((item.entry, item.slot))
                    continue
                try:
                    self.send_one(item.entry, item.slot, now, producer)
                except Exception:
                    # Claimed, so not retried: at most once.
                    logger.exception("beat: could not send %s", item.entry.name)
                    outcome.broken.append((item.entry, item.slot))
                    continue
                outcome.sent.append((item.entry, item.slot))

    def send_one(self, entry: Entry, slot: float, now: float, producer: Any = None) -> Any:
        """The ordinary apply_async path, with the slot stamped."""
        options = dict(entry.options)
        expires, _ = self._expiry(entry, now)
        if expires is not None:
            options["expires"] = expires
        task = self.app.tasks.get(entry.task)
        headers = self.headers_for(entry, slot)
        if task is not None:
            return task.apply_async(entry.args, entry.kwargs, producer=producer,
                                    headers=headers, **options)
        return self.app.send_task(entry.task, entry.args, entry.kwargs, producer=producer,
                                  headers=headers, **options)
