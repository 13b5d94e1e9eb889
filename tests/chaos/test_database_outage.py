"""PostgreSQL cut away from the workers (a TCP proxy drops every connection and refuses new
ones) mid-run and while runs start: nothing is lost, nothing runs twice, every record ends."""

from __future__ import annotations

import time

import pytest
from django.utils import timezone

from automation.models import JobRun
from automation.registry import get_job
from automation.runs import enqueue_run
from communities.models import Community

from .harness import use_broker, use_redis, wait_until
from .scenarios import (
    MEMBERS,
    OUTAGE_SECONDS,
    SMTP_DELAY,
    Deliveries,
    mail_env,
    seed_digest_community,
    settle,
    timed,
    wait_for_sent,
)

pytestmark = pytest.mark.chaos


def test_database_cut_mid_digest(start_worker, chaos_env, pg_proxy, smtp_server,
                                 community: Community, report_line) -> None:
    """The database goes away for OUTAGE_SECONDS while a digest is being sent: the attempt
    is retried on the platform's budget without writing through the dead connection, and
    once the database is back the same run finishes: every member has the digest, with at
    most one duplicate (the message whose `sent` could not be recorded)."""
    recipients = seed_digest_community(community)
    smtp_server.handler.delay = SMTP_DELAY
    worker = start_worker(mail_env(smtp_server.port))
    with use_broker(chaos_env["CELERY_BROKER_URL"]), use_redis(chaos_env["REDIS_URL"]):
        run = enqueue_run(get_job("daily_community_digest"), community,
                          trigger=JobRun.Trigger.MANUAL, now=timezone.now())
        sent_before_cut = wait_for_sent(smtp_server, MEMBERS // 3)
        pg_proxy.cut()
        time.sleep(OUTAGE_SECONDS)
        pg_proxy.restore()
        with timed() as elapsed:
            run, _ = settle(run, 180, log=lambda: worker.log_text(tail=60))
            recovery = elapsed()

    mail = Deliveries.of(smtp_server)
    assert run.status == JobRun.Status.SUCCEEDED, run.error_message
    assert mail.missing(recipients) == []
    assert mail.duplicates <= 1
    assert worker.alive
    report_line(f"PostgreSQL cut for {OUTAGE_SECONDS:g} s mid-digest at "
                f"{sent_before_cut}/{MEMBERS} sent: {len(recipients)}/{len(recipients)} "
                f"received, {mail.duplicates} duplicate, run succeeded after {run.attempts} "
                f"attempts, {recovery} s from restore to completion")


def test_database_cut_while_runs_start(start_worker, chaos_env, pg_proxy,
                                       community: Community, other_community: Community,
                                       report_line) -> None:
    """Runs queued while the database is unreachable fail to even read their setting; their
    messages are retried, not acknowledged and lost, and each runs exactly once after."""
    worker = start_worker()
    count = 10
    with use_broker(chaos_env["CELERY_BROKER_URL"]), use_redis(chaos_env["REDIS_URL"]) as r:
        pg_proxy.cut()
        runs = [enqueue_run(get_job("test_sleep"), c, trigger=JobRun.Trigger.MANUAL,
                            now=timezone.now(), params={"seconds": 0.05})
                for _ in range(count // 2) for c in (community, other_community)]
        time.sleep(OUTAGE_SECONDS)
        pg_proxy.restore()
        with timed() as elapsed:
            for run in runs:
                settle(run, 180, log=lambda: worker.log_text(tail=60))
            recovery = elapsed()
        executions = r.llen(f"test:ran:{community.pk}") + r.llen(f"test:ran:{other_community.pk}")

    statuses = set(JobRun.objects.filter(pk__in=[run.pk for run in runs])
                   .values_list("status", flat=True))
    # Runs of one community overlap only through the lock: some may be skipped as
    # `already_running`, none is lost, none is left unfinished, none ran twice.
    assert statuses <= {JobRun.Status.SUCCEEDED, JobRun.Status.SKIPPED}
    succeeded = JobRun.objects.filter(pk__in=[r.pk for r in runs], status="succeeded").count()
    assert executions == succeeded
    wait_until(lambda: worker.alive, 1)
    report_line(f"PostgreSQL cut for {OUTAGE_SECONDS:g} s while {count} runs were queued: "
                f"all {count} ended ({succeeded} succeeded, {count - succeeded} skipped as "
                f"overlapping), {executions} executions, {recovery} s from restore to the last")
