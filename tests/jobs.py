"""Jobs that exist only in tests, to drive the execution path into each of its branches."""

import time

from django import forms

from automation.connections import get_redis
from automation.errors import RetryableJobError
from automation.registry import tenant_job


class SleepParams(forms.Form):
    seconds = forms.FloatField(min_value=0, max_value=30, initial=0.0, required=False)


@tenant_job(
    name="test_sleep",
    description="Sleeps, then records that it ran.",
    category="testing",
    cron="*/5 * * * *",
    soft_time_limit=2,
    time_limit=6,
    params_form=SleepParams,
)
def test_sleep(community, now, seconds=0.0):
    redis = get_redis()
    redis.rpush(f"test:ran:{community.pk}", now.isoformat())
    time.sleep(seconds)
    return {"slept": seconds}


class FlakyParams(forms.Form):
    failures = forms.IntegerField(min_value=0, max_value=10, initial=2, required=False)


@tenant_job(
    name="test_flaky",
    description="Fails with a retryable error a given number of times, then succeeds.",
    category="testing",
    max_retries=3,
    backoff_base=0.2,
    backoff_cap=1.0,
    params_form=FlakyParams,
)
def test_flaky(community, now, failures=2):
    attempt = get_redis().incr(f"test:flaky:{community.pk}")
    if attempt <= failures:
        raise RetryableJobError(f"upstream returned 503 (attempt {attempt})")
    return {"attempt": attempt}


@tenant_job(
    name="test_broken",
    description="Raises a programming error: fails at once, no retry.",
    category="testing",
    cron="0 * * * *",
    max_retries=3,
    backoff_base=0.2,
)
def test_broken(community, now):
    raise ValueError("bad data in community settings")


@tenant_job(
    name="test_stubborn",
    description="Ignores its soft time limit, so only the hard limit stops it.",
    category="testing",
    soft_time_limit=1,
    time_limit=2,
    max_retries=0,
)
def test_stubborn(community, now):
    from celery.exceptions import SoftTimeLimitExceeded

    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            time.sleep(0.1)
        except SoftTimeLimitExceeded:
            continue
    return {"finished": True}


@tenant_job(
    name="test_db_blip",
    description="Loses its database connection a given number of times, then succeeds.",
    category="testing",
    max_retries=0,
    params_form=FlakyParams,
)
def test_db_blip(community, now, failures=2):
    from django.db import OperationalError

    attempt = get_redis().incr(f"test:db_blip:{community.pk}")
    if attempt <= failures:
        raise OperationalError("server closed the connection unexpectedly")
    return {"attempt": attempt}
