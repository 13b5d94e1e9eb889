"""The chaos harness itself, for real: proxies cut, servers killed, workers killed."""

from __future__ import annotations

import http.client
import threading
import time

import psycopg
import pytest
import redis
from django.utils import timezone

from automation.models import JobRun
from automation.registry import get_job
from automation.runs import enqueue_run
from communities.models import Community
from config.celery import app
from tests.conftest import _database_url

from .harness import (
    RedisServer,
    StripeServer,
    TcpProxy,
    WorkerProcess,
    broker_counts,
    group_pids,
    is_running,
    use_broker,
    use_redis,
    wait_until,
)

pytestmark = pytest.mark.chaos


def connect(dsn: str) -> psycopg.Connection:
    return psycopg.connect(dsn, autocommit=True, connect_timeout=3)


def backend_exists(direct: psycopg.Connection, pid: int) -> bool:
    row = direct.execute("select count(*) from pg_stat_activity where pid = %s", [pid])
    return row.fetchone()[0] == 1


# --- TcpProxy ------------------------------------------------------------------------


# `db`: pytest-django creates the test database only for tests that ask for one.
def test_proxy_cut_breaks_live_connections_and_refuses_until_restore(
        db, pg_proxy: TcpProxy) -> None:
    dsn = pg_proxy.proxied_url(_database_url())
    with connect(_database_url()) as direct:
        live = connect(dsn)
        assert live.execute("select 1").fetchone() == (1,)
        backend = live.info.backend_pid
        assert pg_proxy.active == 1 and pg_proxy.accepted >= 1

        pg_proxy.cut()
        assert pg_proxy.active == 0
        with pytest.raises(psycopg.OperationalError):
            live.execute("select 1")
        assert live.broken
        # The server side was reset too: the idle backend ends at once.
        wait_until(lambda: not backend_exists(direct, backend), 5,
                   message="backend survived the cut")
        started = time.monotonic()
        with pytest.raises(psycopg.OperationalError):
            connect(dsn)
        assert time.monotonic() - started < 2  # refused fast, not a hang
        assert pg_proxy.refused >= 1
        # Only the proxied path is down.
        assert direct.execute("select 1").fetchone() == (1,)

        pg_proxy.restore()
        with connect(dsn) as again:
            assert again.execute("select 2").fetchone() == (2,)
        live.close()


def test_proxy_cut_interrupts_a_query_in_flight(db, pg_proxy: TcpProxy) -> None:
    errors: list[BaseException] = []
    live = connect(pg_proxy.proxied_url(_database_url()))
    backend = live.info.backend_pid

    def query() -> None:
        try:
            live.execute("select pg_sleep(5)")
        except psycopg.OperationalError as exc:
            errors.append(exc)

    thread = threading.Thread(target=query)
    with connect(_database_url()) as direct:
        try:
            thread.start()
            wait_until(lambda: direct.execute(
                "select 1 from pg_stat_activity where pid = %s and query like %s",
                [backend, "%pg_sleep%"]).fetchone(), 3)
            started = time.monotonic()
            pg_proxy.cut()
            thread.join(3)
            assert errors, "the query survived the cut"
            assert time.monotonic() - started < 1.5
        finally:
            # The server notices a dead client only when pg_sleep returns: end it now.
            direct.execute("select pg_terminate_backend(%s)", [backend])
            thread.join(6)
            live.close()


def test_proxy_in_front_of_redis(chaos_redis: RedisServer) -> None:
    with TcpProxy(("127.0.0.1", chaos_redis.port)) as proxy:
        client = redis.Redis.from_url(proxy.proxied_url(chaos_redis.url(1)),
                                      socket_timeout=2, retry=None)
        client.set("k", "v")
        proxy.cut()
        with pytest.raises(redis.ConnectionError):
            client.get("k")
        with pytest.raises(redis.ConnectionError):
            client.get("k")  # a new connection is refused too
        proxy.restore()
        assert client.get("k") == b"v"
        client.close()
    assert chaos_redis.client(1).get("k") == b"v"


# --- RedisServer ---------------------------------------------------------------------


def test_redis_aof_keeps_data_across_sigkill(chaos_redis: RedisServer) -> None:
    client = chaos_redis.client()
    client.rpush("chaos:list", "a", "b", "c")
    first_pid, port = chaos_redis.pid, chaos_redis.port

    chaos_redis.kill()
    assert not chaos_redis.alive
    with pytest.raises(redis.ConnectionError):
        client.ping()
    chaos_redis.start()

    assert chaos_redis.pid != first_pid and chaos_redis.port == port
    assert client.lrange("chaos:list", 0, -1) == [b"a", b"b", b"c"]  # same client, reconnected
    chaos_redis.restart(kill=True, down_for=0.2)
    assert client.lrange("chaos:list", 0, -1) == [b"a", b"b", b"c"]
    client.close()


def test_redis_without_aof_forgets_on_restart() -> None:
    with RedisServer(appendonly=False) as server:
        client = server.client()
        client.set("k", "v")
        server.restart(kill=False)  # even a clean SIGTERM: --save "" and no AOF
        assert client.get("k") is None
        client.close()
    assert not server.alive and not server.dir.exists()
    server.log_path.unlink()


# --- use_broker and broker_counts ----------------------------------------------------


def test_use_broker_publishes_there_and_restores(chaos_redis: RedisServer) -> None:
    original = app.conf.broker_url
    url = chaos_redis.url(1)
    with use_broker(url):
        assert app.connection_for_write().as_uri().endswith(f":{chaos_redis.port}/1")
        app.send_task("monitoring.beat_heartbeat")
        app.send_task("notifications.deliver_pending")
        counts = broker_counts(url)
    assert counts.queued == {"automation": 1, "notifications": 1, "billing": 0}
    assert counts.unacked == 0 and counts.total == 2
    assert app.conf.broker_url == original
    assert f":{chaos_redis.port}/" not in app.connection_for_write().as_uri()


