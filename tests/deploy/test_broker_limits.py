"""The brokers' redelivery limits outlast the longest job: no job is delivered twice while
it still runs because it ran long."""

from __future__ import annotations

import re
from pathlib import Path

from django.conf import settings

from automation.registry import all_jobs

ROOT = Path(__file__).resolve().parents[2]


def test_every_hard_time_limit_is_below_both_brokers_redelivery_limits() -> None:
    """RabbitMQ's consumer_timeout (deploy/rabbitmq/rabbitmq.conf) and Redis's visibility
    timeout must exceed every job's hard time limit (docs/broker.md)."""
    conf = (ROOT / "deploy" / "rabbitmq" / "rabbitmq.conf").read_text()
    consumer_timeout_s = int(re.search(r"^consumer_timeout\s*=\s*(\d+)", conf, re.M)[1]) / 1000
    longest = max(spec.time_limit for spec in all_jobs())
    assert longest < consumer_timeout_s
    assert longest < settings.REDIS_VISIBILITY_TIMEOUT
