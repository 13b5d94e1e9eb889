"""Tests against a broker other than the session's Redis: RabbitMQ vhosts (`rabbitmq_url`).

- `use_broker(url)`: the test process's Celery app (and settings.CELERY_BROKER_URL) publish
  to and control workers on `url` for the block, then go back to the session's broker.
- `celery_workers(url, names)`: real prefork worker subprocesses on `url`, each in a process
  group of its own (so a test can SIGKILL a whole worker), stopped at the end of the block.
- `purge_queues(url)`: empty the app's queues on `url` (a vhost outlives a test).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path
from typing import Any

from amqp.exceptions import NotFound
from celery import Celery
from django.test import override_settings
from kombu import Connection, pools
from kombu.utils.collections import eqhash

ROOT = Path(__file__).resolve().parent.parent
QUEUES = ("automation", "notifications", "billing")
AMQP_SCHEMES = ("amqp", "amqps", "pyamqp")


def is_amqp(url: str) -> bool:
    return url.split("://", 1)[0] in AMQP_SCHEMES


def _drop_pools(app: Celery, *, close: bool) -> None:
    """Forget the app's cached pools; with close, also close those of the current broker.

    `app.pool` (connections) and `app.amqp.producer_pool` are built from broker_url on first
    use and cached on the app; kombu also keeps them in its global pool groups, keyed by the
    connection's parameters, where the session broker's pools wait to be picked up again.
    """
    if close:
        key = app.connection_for_write()
        try:
            for group in (pools.producers, pools.connections):  # producers hold connections
                pool = dict.pop(group, eqhash(key), None)
                if pool is not None:
                    pool.force_close_all()
        finally:
            key.release()
    app._pool = None
    app.amqp._producer_pool = None


@contextmanager
def use_broker(url: str, transport_options: dict[str, Any] | None = None) -> Iterator[Celery]:
    """Point `config.celery.app` at `url` for the block, and restore it afterwards.

    Also overrides settings.CELERY_BROKER_URL / _TRANSPORT_OPTIONS, so in-process readers of
    the broker (monitoring.broker) look at the same one. Transport options default to what
    config/settings.py uses for that kind of broker (publisher confirms for AMQP).
    """
    from config.celery import app

    if transport_options is None:
        transport_options = ({"confirm_publish": True} if is_amqp(url)
                             else dict(app.conf.broker_transport_options or {}))
    keys = ("broker_url", "broker_read_url", "broker_write_url", "broker_transport_options")
    saved = {key: app.conf[key] for key in keys}
    _drop_pools(app, close=False)
    app.conf.update(broker_url=url, broker_read_url=None, broker_write_url=None,
                    broker_transport_options=transport_options)
    try:
        with override_settings(CELERY_BROKER_URL=url,
                               CELERY_BROKER_TRANSPORT_OPTIONS=transport_options):
            yield app
    finally:
        try:
            _drop_pools(app, close=True)
        finally:
            app.conf.update(saved)
            _drop_pools(app, close=False)


def purge_queues(url: str, queues: tuple[str, ...] = QUEUES) -> None:
    """Drop every message waiting in `queues` on `url` (a queue never declared is skipped)."""
    with Connection(url, connect_timeout=5) as connection:
        channel = connection.channel()
        for queue in queues:
            try:
                channel.queue_purge(queue)
            except NotFound:
                channel = connection.channel()


def node_name(name: str) -> str:
    """The full Celery node name of a worker started as `-n <name>@%h`."""
    return f"{name}@{socket.gethostname()}"


def _worker_env(url: str) -> dict[str, str]:
    from tests.conftest import _database_url

    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": _database_url(),
        "CONN_MAX_AGE": "0",
        "CELERY_BROKER_URL": url,
    }


def stop_worker(proc: subprocess.Popen, timeout: float = 20.0) -> None:
    """Warm shutdown of the worker's whole process group; SIGKILL if it does not stop."""
    if proc.poll() is None:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=timeout)
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # pool processes that outlived their parent
    proc.wait()


@contextmanager
def celery_workers(url: str, names: list[str], *, concurrency: int = 2,
                   queues: tuple[str, ...] = QUEUES,
                   ready_timeout: float = 60.0) -> Iterator[dict[str, subprocess.Popen]]:
    """Start one worker per name on `url`, wait until each answers a ping, stop them after.

    Same command and environment as the session's `celery_worker_process`, on broker `url`;
    each worker leads a new session (process group), logs to var/test-worker-<name>.log.
    Call inside `use_broker(url)`: the ping goes through the app.
    """
    from config.celery import app

    (ROOT / "var").mkdir(exist_ok=True)
    procs: dict[str, subprocess.Popen] = {}
    with ExitStack() as stack:
        for name in names:
            log = stack.enter_context(open(ROOT / "var" / f"test-worker-{name}.log", "w"))
            proc = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "config", "worker", "-P", "prefork",
                 "-c", str(concurrency), "-Q", ",".join(queues), "-n", f"{name}@%h",
                 "--without-gossip", "--without-mingle", "-l", "INFO"],
                cwd=ROOT, env=_worker_env(url), stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            stack.callback(stop_worker, proc)
            procs[node_name(name)] = proc
        waiting = set(procs)
        deadline = time.monotonic() + ready_timeout
        while waiting:
            for node, proc in procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"worker {node} exited: see var/test-worker-*.log")
            if time.monotonic() > deadline:
                raise RuntimeError(f"workers {sorted(waiting)} did not answer within "
                                   f"{ready_timeout:.0f} s")
            for reply in app.control.ping(destination=sorted(waiting), timeout=0.5) or []:
                waiting -= set(reply)
        yield procs
