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

from .servers import HttpServer, Receiver, SmtpServer

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def clean_redis() -> Iterator[None]:
    get_redis().flushdb()
    yield


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item, nextitem):
    # Drop what the test left queued before its data is flushed: the session's worker would
    # otherwise run it against rows that are being truncated (deadlocks, stray runs).
    get_redis().flushdb()
    return (yield)


@pytest.fixture
def community(db) -> Community:
    return Community.objects.create(name="Acme Makers", slug="acme", timezone="America/New_York")


@pytest.fixture
def other_community(db) -> Community:
    return Community.objects.create(name="Kolkata Coders", slug="kolkata", timezone="Asia/Kolkata")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A local HTTP server; program its answers through the returned Receiver."""
    server = HttpServer().start()
    yield server.state
    server.stop()


@pytest.fixture
def smtp_server(settings) -> Iterator[SmtpServer]:
    """A local SMTP server; Django's SMTP backend is pointed at it for the test."""
    server = SmtpServer().start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = server.port
    settings.EMAIL_USE_TLS = False
    settings.EMAIL_TIMEOUT = 5
    yield server
    server.stop()


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A local S3-compatible server (moto in server mode), shared by the session."""
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_storages(settings, s3_endpoint, monkeypatch) -> dict[str, str]:
    """Point the archive and warehouse storages at fresh buckets on the local S3 server."""
    import uuid

    import boto3

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    buckets = {}
    storages = dict(settings.STORAGES)
    for alias in ("archive", "warehouse"):
        bucket = f"{alias}-{uuid.uuid4().hex[:12]}"
        client.create_bucket(Bucket=bucket)
        buckets[alias] = bucket
        storages[alias] = {
            "BACKEND": "config.storages.ObjectS3Storage",
            "OPTIONS": {"bucket_name": bucket, "endpoint_url": s3_endpoint,
                        "region_name": "us-east-1", "file_overwrite": True,
                        "default_acl": None, "querystring_auth": False},
        }
    settings.STORAGES = storages
    return buckets


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


@pytest.fixture(scope="session")
def rabbitmq_url() -> Iterator[str]:
    """A broker URL of a RabbitMQ vhost of this test session's own, deleted at the end.

    The vhost (`automation-test-<host>-<pid>`) is made with rabbitmqctl on the local node
    and opened to `guest`; vhosts this host's sessions left behind when they died are
    deleted first. RABBITMQ_TEST_URL, if set, is used as it is instead (its owner isolates
    and cleans it). Skipped only when rabbitmqctl is absent and nothing answers on
    127.0.0.1:5672; CI starts RabbitMQ (.ci/run).
    """
    import re
    import shutil
    import socket

    preset = os.environ.get("RABBITMQ_TEST_URL")
    if preset:
        yield preset
        return
    host, port = "127.0.0.1", 5672
    try:
        socket.create_connection((host, port), timeout=2).close()
        reachable = True
    except OSError:
        reachable = False
    ctl = shutil.which("rabbitmqctl")
    if ctl is None and not reachable:
        pytest.skip(f"RabbitMQ tests: no rabbitmqctl and no broker on {host}:{port}")
    if ctl is None:
        pytest.fail(f"RabbitMQ answers on {host}:{port} but rabbitmqctl is missing, so this "
                    "session cannot have a vhost of its own; set RABBITMQ_TEST_URL to one")
    if not reachable:
        pytest.fail(f"rabbitmqctl is installed but nothing answers on {host}:{port}: start "
                    "RabbitMQ (rabbitmq-server -detached; .ci/run does)")

    def rabbitmqctl(*args: str) -> str:
        done = subprocess.run([ctl, "-q", *args], capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)}: {done.stderr or done.stdout}")
        return done.stdout

    prefix = f"automation-test-{re.sub(r'[^A-Za-z0-9]', '', socket.gethostname())}-"
    for name in rabbitmqctl("list_vhosts", "--no-table-headers").split():
        pid = name.removeprefix(prefix)
        if not (name.startswith(prefix) and pid.isdigit()):
            continue
        try:
            # Ours can only be a leftover of an earlier process that had our pid.
            alive = int(pid) != os.getpid() and os.kill(int(pid), 0) is None
        except ProcessLookupError:
            alive = False
        except PermissionError:
            alive = True
        if not alive:
            rabbitmqctl("delete_vhost", name)  # its session is gone
    vhost = f"{prefix}{os.getpid()}"
    rabbitmqctl("add_vhost", vhost)
    try:
        rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        yield f"amqp://guest:guest@{host}:{port}/{vhost}"
    finally:
        rabbitmqctl("delete_vhost", vhost)
