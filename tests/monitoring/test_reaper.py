"""The reaper: a run whose worker or message was lost is resumed as the same run."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from celery.signals import after_task_publish
from django.utils import timezone

from automation.connections import get_redis
from automation.locks import attempt_token, lock_key
from automation.models import JobRun
from communities.models import Community
from monitoring.reaper import reap_stuck_runs

from .conftest import make_run


@pytest.fixture
def published() -> Iterator[list[tuple[str, int]]]:
    """(task id, run id) of every job message published during the test."""
    sent: list[tuple[str, int]] = []

    def record(sender=None, headers=None, body=None, **kwargs) -> None:
        if headers and headers.get("task", "").startswith("test_"):
            sent.append((headers["id"], body[1]["run_id"]))

    after_task_publish.connect(record, weak=False)
    yield sent
    after_task_publish.disconnect(record)


def test_a_running_run_without_a_live_lease_is_resumed(db, community: Community,
                                                       other_community: Community,
                                                       settings, published) -> None:
    """No lock names the run one lease after it started: it is queued again as the same run,
    its message published under its task id; a run holding its lock, or younger than one
    lease, is left alone."""
    settings.AUTOMATION_RUN_LEASE_SECONDS = 30
    now = timezone.now()
    lost = make_run(community, "test_sleep", "running", finished=now,
                    started=now - timedelta(seconds=31), attempts=1,
                    worker_hostname="automation@host-a", celery_task_id="task-lost")
    young = make_run(other_community, "test_sleep", "running", finished=now,
                     started=now - timedelta(seconds=5), attempts=1)
    alive = make_run(other_community, "test_broken", "running", finished=now,
                     started=now - timedelta(hours=2), attempts=3)
    get_redis().set(lock_key("test_broken", other_community.pk), attempt_token(alive.pk), ex=30)

    report = reap_stuck_runs(now)
    assert report.resumed == [lost.pk] and report.still_locked == [alive.pk]
    lost.refresh_from_db()
    assert (lost.status, lost.resumes, lost.attempts, lost.error_type, lost.queued_at) == \
        ("queued", 1, 1, "WorkerLost", now)
    assert "attempt 1 lost its worker (automation@host-a)" in lost.error_message
    assert published == [("task-lost", lost.pk)]
    for run in (young, alive):
        run.refresh_from_db()
        assert run.status == "running"
    assert reap_stuck_runs(now).resumed == []  # queued now: nothing more to resume


def test_a_run_resumed_too_often_fails(db, community: Community, settings, published) -> None:
    """A job that loses its worker every time (say, out of memory) fails after the bound."""
    settings.AUTOMATION_MAX_RESUMES = 3
    now = timezone.now()
    run = make_run(community, "test_sleep", "running", finished=now,
                   started=now - timedelta(minutes=10), attempts=4, resumes=3)
    report = reap_stuck_runs(now)
    assert report.worker_lost == [run.pk] and report.resumed == []
    run.refresh_from_db()
    assert (run.status, run.error_type, run.finished_at) == ("failed", "WorkerLost", now)
    assert run.error_message.endswith("gave up after 3 resumes")
    assert published == []


def _queued(community: Community, now: datetime, due: datetime) -> JobRun:
    return make_run(community, "test_flaky", "queued", finished=now, trigger="manual",
                    scheduled_for=due, queued_at=due, celery_task_id=f"t-{due.timestamp()}")


def test_a_queued_run_whose_message_is_gone_is_published_again(db, community: Community,
                                                              settings, published) -> None:
    """Queued long past its due time in an empty queue: the message was lost (a broker
    restart without persistence) and is published again, once."""
    settings.AUTOMATION_REQUEUE_AFTER_SECONDS = 300
    now = timezone.now()
    lost = _queued(community, now, now - timedelta(seconds=301))
    recent = _queued(community, now, now - timedelta(seconds=100))
    get_redis().delete("automation")  # the broker lost everything

    report = reap_stuck_runs(now)
    assert report.republished == [lost.pk]
    lost.refresh_from_db()
    assert (lost.status, lost.resumes, lost.error_type, lost.queued_at) == \
        ("queued", 1, "MessageLost", now)
    assert published == [(lost.celery_task_id, lost.pk)]
    recent.refresh_from_db()
    assert recent.resumes == 0


def test_a_queued_run_behind_older_messages_is_left_waiting(db, community: Community,
                                                           settings) -> None:
    """A backlog is not a loss: while the queue's oldest message is older than the run,
    the run's own message may still be in it."""
    settings.AUTOMATION_REQUEUE_AFTER_SECONDS = 300
    now = timezone.now()
    # A queue no worker consumes, so the backlog stays put during the test.
    waiting = _queued(community, now, now - timedelta(seconds=900))
    JobRun.objects.filter(pk=waiting.pk).update(queue="reaper_backlog")
    older = {"headers": {"automation_sent_at": (now - timedelta(seconds=1200)).isoformat()}}
    get_redis().lpush("reaper_backlog", json.dumps(older))

    report = reap_stuck_runs(now)
    assert report.republished == []
    waiting.refresh_from_db()
    assert (waiting.status, waiting.resumes) == ("queued", 0)
    # Once the queue has moved past it (its oldest message is newer), it is published again.
    newer = {"headers": {"automation_sent_at": (now - timedelta(seconds=60)).isoformat()}}
    get_redis().delete("reaper_backlog")
    get_redis().lpush("reaper_backlog", json.dumps(newer))
    assert reap_stuck_runs(now).republished == [waiting.pk]


def test_old_queued_runs_never_picked_up_fail(db, community, settings) -> None:
    """The final bound: a run no worker started within AUTOMATION_REAPER_QUEUED_SECONDS."""
    settings.AUTOMATION_REAPER_QUEUED_SECONDS = 3600
    now = timezone.now()
    old = make_run(community, "test_flaky", "queued", finished=now, trigger="manual",
                   scheduled_for=now - timedelta(seconds=3601))
    recent = make_run(community, "test_flaky", "queued", finished=now, trigger="manual",
                      scheduled_for=now - timedelta(seconds=3000), queued_at=now)
    # Queued again between attempts (it started once): not "never picked up".
    retrying = make_run(community, "test_flaky", "queued", finished=now,
                        started=now - timedelta(hours=2), attempts=1, queued_at=now)

    report = reap_stuck_runs(now)
    assert report.never_picked_up == [old.pk]
    old.refresh_from_db()
    assert (old.status, old.error_type) == ("failed", "NeverPickedUp")
    assert old.error_message == ("never picked up: no worker started this run within 3600 s "
                                 "of it being queued")
    for run in (recent, retrying):
        run.refresh_from_db()
        assert run.status == JobRun.Status.QUEUED
