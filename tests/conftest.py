"""Shared fixtures: a clean Redis, communities, and a real Celery worker subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings

from automation.connections import get_redis
from communities.models import Community

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def clean_redis() -> Iterator[None]:
    get_redis().flushdb()
    yield


@pytest.fixture
def community(db) -> Community:
    return Community.objects.create(name="Acme Makers", slug="acme", timezone="America/New_York")


@pytest.fixture
def other_community(db) -> Community:
    return Community.objects.create(name="Kolkata Coders", slug="kolkata", timezone="Asia/Kolkata")


def _database_url() -> str:
    db = settings.DATABASES["default"]
    return f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


@pytest.fixture(scope="session")
def celery_worker_process(django_db_setup, django_db_blocker) -> Iterator[subprocess.Popen]:
    """A real prefork worker (2 processes) on every queue, against the test database."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": _database_url(),
        "CONN_MAX_AGE": "0",
    }
    (ROOT / "var").mkdir(exist_ok=True)
    log = open(ROOT / "var" / "test-worker.log", "w")  # noqa: SIM115 - closed at teardown
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", "worker", "-P", "prefork", "-c", "2",
         "-Q", "automation,notifications,billing", "-n", f"test-{os.getpid()}@%h",
         "--without-gossip", "--without-mingle", "-l", "INFO"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    from config.celery import app

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"worker exited: see {log.name}")
        if app.control.ping(timeout=0.5):
            break
    else:
        proc.terminate()
        raise RuntimeError("worker did not answer a ping within 60 s")
    yield proc
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


@pytest.fixture
def worker(celery_worker_process, transactional_db) -> subprocess.Popen:
    """Use the shared worker; data is committed so the worker process can see it."""
    return celery_worker_process


def wait_for(predicate, timeout: float = 20.0, interval: float = 0.05):
    """Poll until predicate() is truthy; return its value or fail the test."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")
