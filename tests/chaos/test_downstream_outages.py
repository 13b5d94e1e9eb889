"""SMTP, Slack, Stripe and S3 unreachable for a while (a TCP proxy in front of each local
server, cut and restored): the run is retried with the job's backoff and completes, and the
outside world sees each effect once. The SMTP case is in the normal suite; the others, whose
first retry comes 15-60 s later, run with scripts/chaos."""

from __future__ import annotations

import time
from collections import Counter
from datetime import timedelta

import boto3
import pytest
from django.utils import timezone

from automation.models import JobRun
from automation.registry import get_job
from automation.runs import enqueue_run
from communities.models import Community, Member, Post
from moderation.models import Escalation, Flag, Severity

from .harness import TcpProxy, use_broker, use_redis
from .scenarios import (
    OUTAGE_SECONDS,
    SMTP_DELAY,
    Deliveries,
    assert_paid_once,
    full_only,
    mail_env,
    past_due_invoices,
    seed_digest_community,
    settle,
    timed,
    wait_for_sent,
)

pytestmark = pytest.mark.chaos
# The job's whole retry budget must outlast the outage: a generous bound for the wait.
SETTLE_SECONDS = OUTAGE_SECONDS + 600


def _manual(job: str, community: Community) -> JobRun:
    return enqueue_run(get_job(job), community, trigger=JobRun.Trigger.MANUAL,
                       now=timezone.now())


def _outage(proxy: TcpProxy) -> None:
    proxy.cut()
    time.sleep(OUTAGE_SECONDS)
    proxy.restore()


