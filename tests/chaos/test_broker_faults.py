"""The broker goes away under busy workers: Redis (with AOF) killed and restarted, RabbitMQ's
connections cut; and a whole worker lost on RabbitMQ, which hands its message back at once.

Asserted from the outside: the worker processes are still alive, every queued run ends
`succeeded`, and each ran exactly once (its marker in Redis, its record)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from django.utils import timezone

from automation.models import JobRun
from automation.registry import get_job
from automation.runs import enqueue_run
from communities.models import Community
from tests.brokers import purge_queues

from .harness import RedisServer, TcpProxy, broker_counts, use_broker, use_redis, wait_until
from .scenarios import (
    MEMBERS,
    OUTAGE_SECONDS,
    SMTP_DELAY,
    Deliveries,
    assert_each_succeeded_once,
    mail_env,
    seed_digest_community,
    settle,
    timed,
    wait_for_sent,
)

pytestmark = pytest.mark.chaos
RUNS = 30


@pytest.fixture(autouse=True)
def prompt_republishing(settings) -> None:
    """A job whose retry could not be published while the broker was away is handed back
    to the broker, or failing that republished by the reaper once overdue: 15 s here
    instead of the 300 s default, so the scenario measures the mechanism, not the wait."""
    settings.AUTOMATION_REQUEUE_AFTER_SECONDS = 15


def _queue_sleepers(communities: list[Community], count: int, seconds: float) -> list[JobRun]:
    return [enqueue_run(get_job("test_sleep"), communities[i % len(communities)],
                        trigger=JobRun.Trigger.MANUAL, now=timezone.now(),
                        params={"seconds": seconds})
            for i in range(count)]


def _settle_all(runs: list[JobRun], timeout: float, log) -> float:
    with timed() as elapsed:
        for run in runs:
            settle(run, timeout, log=log)
        return elapsed()


def _executions(redis, communities: list[Community]) -> int:
    return sum(redis.llen(f"test:ran:{c.pk}") for c in communities)


@pytest.fixture
def many_communities(transactional_db) -> list[Community]:
    return [Community.objects.create(name=f"Chaos {n}", slug=f"chaos-{n}", timezone="UTC")
            for n in range(RUNS)]


def test_redis_broker_restart_under_busy_workers(start_worker, chaos_env, chaos_redis,
                                                 many_communities, report_line) -> None:
    """SIGKILL the Redis that is broker and lock store (AOF on) while runs execute and
    more wait, bring it back after a few seconds: the worker survives (no crash while it
    restores unacknowledged messages), and every run ends `succeeded`, each executed once."""
    worker = start_worker()
    with use_broker(chaos_env["CELERY_BROKER_URL"]), use_redis(chaos_env["REDIS_URL"]):
        runs = _queue_sleepers(many_communities, RUNS, 0.3)
        wait_until(lambda: JobRun.objects.filter(pk__in=[r.pk for r in runs],
                                                 status="succeeded").count() >= 4, 30)
        chaos_redis.restart(kill=True, down_for=3.0)
        recovery = _settle_all(runs, 180, lambda: worker.log_text(tail=80))
        executions = _executions(chaos_redis.client(), many_communities)

    assert_each_succeeded_once(runs, executions)
    assert worker.alive, worker.log_text(tail=80)
    report_line(f"Redis (broker + locks, AOF) SIGKILLed for 3 s with {RUNS} runs queued and "
                f"running: worker alive, {RUNS}/{RUNS} succeeded, {executions} executions, "
                f"{recovery} s from restart to the last")


@pytest.fixture
def rabbitmq_proxy(rabbitmq_url: str) -> Iterator[tuple[TcpProxy, str]]:
    """A cuttable path to this session's RabbitMQ vhost: (proxy, broker URL through it)."""
    purge_queues(rabbitmq_url)
    with TcpProxy(("127.0.0.1", 5672)) as proxy:
        yield proxy, proxy.proxied_url(rabbitmq_url)
    purge_queues(rabbitmq_url)


def test_rabbitmq_connections_cut_under_busy_workers(start_worker, chaos_env, rabbitmq_proxy,
                                                     many_communities, report_line) -> None:
    """Every connection to RabbitMQ dropped for OUTAGE_SECONDS while runs execute and more
    wait: the worker reconnects, unacknowledged messages come back, the run lock keeps a
    redelivered run from executing twice, and every run ends `succeeded`, once."""
    proxy, broker = rabbitmq_proxy
    worker = start_worker({"CELERY_BROKER_URL": broker})
    with use_broker(broker), use_redis(chaos_env["REDIS_URL"]) as redis:
        runs = _queue_sleepers(many_communities, RUNS, 0.3)
        wait_until(lambda: JobRun.objects.filter(pk__in=[r.pk for r in runs],
                                                 status="succeeded").count() >= 4, 30)
        proxy.cut()
        time.sleep(OUTAGE_SECONDS)
        proxy.restore()
        recovery = _settle_all(runs, 180, lambda: worker.log_text(tail=80))
        executions = _executions(redis, many_communities)

    assert_each_succeeded_once(runs, executions)
    assert worker.alive, worker.log_text(tail=80)
    report_line(f"RabbitMQ connections cut for {OUTAGE_SECONDS:g} s with {RUNS} runs queued "
                f"and running: worker alive, {RUNS}/{RUNS} succeeded, {executions} "
                f"executions, {recovery} s from restore to the last")


