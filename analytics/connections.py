"""The Redis that holds leaderboards.

By default the platform's shared client (automation.connections.get_redis). An operator
may put boards on their own Redis with the optional ANALYTICS_REDIS_URL setting (pages
read boards heavily; locks and the broker need not share that load).
"""

from __future__ import annotations

from functools import lru_cache

import redis
from django.conf import settings
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from automation.connections import get_redis


@lru_cache(maxsize=4)
def _client_for(url: str) -> redis.Redis:
    # A short retry budget: a board that cannot be published fails the attempt quickly and
    # the platform's own retry-with-backoff takes over (no retries stacked on retries).
    return redis.Redis.from_url(
        url, socket_timeout=5, socket_connect_timeout=5, health_check_interval=30,
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 2),
    )


def leaderboard_redis() -> redis.Redis:
    url = settings.ANALYTICS_REDIS_URL
    return _client_for(url) if url else get_redis()
