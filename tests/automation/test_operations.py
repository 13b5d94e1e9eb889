"""Toggle, pause, trigger (409/429), progress and the audit trail of each change."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from automation import operations
from automation.audit import acting_as
from automation.models import AuditEntry, JobRun
from automation.progress import reporting_progress
from automation.registry import JobSpec, get_job
from automation.runs import run_inline
from automation.schedules import periodic_task_name
from automation.stats import health, job_history, success_rate, summary
from communities.models import Community

NOW = datetime(2026, 7, 1, 15, 47, tzinfo=UTC)


@pytest.fixture
def both(community: Community, other_community: Community) -> list[Community]:
    return [community, other_community]


@pytest.mark.django_db(transaction=True)
def test_toggle_all_communities_is_audited_and_reaches_beat(both) -> None:
    with acting_as("ops-alice"):
        assert operations.set_enabled("test_sleep", False) == 2
    assert operations.set_enabled("test_sleep", False) == 0  # nothing left to change
    for c in both:
        row = PeriodicTask.objects.get(name=periodic_task_name(c.pk, "test_sleep"))
        assert row.enabled is False
    entries = AuditEntry.objects.filter(action="setting.update", job_name="test_sleep")
    assert entries.count() == 2
    entry = entries.first()
    assert (entry.actor_label, entry.before, entry.after) == (
        "ops-alice", {"enabled": True}, {"enabled": False})


def test_trigger_one_community_refuses_in_progress_and_too_soon(community, settings) -> None:
    settings.AUTOMATION_TRIGGER_COOLDOWN_SECONDS = 30
    result = operations.trigger("test_sleep", now=NOW, community=community)
    [run] = result.runs
    assert run.status == JobRun.Status.QUEUED and run.trigger == JobRun.Trigger.MANUAL
    with pytest.raises(operations.RunInProgress, match=f"run {run.pk} of test_sleep"):
        operations.trigger("test_sleep", now=NOW, community=community)
    run.status = JobRun.Status.SUCCEEDED
    run.save()
    with pytest.raises(operations.TriggerTooSoon) as too_soon:
        operations.trigger("test_sleep", now=NOW, community=community)
    assert too_soon.value.status == 429 and 1 <= too_soon.value.retry_after <= 30
    entry = AuditEntry.objects.get(action="run.trigger")
    assert entry.after["run_id"] == run.pk and entry.actor_label == "system"


def test_trigger_all_lists_what_it_left_out(both, settings) -> None:
    community, other = both
    settings.AUTOMATION_TRIGGER_COOLDOWN_SECONDS = 0
    operations.set_enabled("test_sleep", False, community=other)
    result = operations.trigger("test_sleep", now=NOW)
    assert [r.community for r in result.runs] == [community]
    assert result.disabled == ["kolkata"]
    again = operations.trigger("test_sleep", now=NOW)
    assert (again.runs, again.in_progress) == ([], ["acme"])
    with pytest.raises(operations.JobDisabled):
        operations.trigger("test_sleep", now=NOW, community=other)


def test_a_stuck_queued_run_does_not_block_triggers_forever(community, settings) -> None:
    settings.AUTOMATION_TRIGGER_COOLDOWN_SECONDS = 0
    stuck = operations.trigger("test_sleep", now=NOW, community=community).runs[0]
    JobRun.objects.filter(pk=stuck.pk).update(created_at=timezone.now() - timedelta(hours=2))
    assert operations.trigger("test_sleep", now=timezone.now(), community=community).runs


def test_trigger_validates_params_where_they_enter(community) -> None:
    from automation.errors import InvalidJobParams

    with pytest.raises(InvalidJobParams, match="seconds"):
        operations.trigger("test_sleep", now=NOW, community=community,
                           params={"seconds": -1})


def _refuse_to_claim(*args: object) -> int:
    raise AssertionError("a cooldown was claimed before the request was known to be valid")


def test_params_are_checked_before_any_cooldown_is_claimed(both, settings,
                                                          monkeypatch) -> None:
    """The run's params merged over each target's stored ones, for one community or all:
    refused before the cooldown is touched."""
    from automation.errors import InvalidJobParams

    community, other = both
    settings.AUTOMATION_TRIGGER_COOLDOWN_SECONDS = 30
    monkeypatch.setattr(operations, "_claim_cooldown", _refuse_to_claim)
    # Stored params a form change made invalid (written past the model's validation).
    community.automation_settings.filter(job_name="test_sleep").update(
        params={"seconds": "forever"})
    for target in (community, None):
        with pytest.raises(InvalidJobParams, match="seconds"):
            operations.trigger("test_sleep", now=NOW, community=target)
    for params in ({"seconds": -1}, {"nope": 1}):
        with pytest.raises(InvalidJobParams):
            operations.trigger("test_sleep", now=NOW, community=other, params=params)
    assert not JobRun.objects.exists()


def test_a_run_that_fails_to_queue_releases_its_cooldown(community, settings,
                                                        monkeypatch) -> None:
    settings.AUTOMATION_TRIGGER_COOLDOWN_SECONDS = 30
    real = operations.enqueue_run

    def broken(*args: object, **kwargs: object) -> JobRun:
        raise RuntimeError("database went away")

    monkeypatch.setattr(operations, "enqueue_run", broken)
    with pytest.raises(RuntimeError):
        operations.trigger("test_sleep", now=NOW, community=community)
    monkeypatch.setattr(operations, "enqueue_run", real)
    assert operations.trigger("test_sleep", now=NOW, community=community).runs


def test_trigger_all_queues_all_or_nothing_and_releases_only_its_own(both, settings,
                                                                    monkeypatch) -> None:
    """One community failing to queue rolls back the runs of the others in the same call
    and frees their cooldowns; a cooldown held by an earlier trigger stays held."""
    community, _ = both
    settings.AUTOMATION_TRIGGER_COOLDOWN_SECONDS = 30
    earlier = operations.trigger("test_sleep", now=NOW, community=community).runs[0]
    JobRun.objects.filter(pk=earlier.pk).update(status=JobRun.Status.SUCCEEDED)
    real = operations.enqueue_run
    calls: list[str] = []

    def second_fails(spec: JobSpec, target: Community, **kwargs: Any) -> JobRun:
        calls.append(target.slug)
        if len(calls) == 2:
            raise RuntimeError("broker and database both gone")
        return real(spec, target, **kwargs)

    Community.objects.create(name="Zeta", slug="zeta", timezone="UTC")
    monkeypatch.setattr(operations, "enqueue_run", second_fails)
    with pytest.raises(RuntimeError):
        operations.trigger("test_sleep", now=NOW)
    assert calls == ["kolkata", "zeta"]  # acme was too soon: its cooldown was never ours
    assert list(JobRun.objects.values_list("pk", flat=True)) == [earlier.pk]
    monkeypatch.setattr(operations, "enqueue_run", real)
    result = operations.trigger("test_sleep", now=NOW)
    assert sorted(run.community.slug for run in result.runs) == ["kolkata", "zeta"]
    assert result.too_soon == ["acme"]


@pytest.mark.django_db(transaction=True)
def test_a_run_committed_keeps_its_cooldown_even_if_publishing_raises(community, settings,
                                                                      monkeypatch) -> None:
    """Runs that exist spend their cooldown, even when a publish callback fails after the
    commit (the reaper publishes the queued run later)."""
    from automation import runs

    settings.AUTOMATION_TRIGGER_COOLDOWN_SECONDS = 30

    def publish_fails(spec: JobSpec, run: JobRun) -> bool:
        raise RuntimeError("serializer bug")

    monkeypatch.setattr(runs, "publish_or_leave_to_reaper", publish_fails)
    with pytest.raises(RuntimeError, match="serializer bug"):
        operations.trigger("test_sleep", now=NOW, community=community)
    run = JobRun.objects.get()
    JobRun.objects.filter(pk=run.pk).update(status=JobRun.Status.SUCCEEDED)
    with pytest.raises(operations.TriggerTooSoon):
        operations.trigger("test_sleep", now=NOW, community=community)


@pytest.mark.django_db(transaction=True)  # run_inline closes connections like a worker
def test_paused_setting_skips_scheduled_runs_until_then(community) -> None:
    setting = community.automation_settings.get(job_name="test_sleep")
    now = timezone.now()
    with pytest.raises(operations.OperationRefused):
        operations.pause(setting, now - timedelta(minutes=1), now)
    operations.pause(setting, now + timedelta(hours=1), now)
    assert setting.next_run(now) >= now + timedelta(hours=1)
    run = run_inline(get_job("test_sleep"), community, trigger=JobRun.Trigger.SCHEDULE, now=now)
    assert (run.status, run.skip_reason) == (JobRun.Status.SKIPPED, "paused")
    manual = run_inline(get_job("test_sleep"), community, trigger=JobRun.Trigger.MANUAL,
                        now=now)
    assert manual.status == JobRun.Status.SUCCEEDED  # pause stops the schedule, not people
    operations.resume(setting)
    assert setting.paused_until is None
    actions = list(AuditEntry.objects.order_by("pk").values_list("action", "after"))
    assert actions[0][0] == "setting.update" and "paused_until" in actions[0][1]
    assert actions[-1] == ("setting.update", {"paused_until": None})


def test_progress_is_written_to_the_run_and_throttled(community) -> None:
    run = JobRun.objects.create(job_name="test_sleep", community=community, trigger="manual",
                                scheduled_for=NOW, status=JobRun.Status.RUNNING)
    from automation.progress import report_progress

    report_progress(5, 10)  # outside a run: nothing happens
    with reporting_progress(run.pk):
        report_progress(1, 100)
        report_progress(2, 100)  # within a second of the last write: skipped
        report_progress(100, 100)  # the end is always written
    run.refresh_from_db()
    assert (run.progress_done, run.progress_total) == (100, 100)


def test_stats_success_rate_and_history(community) -> None:
    base = timezone.now() - timedelta(hours=2)
    statuses = ["succeeded"] * 17 + ["failed", "timed_out", "skipped"]
    JobRun.objects.bulk_create([
        JobRun(job_name="test_sleep", community=community, trigger="schedule",
               scheduled_for=base, status=status, duration_seconds=float(i))
        for i, status in enumerate(statuses)
    ])
    figures = summary(base - timedelta(minutes=1))
    assert (figures["runs"], figures["succeeded"], figures["failures"], figures["skipped"]) == (
        20, 17, 2, 1)
    assert figures["success_rate"] == 89.5 and figures["health"] == "yellow"
    history = job_history("test_sleep", base - timedelta(hours=1), timezone.now() +
                          timedelta(minutes=1))
    assert (history.stats["min_duration"], history.stats["max_duration"]) == (0.0, 16.0)
    assert sum(b["succeeded"] + b["failed"] + b["skipped"] for b in history.timeline) == 20
    assert [success_rate(0, 0), health(None), health(95.0), health(79.9)] == [
        None, "grey", "green", "red"]


@pytest.mark.django_db(transaction=True)
def test_a_message_for_a_run_that_no_longer_exists_is_dropped(community) -> None:
    task = get_job("test_sleep").func.task
    result = task.apply(kwargs={"community_id": community.pk, "trigger": "manual",
                                "run_id": 987654, "scheduled_for": NOW.isoformat()})
    assert result.get() == "run_missing"
    assert not JobRun.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_second_message_for_a_done_slot_is_skipped(community) -> None:
    """The slot given with the message is checked in the same query as the setting."""
    task = get_job("test_sleep").func.task
    slot = datetime(2026, 7, 1, 16, 0, tzinfo=UTC)
    kwargs = {"community_id": community.pk, "trigger": "schedule",
              "scheduled_for": slot.isoformat()}
    assert task.apply(kwargs=kwargs).get() == "succeeded"
    assert task.apply(kwargs=kwargs).get() == "skipped"
    first, second = JobRun.objects.order_by("pk")
    assert first.scheduled_for == second.scheduled_for == slot
    assert second.skip_reason == "slot_already_done"
