"""Helpers for the dashboard tests: runs placed at a given time, walks of many cases."""

from __future__ import annotations

import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.test import Client
from django.utils import timezone

from automation.connections import get_redis
from automation.models import JobRun
from communities.models import Community


def make_run(community: Community | None, job_name: str, status: str, *,
             at: datetime | None = None, duration: float | None = 1.0, **fields) -> JobRun:
    """A run created at `at` (created_at is auto_now_add, so it is moved after the insert)."""
    at = at or timezone.now()
    finished = status not in (JobRun.Status.QUEUED, JobRun.Status.RUNNING)
    run = JobRun.objects.create(
        job_name=job_name, community=community, trigger=fields.pop("trigger", "schedule"),
        scheduled_for=at, status=status, started_at=fields.pop("started_at", at),
        finished_at=at + timedelta(seconds=duration or 0) if finished else None,
        duration_seconds=duration if finished and status != JobRun.Status.SKIPPED else None,
        **fields)
    JobRun.objects.filter(pk=run.pk).update(created_at=at)
    run.created_at = at
    return run


def logged_in(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def same_login(client: Client) -> Client:
    """A new client in the session of `client`, carrying no other cookie (no message left by
    an earlier case): a fresh browser of the logged-in user, without logging in again. A
    case's writes to the session itself are rolled back with the case (see `case`)."""
    fresh = Client()
    name = settings.SESSION_COOKIE_NAME
    fresh.cookies[name] = client.cookies[name].value
    return fresh


@contextmanager
def case(label: str, failures: list[str]) -> Iterator[None]:
    """One case of a walk, run as its own test would be and recorded instead of raised.

    The case starts with a clean Redis and runs in a savepoint rolled back at its end, so
    it sees the rows the test set up and leaves nothing for the next case. An assertion or
    any other exception (the test client re-raises a view's) becomes one line in
    `failures`, naming the case; the walk goes on, and the test asserts `failures` empty.
    """
    get_redis().flushdb()
    try:
        with transaction.atomic():
            yield
            transaction.set_rollback(True)
    except Exception as exc:  # every failure of a case is reported, naming the case
        frames = traceback.extract_tb(exc.__traceback__)
        ours = [f for f in frames if "site-packages" not in f.filename] or frames
        where = f"{ours[-1].filename}:{ours[-1].lineno}"
        failures.append(f"{label}: {type(exc).__name__}: {exc} (at {where})"
                        .replace("\n", "\n    "))


def report(failures: list[str], walked: int) -> str:
    return f"{len(failures)} of {walked} cases failed:\n" + "\n".join(failures)