def test_use_redis_points_get_redis_elsewhere(chaos_redis: RedisServer) -> None:
    from automation.connections import get_redis

    before = get_redis().connection_pool.connection_kwargs["port"]
    with use_redis(chaos_redis.url(0)) as client:
        assert get_redis() is client
        get_redis().set("chaos:marker", "1")
    assert chaos_redis.client().get("chaos:marker") == b"1"
    assert get_redis().connection_pool.connection_kwargs["port"] == before


# --- WorkerProcess -------------------------------------------------------------------


def run_finished(run: JobRun) -> JobRun | None:
    run.refresh_from_db()
    return run if run.is_finished else None


def test_worker_runs_a_job_through_the_proxy_and_kill_all_leaves_nothing(
        start_worker, chaos_env, chaos_redis: RedisServer, pg_proxy: TcpProxy,
        community: Community) -> None:
    worker = start_worker()
    assert worker.alive and worker.ping()
    pids = worker.group_pids()
    assert len(worker.child_pids()) == 2 and len(pids) == 3

    with use_broker(chaos_env["CELERY_BROKER_URL"]), use_redis(chaos_env["REDIS_URL"]) as r:
        run = enqueue_run(get_job("test_sleep"), community, trigger=JobRun.Trigger.MANUAL,
                          now=timezone.now())
        run = wait_until(lambda: run_finished(run), 20,
                         message=lambda: worker.log_text(tail=40))
        assert run.status == JobRun.Status.SUCCEEDED, run.error
        assert run.worker_hostname == worker.nodename
        assert r.llen(f"test:ran:{community.pk}") == 1  # the worker's REDIS_URL
        assert broker_counts(chaos_env["CELERY_BROKER_URL"]).total == 0
    assert pg_proxy.accepted >= 1  # the worker reached the database through the proxy

    worker.kill_all()
    assert not worker.alive and worker.returncode == -9
    assert group_pids(worker.pid) == []
    assert not [pid for pid in pids if is_running(pid)]


def test_kill_child_hits_the_busy_pool_process_and_kill_main_orphans_the_pool(
        start_worker, chaos_env, community: Community) -> None:
    worker = start_worker()
    children = worker.child_pids()
    with use_broker(chaos_env["CELERY_BROKER_URL"]), use_redis(chaos_env["REDIS_URL"]):
        enqueue_run(get_job("test_sleep"), community, trigger=JobRun.Trigger.MANUAL,
                    now=timezone.now(), params={"seconds": 1.5})
        busy = wait_until(worker.busy_child_pid, 10, interval=0.05,
                          message=lambda: worker.log_text(tail=40))
        assert busy in children

        assert worker.kill_child() == busy
        assert not is_running(busy)
        # The main process forks a replacement and keeps answering.
        wait_until(lambda: len(worker.child_pids()) == 2, 10,
                   message=lambda: worker.log_text(tail=40))
        assert busy not in worker.child_pids() and worker.alive and worker.ping()

    pool = worker.kill_main()
    assert not worker.alive and len(pool) == 2
    worker.kill_all()  # whatever the pool did when orphaned, the group is now empty
    assert group_pids(worker.pid) == []


def test_wait_ready_fails_fast_when_the_worker_cannot_start(chaos_env) -> None:
    worker = WorkerProcess(chaos_env, extra_args=["--no-such-option"]).start()
    try:
        with pytest.raises(RuntimeError, match="exited"):
            worker.wait_ready(timeout=20)
    finally:
        worker.terminate(timeout=5)
    assert group_pids(worker.pid) == []
    worker.log_path.unlink()


# --- StripeServer --------------------------------------------------------------------


def pay(server: StripeServer, invoice: str, key: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=3)
    try:
        conn.request("POST", f"/v1/invoices/{invoice}/pay", body="",
                     headers={"Authorization": "Bearer sk_test_local", "Idempotency-Key": key,
                              "Content-Type": "application/x-www-form-urlencoded"})
        return conn.getresponse().status
    finally:
        conn.close()


def test_stripe_server_outages_and_charge_counts(stripe_server: StripeServer) -> None:
    port = stripe_server.port
    assert pay(stripe_server, "in_a", "k1") == 200
    assert pay(stripe_server, "in_a", "k1") == 200  # idempotent replay: not a charge

    keep_alive = http.client.HTTPConnection("127.0.0.1", port, timeout=3)
    keep_alive.request("POST", "/v1/invoices/in_b/pay", body="",
                       headers={"Authorization": "Bearer sk_test_local"})
    assert keep_alive.getresponse().read() and stripe_server.charges_for("in_b") == 1

    with stripe_server.outage():
        with pytest.raises(ConnectionRefusedError):
            pay(stripe_server, "in_c", "k3")
        # An open keep-alive connection is cut as well, not served on.
        with pytest.raises((http.client.HTTPException, ConnectionError)):
            keep_alive.request("POST", "/v1/invoices/in_b/pay", body="",
                               headers={"Authorization": "Bearer sk_test_local"})
            keep_alive.getresponse()
    keep_alive.close()
    assert stripe_server.port == port

    with stripe_server.outage(status=503):
        assert pay(stripe_server, "in_c", "k3") == 503
    assert pay(stripe_server, "in_c", "k3") == 200  # the outage executed nothing

    assert stripe_server.charge_counts() == {"in_a": 1, "in_b": 1, "in_c": 1}
    assert stripe_server.charges_for("in_a") == 1
    assert stripe_server.env == {"STRIPE_API_BASE": stripe_server.url}
