"""Tenant jobs on real prefork workers whose broker is RabbitMQ (a vhost of this session's own).

The test process publishes to the same vhost through `use_broker`; runs, locks and the test
database are the session's, as for the Redis-broker worker of tests/automation/
test_execution.py.
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Iterator
from datetime import datetime

import pytest
from django.utils import timezone
from django_celery_beat.models import PeriodicTask
from django_celery_beat.schedulers import DatabaseScheduler, ModelEntry

from automation.connections import get_redis
from automation.models import JobRun
from automation.registry import get_job
from automation.runs import enqueue_run
from automation.schedules import periodic_task_name
from communities.models import Community
from monitoring.broker import queue_states
from tests.brokers import ROOT, celery_workers, node_name, purge_queues, use_broker
from tests.conftest import wait_for

pytestmark = pytest.mark.worker


@pytest.fixture
def rabbitmq(rabbitmq_url, django_db_setup, transactional_db) -> Iterator[str]:
    """The app on the session's vhost, its queues empty; data committed for the workers."""
    purge_queues(rabbitmq_url)
    with use_broker(rabbitmq_url):
        yield rabbitmq_url
    purge_queues(rabbitmq_url)


def finished(run: JobRun, timeout: float = 20.0) -> JobRun:
    def done() -> JobRun | None:
        run.refresh_from_db()
        return run if run.is_finished else None

    return wait_for(done, timeout=timeout)


def test_jobs_run_end_to_end_on_rabbitmq(rabbitmq, community: Community) -> None:
    """Manual run, a beat-published run and a retried run, all through RabbitMQ."""
    from config.celery import app

    name = f"rmq-e2e-{os.getpid()}"
    with celery_workers(rabbitmq, [name], concurrency=2):
        # Manual: the run record is written, the message published on commit.
        manual = enqueue_run(get_job("test_sleep"), community, trigger=JobRun.Trigger.MANUAL,
                             now=timezone.now(), params={"seconds": 0.2})
        # Retries: each retry is a new message with a countdown, held by the worker until due.
        flaky = enqueue_run(get_job("test_flaky"), community, trigger=JobRun.Trigger.MANUAL,
                            now=timezone.now(), params={"failures": 2})
        manual = finished(manual)
        # Scheduled (after the manual run: same job and community, one at a time), published
        # as beat publishes a row; the worker creates the run.
        row = PeriodicTask.objects.get(name=periodic_task_name(community.pk, "test_sleep"))
        DatabaseScheduler(app=app, lazy=True).apply_entry(ModelEntry(row, app=app),
                                                          producer=None)

        flaky = finished(flaky)
        scheduled = finished(wait_for(lambda: JobRun.objects.filter(
            job_name="test_sleep", trigger=JobRun.Trigger.SCHEDULE).first()))
        for run in (manual, flaky, scheduled):
            assert run.status == JobRun.Status.SUCCEEDED, (run.status, run.error_message)
            assert run.worker_hostname == node_name(name)
        assert manual.result == {"slept": 0.2}
        assert (flaky.attempts, flaky.result) == (3, {"attempt": 3})
        assert get_redis().llen(f"test:ran:{community.pk}") == 2
        # Nothing left waiting; the worker is the automation queue's one consumer.
        states, unacked = queue_states(["automation"])
        assert (states[0].depth, states[0].consumers, unacked) == (0, 1, None)


def received_at(node: str, task_id: str) -> float | None:
    """When the worker logged that it received the task's message (epoch seconds)."""
    log = ROOT / "var" / f"test-worker-{node.split('@')[0]}.log"
    match = re.search(rf"^\[([0-9-]+ [0-9:,]+): INFO/MainProcess\] Task \S+\[{task_id}\] "
                      r"received", log.read_text(), re.MULTILINE)
    if match is None:
        return None
    return datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()


def test_killed_workers_message_is_redelivered_at_once(rabbitmq, community: Community) -> None:
    """SIGKILL the worker running a job: RabbitMQ sees its connection drop and hands the
    unacknowledged message to the other worker at once (Redis would wait for the visibility
    timeout, 4 h), which then runs the same run to success."""
    first, second = f"rmq-a-{os.getpid()}", f"rmq-b-{os.getpid()}"
    with celery_workers(rabbitmq, [first, second], concurrency=1) as workers:
        spec = get_job("test_sleep")
        run = JobRun.objects.create(
            job_name=spec.name, community=community, trigger=JobRun.Trigger.MANUAL,
            scheduled_for=timezone.now(), queue=spec.queue, params={"seconds": 3},
        )
        # As enqueue_run publishes it, with time limits that leave room for two attempts.
        sent = spec.func.task.apply_async(
            kwargs={"community_id": community.pk, "trigger": JobRun.Trigger.MANUAL,
                    "run_id": run.pk, "scheduled_for": run.scheduled_for.isoformat(),
                    "params": {"seconds": 3}},
            queue=spec.queue, soft_time_limit=20, time_limit=25,
        )

        def running_on() -> str | None:
            run.refresh_from_db()
            return run.worker_hostname if run.status == JobRun.Status.RUNNING else None

        holder = wait_for(running_on, timeout=15, interval=0.02)
        other = next(node for node in workers if node != holder)
        ran = f"test:ran:{community.pk}"
        wait_for(lambda: get_redis().llen(ran) == 1, timeout=5, interval=0.01)  # job started
        assert received_at(other, sent.id) is None
        killed = time.time()
        os.killpg(workers[holder].pid, signal.SIGKILL)  # main process and its pool child
        workers[holder].wait(timeout=5)

        redelivered = wait_for(lambda: received_at(other, sent.id), timeout=10) - killed
        assert redelivered < 2, f"redelivered {redelivered:.2f} s after the kill"
        # The second attempt starts (once the dead attempt's run lock is seen to be free).
        wait_for(lambda: get_redis().llen(ran) == 2, timeout=15, interval=0.02)

        run = finished(run)
        assert run.status == JobRun.Status.SUCCEEDED, (run.status, run.error_message)
        assert (run.worker_hostname, run.attempts) == (other, 2)
        assert run.result == {"slept": 3.0}
