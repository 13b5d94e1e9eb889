"""In-app alerting: runs that finished → de-duplicated notices on Slack and by email."""

from __future__ import annotations

from datetime import timedelta

from django.core import mail
from django.utils import timezone

from automation.metrics import render_latest
from automation.models import JobRun
from automation.registry import get_job
from automation.runs import run_inline
from monitoring.alerts import check_alerts
from monitoring.models import Alert

from .conftest import make_run


def _slack_texts(receiver) -> list[str]:
    return [r.json()["text"] for r in receiver.requests if r.path == "/slack/hook"]


def _flaky(community, failures: int) -> JobRun:
    return run_inline(get_job("test_flaky"), community, trigger=JobRun.Trigger.MANUAL,
                      now=timezone.now(), params={"failures": failures})


def test_failure_pages_once_then_resolves(transactional_db, community, alert_channels, smtp_server,
                                          settings) -> None:
    settings.ALERT_EMAILS = ["ops@example.com", "oncall@example.com"]
    first = _flaky(community, failures=10)  # gives up after 4 attempts
    assert first.status == JobRun.Status.FAILED

    report = check_alerts(timezone.now())
    assert report.count("opened") == 1
    texts = _slack_texts(alert_channels)
    assert len(texts) == 1
    assert "[NEW] failure test_flaky @ acme" in texts[0]
    assert "1 failed run(s) in a row" in texts[0] and "upstream returned 503" in texts[0]
    assert len(smtp_server.handler.mails) == 1
    message = smtp_server.handler.mails[0]
    assert sorted(message.rcpt_tos) == ["oncall@example.com", "ops@example.com"]
    assert "failure test_flaky @ acme" in message.subject

    # Fails again within the cooldown: counted, not paged.
    assert _flaky(community, failures=10).status == JobRun.Status.FAILED
    report = check_alerts(timezone.now())
    assert report.count("repeated") == 1 and not report.notices
    assert len(_slack_texts(alert_channels)) == 1 and len(smtp_server.handler.mails) == 1
    alert = Alert.objects.get()
    assert (alert.count, alert.kind, alert.is_open) == (2, "failure", True)
    body = render_latest()[0].decode()
    assert 'automation_job_consecutive_failures{job="test_flaky",queue="automation"} 2.0' in body
    assert 'automation_alerts_open{kind="failure"} 1.0' in body

    # A check with nothing new sends nothing either.
    assert not check_alerts(timezone.now()).notices

    # The next success resolves it, with one notice.
    assert _flaky(community, failures=0).status == JobRun.Status.SUCCEEDED
    report = check_alerts(timezone.now())
    assert report.count("resolved") == 1
    texts = _slack_texts(alert_channels)
    assert len(texts) == 2 and "[RESOLVED] failure test_flaky @ acme" in texts[1]
    assert "after 2 failed run(s)" in texts[1]
    assert len(smtp_server.handler.mails) == 2
    alert.refresh_from_db()
    assert alert.resolved_at is not None and alert.resolved_notified_at is not None
    assert alert.notifications_sent == 2
    body = render_latest()[0].decode()
    assert 'automation_job_consecutive_failures{job="test_flaky",queue="automation"} 0.0' in body

    # Re-reading the same runs (a lost cursor) changes nothing.
    from automation.connections import get_redis
    from monitoring.alerts import CURSOR_KEY

    get_redis().delete(CURSOR_KEY)
    report = check_alerts(timezone.now())
    assert not report.touches and not report.notices
    assert Alert.objects.count() == 1


def test_reminder_after_cooldown_and_timeouts_are_their_own_kind(db, community,
                                                                  alert_channels) -> None:
    now = timezone.now()
    make_run(community, "test_broken", "failed", finished=now - timedelta(minutes=100),
             error="bad data")
    check_alerts(now - timedelta(minutes=99))
    assert len(_slack_texts(alert_channels)) == 1
    assert len(mail.outbox) == 1

    # 10 minutes later: another failure, inside the hour of cooldown → quiet.
    make_run(community, "test_broken", "failed", finished=now - timedelta(minutes=90),
             error="bad data")
    assert not check_alerts(now - timedelta(minutes=89)).notices
    # A timeout of another job opens its own alert and notifies at once.
    make_run(community, "test_sleep", "timed_out", finished=now - timedelta(minutes=80),
             error="exceeded the soft time limit")
    report = check_alerts(now - timedelta(minutes=79))
    assert [n.kind for n in report.notices] == ["timeout"]
    # Past the cooldown, the next failure sends one reminder with the running count.
    make_run(community, "test_broken", "failed", finished=now - timedelta(seconds=30),
             error="bad data")
    report = check_alerts(now)
    assert [(n.event, n.count) for n in report.notices] == [("repeated", 3)]
    assert "[STILL] failure test_broken @ acme: 3 failed run(s) in a row" in \
        _slack_texts(alert_channels)[-1]
    assert len(mail.outbox) == 3


def test_failed_then_recovered_in_one_check_is_one_notice(db, community,
                                                          alert_channels) -> None:
    now = timezone.now()
    make_run(community, "test_broken", "failed", finished=now - timedelta(seconds=50),
             error="boom")
    make_run(community, "test_broken", "succeeded", finished=now - timedelta(seconds=20))
    report = check_alerts(now)
    assert len(report.notices) == 1
    assert report.notices[0].text.endswith("succeeded again since")
    alert = Alert.objects.get()
    assert not alert.is_open and alert.resolved_notified_at is not None
    assert len(_slack_texts(alert_channels)) == 1


def test_slack_down_email_still_goes_and_unsent_notices_are_retried(db, community,
                                                                    alert_channels,
                                                                    settings) -> None:
    settings.ALERT_EMAILS = []
    alert_channels.status = 500
    now = timezone.now()
    make_run(community, "test_broken", "failed", finished=now - timedelta(minutes=3),
             error="boom")
    report = check_alerts(now - timedelta(minutes=2))
    assert report.delivery is not None and report.delivery.slack is False
    assert "Slack answered 500" in report.delivery.errors[0]
    assert Alert.objects.get().last_notified_at is None

    alert_channels.status = 200
    report = check_alerts(now)  # nothing new happened: the unsent notice goes now
    assert [n.event for n in report.notices] == ["opened"]
    assert Alert.objects.get().last_notified_at == now
    assert len(_slack_texts(alert_channels)) == 2  # the refused one, then the delivered one


def test_no_channels_records_alerts_without_sending(db, community, settings) -> None:
    settings.ALERT_SLACK_WEBHOOK_URL = ""
    settings.ALERT_EMAILS = []
    now = timezone.now()
    make_run(community, "test_broken", "failed", finished=now - timedelta(seconds=5),
             error="boom")
    report = check_alerts(now)
    assert report.count("opened") == 1 and report.delivery is None
    assert Alert.objects.get().last_notified_at is None
    assert not mail.outbox