def test_smtp_down_mid_digest(start_worker, chaos_env, smtp_server, community: Community,
                              report_line) -> None:
    """The mail server drops every connection mid-digest and refuses new ones: the members
    not yet sent stay `pending`, the run is retried, and every member has the digest once
    (at most one duplicate: a message accepted as the connection died)."""
    recipients = seed_digest_community(community)
    smtp_server.handler.delay = SMTP_DELAY
    with TcpProxy(("127.0.0.1", smtp_server.port)) as smtp_proxy:
        worker = start_worker(mail_env(smtp_proxy.port))
        with use_broker(chaos_env["CELERY_BROKER_URL"]), use_redis(chaos_env["REDIS_URL"]):
            run = _manual("daily_community_digest", community)
            sent_before = wait_for_sent(smtp_server, len(recipients) // 3)
            _outage(smtp_proxy)
            with timed() as elapsed:
                run, _ = settle(run, SETTLE_SECONDS, log=lambda: worker.log_text(tail=60))
                recovery = elapsed()

    mail = Deliveries.of(smtp_server)
    assert run.status == JobRun.Status.SUCCEEDED, run.error_message
    assert mail.missing(recipients) == []
    assert mail.duplicates <= 1
    report_line(f"SMTP cut for {OUTAGE_SECONDS:g} s mid-digest at {sent_before}/"
                f"{len(recipients)} sent: {len(recipients)}/{len(recipients)} received, "
                f"{mail.duplicates} duplicate, {run.attempts} attempts, {recovery} s from "
                f"restore to completion (the job's backoff: first retry after 30-60 s)")


@full_only
def test_slack_down_during_escalations(start_worker, chaos_env, receiver,
                                       community: Community, report_line) -> None:
    """Trust & Safety's Slack webhook is unreachable: breached flags are escalated once
    each after it returns, never twice."""
    now = timezone.now()
    flags = []
    for n in range(6):
        post = Post.objects.create(community=community, title=f"flagged {n}")
        flags.append(Flag.objects.create(community=community, post=post,
                                         severity=Severity.CRITICAL, reason="threat",
                                         created_at=now - timedelta(hours=2)))
    receiver.respond = lambda request: (200, {"Content-Type": "text/plain"}, b"ok")
    with TcpProxy(("127.0.0.1", int(receiver.base_url.rsplit(":", 1)[1]))) as slack:
        worker = start_worker({"WEBHOOKS_ALLOW_LOOPBACK": "true",
                               "TRUST_SAFETY_SLACK_WEBHOOK_URL":
                                   f"http://127.0.0.1:{slack.port}/services/T0/B0/x"})
        with use_broker(chaos_env["CELERY_BROKER_URL"]), use_redis(chaos_env["REDIS_URL"]):
            slack.cut()
            run = _manual("moderation_sla_checker", community)
            time.sleep(OUTAGE_SECONDS)
            slack.restore()
            with timed() as elapsed:
                run, _ = settle(run, SETTLE_SECONDS, log=lambda: worker.log_text(tail=60))
                recovery = elapsed()

    assert run.status == JobRun.Status.SUCCEEDED, run.error_message
    posts = [r for r in receiver.requests if r.method == "POST"]
    per_flag = Counter(next(f.pk for f in flags if f"/flag/{f.pk}/" in r.body.decode())
                       for r in posts)
    assert per_flag == {f.pk: 1 for f in flags}
    assert Escalation.objects.filter(status=Escalation.Status.SENT).count() == len(flags)
    report_line(f"Slack cut for {OUTAGE_SECONDS:g} s during escalations: {len(flags)}/"
                f"{len(flags)} flags escalated, max posts per flag {max(per_flag.values())}, "
                f"{run.attempts} attempts, {recovery} s from restore to completion")


@full_only
def test_stripe_down_during_dunning(start_worker, chaos_env, stripe_server,
                                    community: Community, report_line) -> None:
    """Stripe unreachable mid-dunning (connections dropped): every invoice is paid after it
    returns and Stripe executed one charge per invoice."""
    ids = past_due_invoices(community, 12, timezone.now() - timedelta(minutes=1),
                            stripe_server.sandbox)
    stripe_server.sandbox.response_delay = 0.2
    stripe_server.sandbox.delay_once = False
    with TcpProxy(("127.0.0.1", stripe_server.port)) as stripe:
        worker = start_worker({"STRIPE_API_BASE": f"http://127.0.0.1:{stripe.port}"})
        with use_broker(chaos_env["CELERY_BROKER_URL"]), use_redis(chaos_env["REDIS_URL"]):
            run = _manual("subscription_delinquency_retry", community)
            time.sleep(1.0)  # a few invoices in
            _outage(stripe)
            with timed() as elapsed:
                run, _ = settle(run, SETTLE_SECONDS, log=lambda: worker.log_text(tail=60))
                recovery = elapsed()

    assert run.status == JobRun.Status.SUCCEEDED, run.error_message
    assert_paid_once(stripe_server, ids)
    report_line(f"Stripe cut for {OUTAGE_SECONDS:g} s mid-dunning: 12/12 invoices paid, one "
                f"charge each at Stripe, {run.attempts} attempts, {recovery} s from restore "
                f"to completion")


@full_only
def test_s3_down_during_archiving(start_worker, chaos_env, s3_endpoint,
                                  community: Community, report_line) -> None:
    """Object storage unreachable when the archiver starts: nothing is pruned before it is
    archived and verified; after S3 returns every inactive member is archived once."""
    bucket = f"chaos-archive-{community.pk}"
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    client.create_bucket(Bucket=bucket)
    old = timezone.now() - timedelta(days=1000)
    Member.objects.bulk_create([
        Member(community=community, email=f"gone{i}@x.example", display_name=f"Gone {i}",
               joined_at=old, last_active_at=old) for i in range(40)])
    port = int(s3_endpoint.rsplit(":", 1)[1])
    with TcpProxy(("127.0.0.1", port)) as s3:
        worker = start_worker({"ARCHIVE_S3_BUCKET": bucket,
                               "AWS_S3_ENDPOINT_URL": f"http://127.0.0.1:{s3.port}",
                               "AWS_S3_REGION_NAME": "us-east-1",
                               "AWS_ACCESS_KEY_ID": "testing",
                               "AWS_SECRET_ACCESS_KEY": "testing"})
        with use_broker(chaos_env["CELERY_BROKER_URL"]), use_redis(chaos_env["REDIS_URL"]):
            s3.cut()
            run = _manual("data_cleanup_archiver", community)
            time.sleep(OUTAGE_SECONDS)
            assert Member.objects.filter(community=community, anonymized_at__isnull=False) \
                .count() == 0  # nothing pruned while nothing could be archived
            s3.restore()
            with timed() as elapsed:
                run, _ = settle(run, SETTLE_SECONDS, log=lambda: worker.log_text(tail=60))
                recovery = elapsed()

    assert run.status == JobRun.Status.SUCCEEDED, run.error_message
    assert run.result.get("members_archived") == 40
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert any(key.endswith("manifest.json") for key in keys)
    assert Member.objects.filter(community=community, anonymized_at__isnull=False).count() == 40
    report_line(f"S3 cut for {OUTAGE_SECONDS:g} s as the archiver started: 40/40 members "
                f"archived and verified before pruning, {len(keys)} objects, {run.attempts} "
                f"attempts, {recovery} s from restore to completion")
