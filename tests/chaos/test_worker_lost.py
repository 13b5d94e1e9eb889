"""Workers killed mid-run: a pool process, the whole worker (its host gone), mid-digest and
mid-billing. Asserted at the SMTP sink, at the Stripe server and on the run records."""

from __future__ import annotations

import contextlib
from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from automation.models import JobRun
from automation.registry import get_job
from automation.runs import enqueue_run
from communities.models import Community

from .harness import use_broker, use_redis, wait_until
from .scenarios import (
    MEMBERS,
    SMTP_DELAY,
    Deliveries,
    assert_paid_once,
    mail_env,
    past_due_invoices,
    resumed,
    seed_digest_community,
    settle,
    timed,
    wait_for_sent,
)

pytestmark = pytest.mark.chaos


def _digest(community: Community) -> JobRun:
    return enqueue_run(get_job("daily_community_digest"), community,
                       trigger=JobRun.Trigger.MANUAL, now=timezone.now())


def test_pool_process_killed_mid_digest(start_worker, chaos_env, smtp_server,
                                        community: Community, report_line) -> None:
    """SIGKILL the pool process sending a digest: the worker requeues the message, the
    redelivery continues the same run record, and every member has the digest, with at
    most one duplicate (the message sent but not yet recorded when the process died)."""
    recipients = seed_digest_community(community)
    smtp_server.handler.delay = SMTP_DELAY
    worker = start_worker(mail_env(smtp_server.port))
    with use_broker(chaos_env["CELERY_BROKER_URL"]), use_redis(chaos_env["REDIS_URL"]):
        run = _digest(community)
        sent_before_kill = wait_for_sent(smtp_server, MEMBERS // 3)
        worker.kill_child()
        with timed() as elapsed:
            run, _ = settle(run, 120, log=lambda: worker.log_text(tail=60))
            recovery = elapsed()

    mail = Deliveries.of(smtp_server)
    assert run.status == JobRun.Status.SUCCEEDED, run.error_message
    assert mail.missing(recipients) == []
    assert mail.duplicates <= 1
    assert JobRun.objects.filter(job_name="daily_community_digest").count() == 1
    assert run.attempts == 2
    report_line(f"pool process SIGKILLed mid-digest at {sent_before_kill}/{MEMBERS} sent: "
                f"{len(recipients)}/{len(recipients)} received, {mail.duplicates} duplicate, "
                f"run succeeded after {run.attempts} attempts, {recovery} s to completion")


@pytest.mark.parametrize("kill", ["main_process", "process_group"])
def test_whole_worker_lost_mid_digest(kill: str, start_worker, chaos_env, smtp_server,
                                      community: Community, report_line) -> None:
    """SIGKILL the worker's main process (its pool dies with it) or its whole process group
    (the host gone) mid-digest of a manual run; a new worker comes up. Redis hands the lost
    message back only after the visibility timeout (4 h), so the run is resumed by the
    reaper once its lease has expired, and every member has the digest."""
    recipients = seed_digest_community(community)
    smtp_server.handler.delay = SMTP_DELAY
    env = mail_env(smtp_server.port)
    first = start_worker(env, name="first")
    with use_broker(chaos_env["CELERY_BROKER_URL"]), use_redis(chaos_env["REDIS_URL"]):
        run = _digest(community)
        sent_before_kill = wait_for_sent(smtp_server, MEMBERS // 3)
        if kill == "main_process":
            first.kill_main()
            # The orphaned pool notices its parent is gone and exits by itself.
            with contextlib.suppress(AssertionError):
                wait_until(lambda: not first.group_pids(), 10)
        first.kill_all()
        with timed() as elapsed:
            second = start_worker(env, name="second")
            run, reports = settle(run, 120, log=lambda: second.log_text(tail=60))
            recovery = elapsed()

    mail = Deliveries.of(smtp_server)
    assert run.status == JobRun.Status.SUCCEEDED, run.error_message
    assert mail.missing(recipients) == []
    assert mail.duplicates <= 1
    assert (run.resumes, resumed(reports)) == (1, 1)
    assert run.worker_hostname.startswith("second")
    report_line(f"worker {kill.replace('_', ' ')} SIGKILLed mid-digest at "
                f"{sent_before_kill}/{MEMBERS} "
                f"sent, new worker started: {len(recipients)}/{len(recipients)} received, "
                f"{mail.duplicates} duplicate, resumed once, {recovery} s to completion "
                f"(lease {settings.AUTOMATION_RUN_LEASE_SECONDS} s + a reaper pass)")


@pytest.mark.parametrize("kill", ["pool_process", "whole_worker"])
def test_worker_killed_mid_billing(kill: str, start_worker, chaos_env, stripe_server,
                                   community: Community, report_line) -> None:
    """Kill the worker while dunning charges invoices one by one (Stripe answers slowly):
    after recovery every invoice is paid, and Stripe executed exactly one charge per
    invoice (claims resent with the same idempotency key are replayed, not charged)."""
    invoices = 12
    ids = past_due_invoices(community, invoices, timezone.now() - timedelta(minutes=1),
                            stripe_server.sandbox)
    stripe_server.sandbox.response_delay = 0.3
    stripe_server.sandbox.delay_once = False
    worker = start_worker(stripe_server.env, name="billing-a")
    with use_broker(chaos_env["CELERY_BROKER_URL"]), use_redis(chaos_env["REDIS_URL"]):
        run = enqueue_run(get_job("subscription_delinquency_retry"), community,
                          trigger=JobRun.Trigger.MANUAL, now=timezone.now())
        wait_until(lambda: sum(stripe_server.charge_counts().values()) >= invoices // 3, 60,
                   message=lambda: worker.log_text(tail=40))
        if kill == "pool_process":
            worker.kill_child()
        else:
            worker.kill_all()
            worker = start_worker(stripe_server.env, name="billing-b")
        with timed() as elapsed:
            run, _ = settle(run, 120, log=lambda: worker.log_text(tail=60))
            recovery = elapsed()

    assert run.status == JobRun.Status.SUCCEEDED, run.error_message
    counts = assert_paid_once(stripe_server, ids)
    report_line(f"{kill.replace('_', ' ')} SIGKILLed mid-billing: {invoices}/{invoices} "
                f"invoices paid, max charges per invoice at Stripe {max(counts.values())}, "
                f"{recovery} s to completion")