def test_whole_worker_lost_on_rabbitmq(start_worker, chaos_env, rabbitmq_proxy, smtp_server,
                                       community: Community, report_line) -> None:
    """On RabbitMQ a dead consumer's unacknowledged message returns as soon as its
    connection drops: the standby worker continues the digest at once, without waiting for
    the reaper, and every member has it."""
    _, broker = rabbitmq_proxy
    recipients = seed_digest_community(community)
    smtp_server.handler.delay = SMTP_DELAY
    env = {**mail_env(smtp_server.port), "CELERY_BROKER_URL": broker}
    first = start_worker(env, name="first")
    standby = start_worker(env, name="standby")
    with use_broker(broker), use_redis(chaos_env["REDIS_URL"]):
        run = enqueue_run(get_job("daily_community_digest"), community,
                          trigger=JobRun.Trigger.MANUAL, now=timezone.now())
        wait_for_sent(smtp_server, MEMBERS // 3)
        run.refresh_from_db()
        victim = first if run.worker_hostname.startswith("first") else standby
        survivor = standby if victim is first else first
        victim.kill_all()
        with timed() as elapsed:
            # No reaper here: the broker alone brings the message back.
            run = wait_until(lambda: JobRun.objects.get(pk=run.pk).is_finished
                             and JobRun.objects.get(pk=run.pk), 120,
                             message=lambda: survivor.log_text(tail=60))
            recovery = elapsed()

    mail = Deliveries.of(smtp_server)
    assert run.status == JobRun.Status.SUCCEEDED, run.error_message
    assert mail.missing(recipients) == []
    assert mail.duplicates <= 1
    assert run.resumes == 0 and run.attempts == 2
    report_line(f"worker process group SIGKILLed mid-digest on RabbitMQ: redelivered to the "
                f"standby worker at once, {len(recipients)}/{len(recipients)} received, "
                f"{mail.duplicates} duplicate, no reaper needed, {recovery} s to completion")


def test_queued_messages_lost_with_a_non_persistent_broker(start_worker, chaos_env,
                                                           many_communities, settings,
                                                           report_line) -> None:
    """A broker Redis without persistence restarts while runs wait (no worker consuming):
    every message is gone. The reaper sees queued runs whose queue has moved past them and
    publishes them again; each runs once."""
    settings.AUTOMATION_REQUEUE_AFTER_SECONDS = 5
    with RedisServer(appendonly=False) as broker_redis:
        broker = broker_redis.url(0)
        with use_broker(broker), use_redis(chaos_env["REDIS_URL"]) as redis:
            runs = _queue_sleepers(many_communities, RUNS, 0.05)
            assert broker_counts(broker).total == RUNS
            broker_redis.restart(kill=True)
            assert broker_counts(broker).total == 0  # lost with the broker
            worker = start_worker({"CELERY_BROKER_URL": broker})
            with timed() as elapsed:
                reports = []
                for run in runs:
                    _, seen = settle(run, 120, log=lambda: worker.log_text(tail=60))
                    reports.extend(seen)
                recovery = elapsed()
            executions = _executions(redis, many_communities)

    republished = sum(len(r.republished) for r in reports)
    assert_each_succeeded_once(runs, executions)
    assert republished == RUNS
    report_line(f"broker Redis without persistence restarted with {RUNS} runs queued (all "
                f"{RUNS} messages lost): {republished} republished by the reaper, {RUNS}/{RUNS} "
                f"succeeded, {executions} executions, {recovery} s to the last (re-publish "
                f"after {settings.AUTOMATION_REQUEUE_AFTER_SECONDS} s here, 300 s by default)")


def test_redis_broker_restart_while_one_job_runs(start_worker, chaos_env, chaos_redis,
                                                 smtp_server, community: Community,
                                                 many_communities, report_line) -> None:
    """Redis restarts while one pool process sends a digest and the other waits for work
    (the case that killed celery 5.7.0's worker with `AttributeError: 'NoneType' object has
    no attribute 'hostname'` as it restored the unacknowledged message): the worker
    reconnects, the digest completes, and runs queued afterwards run."""
    recipients = seed_digest_community(community)
    smtp_server.handler.delay = 0.03
    worker = start_worker(mail_env(smtp_server.port))
    with use_broker(chaos_env["CELERY_BROKER_URL"]), use_redis(chaos_env["REDIS_URL"]):
        digest = enqueue_run(get_job("daily_community_digest"), community,
                             trigger=JobRun.Trigger.MANUAL, now=timezone.now())
        wait_for_sent(smtp_server, 20)
        chaos_redis.restart(kill=False, down_for=2.0)
        time.sleep(3.0)  # the worker notices and reconnects (or dies)
        assert worker.alive, worker.log_text(tail=80)
        runs = _queue_sleepers(many_communities, RUNS // 3, 0.05)
        recovery = _settle_all([digest, *runs], 180, lambda: worker.log_text(tail=80))
        executions = _executions(chaos_redis.client(), many_communities)

    assert worker.alive, worker.log_text(tail=80)
    digest.refresh_from_db()
    assert digest.status == JobRun.Status.SUCCEEDED, digest.error_message
    mail = Deliveries.of(smtp_server)
    assert mail.missing(recipients) == [] and mail.duplicates <= 1
    assert_each_succeeded_once(runs, executions)
    report_line(f"Redis (broker + locks) restarted (down 2 s) while one job ran and the other "
                f"pool process idled: worker alive, digest {len(recipients)}/"
                f"{len(recipients)} received, {len(runs)}/{len(runs)} later runs succeeded, "
                f"{recovery} s")
