"""monitoring.broker on RabbitMQ (a vhost of this session's own), and the AMQP settings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import pytest
from amqp.exceptions import PreconditionFailed
from kombu import Connection
from kombu.exceptions import OperationalError

from monitoring.broker import is_amqp_broker, is_redis_broker, queue_states
from tests.brokers import ROOT, purge_queues, use_broker

N = 7


@pytest.fixture
def rabbitmq(rabbitmq_url) -> Iterator[str]:
    """The app publishing to the session's vhost, its queues empty before and after."""
    purge_queues(rabbitmq_url)
    with use_broker(rabbitmq_url):
        yield rabbitmq_url
    purge_queues(rabbitmq_url)


def publish(app, queue: str, count: int) -> None:
    # The task need not exist here: nothing consumes these messages.
    for index in range(count):
        app.send_task("monitoring.depth_probe", kwargs={"index": index}, queue=queue)


def test_queue_depth_is_read_from_rabbitmq(rabbitmq) -> None:
    """N messages published by the project's app are N waiting; other queues report 0."""
    from config.celery import app

    assert is_amqp_broker() and not is_redis_broker()
    publish(app, "billing", N)
    never = f"never-declared-{uuid.uuid4().hex[:8]}"
    states, unacked = queue_states(["billing", "notifications", never])

    assert [(s.queue, s.depth, s.consumers) for s in states] == [
        ("billing", N, 0), ("notifications", 0, 0), (never, 0, 0)]
    # AMQP cannot peek at a waiting message nor count unacknowledged ones.
    assert all(s.oldest_sent_at is None for s in states)
    assert unacked is None
    with Connection(rabbitmq) as connection:
        # Looking did not create the unknown queue (the declares were passive).
        channel = connection.channel()
        with pytest.raises(Exception, match="NOT_FOUND"):
            channel.queue_declare(never, passive=True)


def test_a_taken_message_leaves_the_depth_and_returns_when_its_consumer_dies(rabbitmq) -> None:
    """Depth counts ready messages; a consumer's unacked one is not among them until the
    consumer's connection closes, when RabbitMQ puts it back at once."""
    from config.celery import app

    publish(app, "billing", N)
    connection = Connection(rabbitmq)
    channel = connection.channel()
    channel.basic_qos(0, 1, False)
    taken = []
    channel.basic_consume("billing", callback=taken.append, no_ack=False)
    deadline = time.monotonic() + 5
    while not taken and time.monotonic() < deadline:
        connection.drain_events(timeout=1)
    assert len(taken) == 1
    states, _ = queue_states(["billing"])
    assert (states[0].depth, states[0].consumers) == (N - 1, 1)

    connection.close()  # dies without acknowledging
    deadline = time.monotonic() + 5
    while queue_states(["billing"])[0][0].depth != N:
        assert time.monotonic() < deadline, "the unacked message did not come back"
        time.sleep(0.05)
    assert queue_states(["billing"])[0][0].consumers == 0


def test_queues_are_durable_and_messages_persistent(rabbitmq) -> None:
    """What the app declares and publishes survives a RabbitMQ restart."""
    from config.celery import app

    publish(app, "automation", 1)
    with Connection(rabbitmq) as connection:
        channel = connection.channel()
        message = channel.basic_get("automation", no_ack=False)
        assert message is not None
        assert message.properties["delivery_mode"] == 2  # persistent
        channel.basic_reject(message.delivery_tag, requeue=True)
        # Re-declaring the queue as transient is refused: it exists, and durable.
        with pytest.raises(PreconditionFailed, match="durable"):
            channel.queue_declare("automation", durable=False)


def test_unreachable_rabbitmq_raises(settings) -> None:
    """A broker that does not answer fails the caller (the /metrics section reports 0)."""
    settings.CELERY_BROKER_URL = "amqp://guest:guest@127.0.0.1:1//"  # nothing listens there
    started = time.monotonic()
    with pytest.raises(OperationalError, match="refused"):
        queue_states(["automation"])
    assert time.monotonic() - started < 3


@pytest.mark.parametrize("url, redis, amqp", [
    ("redis://127.0.0.1:6379/0", True, False),
    ("amqp://guest:guest@rabbitmq:5672//", False, True),
    ("pyamqp://guest@localhost//", False, True),
    ("amqps://u:p@a.example:5671/v;amqps://u:p@b.example:5671/v", False, True),
])
def test_broker_kind(settings, url: str, redis: bool, amqp: bool) -> None:
    settings.CELERY_BROKER_URL = url
    assert (is_redis_broker(), is_amqp_broker()) == (redis, amqp)


def _settings_for(broker_url: str) -> dict:
    code = (
        "import json\n"
        "from config import settings as s\n"
        "print(json.dumps({k: getattr(s, k, None) for k in ("
        "'CELERY_BROKER_URL', 'CELERY_BROKER_TRANSPORT_OPTIONS', "
        "'CELERY_BROKER_CONNECTION_MAX_RETRIES', "
        "'CELERY_BROKER_CONNECTION_RETRY', 'CELERY_TASK_DEFAULT_DELIVERY_MODE', "
        "'CELERY_TASK_PUBLISH_RETRY_POLICY', 'AUTOMATION_REAPER_QUEUED_SECONDS', "
        "'CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS')}))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("CELERY_")}
    env.update(CELERY_BROKER_URL=broker_url, REDIS_URL="redis://127.0.0.1:6379/0",
               SECRET_KEY="x", DJANGO_SETTINGS_MODULE="")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_settings_per_broker() -> None:
    """AMQP: publisher confirms, persistent delivery, no visibility timeout; Redis keeps it.
    Both reconnect forever and keep running jobs through a lost connection."""
    amqp = _settings_for("amqp://guest:guest@rabbitmq:5672//")
    assert amqp["CELERY_BROKER_TRANSPORT_OPTIONS"] == {"confirm_publish": True}
    assert amqp["CELERY_TASK_DEFAULT_DELIVERY_MODE"] == "persistent"
    assert amqp["CELERY_TASK_PUBLISH_RETRY_POLICY"]["max_retries"] == 5
    redis = _settings_for("redis://127.0.0.1:6379/0")
    assert redis["CELERY_BROKER_TRANSPORT_OPTIONS"] == {"visibility_timeout": 4 * 3600}
    # Empty, as .env.example leaves it: REDIS_URL is the broker.
    unset = _settings_for("")
    assert unset["CELERY_BROKER_URL"] == "redis://127.0.0.1:6379/0"
    assert unset["CELERY_BROKER_TRANSPORT_OPTIONS"] == {"visibility_timeout": 4 * 3600}
    for values in (amqp, redis):
        assert values["CELERY_BROKER_CONNECTION_RETRY"] is True
        assert values["CELERY_BROKER_CONNECTION_MAX_RETRIES"] is None
        assert values["CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS"] is False
        assert values["AUTOMATION_REAPER_QUEUED_SECONDS"] == 4 * 3600
