"""Chaos fixtures: a private Redis, a cuttable path to PostgreSQL, workers, a Stripe sandbox.

Each fixture cleans up after itself even when the test fails; workers are torn down first,
then Redis and the proxy, then the test database is flushed. `smtp_server`: tests/conftest.py.

Typical scenario::

    @pytest.mark.chaos
    def test_something(start_worker, chaos_env, chaos_redis, pg_proxy, community):
        worker = start_worker()
        with use_broker(chaos_env["CELERY_BROKER_URL"]), use_redis(chaos_env["REDIS_URL"]):
            run = enqueue_run(...)
            pg_proxy.cut(); ...; pg_proxy.restore()
            wait_until(lambda: ..., 20, message=lambda: worker.log_text(tail=40))
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

import pytest
from django.conf import settings

from tests.conftest import _database_url

from .harness import LOCALHOST, LOG_DIR, RedisServer, StripeServer, TcpProxy, WorkerProcess


def pytest_configure(config: pytest.Config) -> None:
    # pyproject.toml's marker list is not ours to edit; --strict-markers accepts this too.
    config.addinivalue_line(
        "markers", "chaos: kills real processes and cuts real connections (tests/chaos)")


def _passed(request: pytest.FixtureRequest, failed_before: int) -> bool:
    # The call phase is reported before fixtures are torn down.
    return request.session.testsfailed == failed_before


@pytest.fixture
def chaos_redis(request: pytest.FixtureRequest) -> Iterator[RedisServer]:
    """A private redis-server with AOF (appendfsync always) on a free port; removed after.

    Its log (var/chaos/redis-<port>-*.log) is kept only if the test failed.
    """
    failed_before = request.session.testsfailed
    server = RedisServer(appendonly=True).start()
    try:
        yield server
    finally:
        server.close()
        if _passed(request, failed_before):
            server.log_path.unlink(missing_ok=True)


@pytest.fixture
def pg_proxy() -> Iterator[TcpProxy]:
    """A TcpProxy in front of the PostgreSQL the tests use (127.0.0.1:5432 by default)."""
    db = settings.DATABASES["default"]
    target = (db.get("HOST") or LOCALHOST, int(db.get("PORT") or 5432))
    with TcpProxy(target) as proxy:
        yield proxy


@pytest.fixture
def chaos_env(transactional_db, pg_proxy: TcpProxy,
              chaos_redis: RedisServer) -> dict[str, str]:
    """Environment overrides for chaos workers.

    DATABASE_URL: this session's test database through `pg_proxy` (the test process itself
    keeps connecting directly); REDIS_URL: `chaos_redis` db 0 (locks, leaderboards, test
    markers); CELERY_BROKER_URL: `chaos_redis` db 1 (queues, `unacked`). Add e.g.
    CELERY_VISIBILITY_TIMEOUT (seconds) to have a killed worker's messages redelivered
    sooner than the default 4 h, or `stripe_server.env`.

    Requests transactional_db: workers see only committed data, and pytest-django creates
    the test database only when a collected test asks for db/transactional_db (otherwise
    the NAME in settings is still the real database's).
    """
    name = settings.DATABASES["default"]["NAME"]
    if not str(name).startswith("test_"):
        raise RuntimeError(f"refusing to point workers at non-test database {name!r}")
    return {
        "DATABASE_URL": pg_proxy.proxied_url(_database_url()),
        "REDIS_URL": chaos_redis.url(0),
        "CELERY_BROKER_URL": chaos_redis.url(1),
    }


@pytest.fixture
def start_worker(request: pytest.FixtureRequest,
                 chaos_env: dict[str, str]) -> Iterator[Callable[..., WorkerProcess]]:
    """Factory: `start_worker(env_overrides=None, *, wait=True, timeout=60, **kwargs)`.

    Starts a WorkerProcess with `chaos_env` + `env_overrides` (kwargs go to WorkerProcess:
    queues, concurrency, name, extra_args) and, unless wait=False, waits until it is ready.
    Every worker started is terminated at teardown (SIGTERM, then SIGKILL to its whole
    process group), before the proxy, Redis and the database are torn down. Worker logs
    (var/chaos/<name>-*.log) are kept only if the test failed.
    """
    failed_before = request.session.testsfailed
    started: list[WorkerProcess] = []

    def start(env_overrides: Mapping[str, str] | None = None, *, wait: bool = True,
              timeout: float = 60.0, **kwargs) -> WorkerProcess:
        worker = WorkerProcess({**chaos_env, **(env_overrides or {})}, **kwargs)
        started.append(worker)
        worker.start()
        if wait:
            worker.wait_ready(timeout)
        return worker

    yield start
    errors: list[BaseException] = []
    for worker in reversed(started):
        try:
            worker.terminate(timeout=5.0)
        except Exception as exc:  # terminate the others, then report
            errors.append(exc)
    if errors:
        raise errors[0]
    if _passed(request, failed_before):
        for worker in started:
            worker.log_path.unlink(missing_ok=True)


@pytest.fixture
def stripe_server(settings) -> Iterator[StripeServer]:
    """The Stripe sandbox on a free port; this process's SDK points at it.

    Workers need `start_worker(stripe_server.env)` (STRIPE_API_BASE).
    """
    server = StripeServer().start()
    settings.STRIPE_API_BASE = server.url
    try:
        yield server
    finally:
        server.stop()


REPORT = LOG_DIR / "report.md"


@pytest.fixture
def report_line(request: pytest.FixtureRequest) -> Callable[[str], None]:
    """Append what a scenario measured (what was killed, counts, recovery time) to
    var/chaos/report.md, one line per scenario; scripts/chaos prints it at the end."""

    def write(line: str) -> None:
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        with REPORT.open("a") as report:
            report.write(f"- `{request.node.name}`: {line}\n")

    return write
