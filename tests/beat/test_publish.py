"""Batched publishing: well-formed messages, one script call per batch, bulk bookkeeping."""

from __future__ import annotations

import base64
import json
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django_celery_beat.models import PeriodicTask, PeriodicTasks

from automation.connections import get_redis
from automation.models import JobRun
from automation.schedules import periodic_task_name
from communities.models import Community
from tests.conftest import wait_for

from .conftest import TEST_QUEUE, at, backdate, crontab, drain, make_row, run_until

pytestmark = pytest.mark.django_db(transaction=True)


def evalsha_calls() -> int:
    stats = get_redis().info("commandstats")
    return stats.get("cmdstat_evalsha", {}).get("calls", 0)


def test_a_2000_entry_burst_goes_out_in_four_script_calls(make_scheduler, clock) -> None:
    slot = at(2024, 3, 10, 12, 37)
    ct = crontab("37 12 * * *", "UTC")
    PeriodicTask.objects.bulk_create(
        PeriodicTask(name=f"tenant:{i}:job", task="tests.beat.noop", crontab=ct,
                     kwargs=json.dumps({"community_id": i}), queue=TEST_QUEUE)
        for i in range(2000))
    ids = list(PeriodicTask.objects.filter(crontab=ct).values_list("pk", flat=True))
    backdate(ids, slot - timedelta(hours=2))
    PeriodicTasks.update_changed()
    clock.set(slot - timedelta(seconds=30))
    s = make_scheduler(prepare_seconds=0, batch_size=500)
    s.tick()
    marker = PeriodicTasks.last_change()
    changed = dict(PeriodicTask.objects.filter(pk__in=ids).values_list("pk", "date_changed"))
    clock.set(slot)
    before = evalsha_calls()
    with CaptureQueriesContext(connection) as queries:
        s.tick()
    # One lease renewal, then 2000 messages in 4 publish script calls.
    assert evalsha_calls() - before == 1 + 4
    updates = [q for q in queries if q["sql"].startswith("UPDATE")]
    assert len(updates) == 1  # last runs of one slot: one UPDATE

    messages = drain()
    assert len(messages) == 2000
    assert len({m["headers"]["id"] for m in messages}) == 2000
    for m in messages:
        headers = m["headers"]
        assert headers["task"] == "tests.beat.noop"
        assert headers["automation_sent_at"] == slot.isoformat()
        assert headers["periodic_task_name"] == f"tenant:{m['kwargs']['community_id']}:job"
        assert headers["celery_beat_task"] is True
        assert headers["root_id"] == headers["id"] and headers["retries"] == 0
        assert m["args"] == [] and m["embed"]["chain"] is None
        assert m["content_type"] == "application/json"
        assert m["delivery_info"]["routing_key"] == TEST_QUEUE
    assert {m["kwargs"]["community_id"] for m in messages} == set(range(2000))

    rows = PeriodicTask.objects.filter(pk__in=ids)
    assert set(rows.values_list("last_run_at", flat=True)) == {slot}
    assert set(rows.values_list("total_run_count", flat=True)) == {1}
    # Our own bookkeeping is invisible to change detection.
    assert dict(rows.values_list("pk", "date_changed")) == changed
    assert PeriodicTasks.last_change() == marker


def raw_messages(queue: str) -> list[dict]:
    client = get_redis()
    return [json.loads(client.rpop(queue)) for _ in range(client.llen(queue))]


def test_batched_message_equals_the_apply_async_message(make_scheduler, clock) -> None:
    """Same entry, same slot: the pipelined message and apply_async's differ only in ids."""
    row = make_row("tenant:7:moderation_sla_checker", "*/15 * * * *",
                   task="moderation_sla_checker", kwargs={"community_id": 7},
                   since=clock.dt)
    s = make_scheduler(prepare_seconds=0)
    s.tick()
    entry = s.entries[row.pk]
    slot = at(2024, 3, 10, 4, 15).timestamp()
    s.publisher.send_one(entry, slot, clock())
    outcome = s.publisher.publish([(entry, slot)])
    assert outcome.sent == [(entry, slot)]
    stock, ours = raw_messages(TEST_QUEUE)
    for message in (stock, ours):
        for key in ("id", "root_id"):
            assert message["headers"].pop(key)
        for key in ("correlation_id", "delivery_tag"):
            assert message["properties"].pop(key)
        message["body"] = json.loads(base64.b64decode(message["body"]))
    assert ours == stock
    assert ours["headers"]["automation_sent_at"] == "2024-03-10T04:15:00+00:00"
    assert ours["headers"]["timelimit"] == [300, 240]  # the task's own limits
    assert ours["headers"]["ignore_result"] is True


def test_the_same_slot_is_published_once_across_two_leaders(make_scheduler, clock) -> None:
    row = make_row("r", "*/15 * * * *", since=clock.dt)
    a = make_scheduler(instance_id="a")
    a.tick()
    entry = a.entries[row.pk]
    slot = at(2024, 3, 10, 4, 15).timestamp()
    assert len(a.publisher.publish([(entry, slot)]).sent) == 1
    a.lease.release()
    b = make_scheduler(instance_id="b")
    b.tick()
    assert b.is_leader and b.lease.fence == 2
    again = b.publisher.publish([(b.entries[row.pk], slot)])
    assert again.sent == [] and len(again.duplicates) == 1
    assert len(drain()) == 1


def test_a_pipelined_message_runs_on_a_real_worker(worker, make_scheduler) -> None:
    """The worker consumes and executes it; the run's scheduled_for is the stamped slot."""
    from django.utils import timezone

    from .conftest import FakeClock

    community = Community.objects.create(name="Beat Test", slug="beat-test",
                                         timezone="America/New_York")
    row = wait_for(lambda: PeriodicTask.objects.filter(
        name=periodic_task_name(community.pk, "test_sleep")).first())
    real = timezone.now()
    slot = real.replace(minute=real.minute - real.minute % 5, second=0, microsecond=0)
    backdate([row.pk], slot - timedelta(minutes=5))
    PeriodicTask.objects.exclude(pk=row.pk).update(enabled=False)
    PeriodicTasks.update_changed()
    clock = FakeClock(slot + timedelta(seconds=1))
    s = make_scheduler(clock=clock)
    s.tick()
    assert s.stats["published"] == 1
    run = wait_for(lambda: JobRun.objects.filter(
        community=community, job_name="test_sleep", status=JobRun.Status.SUCCEEDED).first())
    assert run.scheduled_for == slot
    assert run.trigger == JobRun.Trigger.SCHEDULE
    assert get_redis().lrange(f"test:ran:{community.pk}", 0, -1) == [slot.isoformat().encode()]


def test_rows_needing_an_exchange_go_through_apply_async_once(make_scheduler, clock) -> None:
    """A row with its own exchange/routing key is routed by kombu, after the dedup claim."""
    row = make_row("own-exchange", "*/15 * * * *", since=clock.dt, exchange="beat-test",
                   routing_key=TEST_QUEUE)
    s = make_scheduler()
    s.tick()
    entry = s.entries[row.pk]
    assert s.publisher.route(entry).queue is None  # not the batched path
    slot = at(2024, 3, 10, 4, 15).timestamp()
    with get_redis().pipeline() as pipe:  # declare the binding a worker would declare
        pipe.sadd(f"_kombu.binding.{'beat-test'}", f"{TEST_QUEUE}\x06\x16\x06\x16{TEST_QUEUE}")
        pipe.execute()
    assert len(s.publisher.publish([(entry, slot)]).sent) == 1
    assert len(s.publisher.publish([(entry, slot)]).duplicates) == 1
    messages = drain()
    assert [m["headers"]["automation_sent_at"] for m in messages] == [
        "2024-03-10T04:15:00+00:00"]


def test_one_off_and_interval_rows(make_scheduler, clock) -> None:
    once = make_row("once", "*/15 * * * *", since=clock.dt, one_off=True)
    make_row("every-10-min", None, since=clock.dt, every=600)
    s = make_scheduler(prepare_seconds=0)
    run_until(s, clock, at(2024, 3, 10, 4, 40))
    published = sorted(
        (m["headers"]["periodic_task_name"], m["headers"]["automation_sent_at"][11:16])
        for m in drain())
    assert published == sorted([("once", "04:15")] + [
        ("every-10-min", f"04:{m:02d}") for m in (10, 20, 30, 40)])
    once.refresh_from_db()
    assert not once.enabled and once.total_run_count == 1


def test_a_change_after_the_message_was_built_ahead_wins(make_scheduler, clock) -> None:
    """Messages are built up to 3 s early; a row edited or disabled meanwhile is not sent
    with its old definition."""
    from django.utils import timezone

    from .conftest import FakeClock

    now = timezone.now()
    slot = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    real = FakeClock(slot - timedelta(seconds=2))
    disabled = make_row("disabled", "* * * * *", since=real.dt - timedelta(seconds=5))
    edited = make_row("edited", "* * * * *", since=real.dt - timedelta(seconds=5))
    kept = make_row("kept", "* * * * *", since=real.dt - timedelta(seconds=5))
    s = make_scheduler(clock=real, prepare_seconds=3)
    s.tick()
    assert {p.entry.name for p in s._prepared} >= {"disabled", "edited", "kept"}
    disabled.enabled = False
    disabled.save()
    edited.kwargs = json.dumps({"community_id": 42})
    edited.save()
    PeriodicTask.objects.filter(pk=edited.pk).update(date_changed=real.dt - timedelta(seconds=1))
    real.advance(1)
    s.tick()  # picks the changes up
    real.set(slot)
    s.tick()
    messages = {m["headers"]["periodic_task_name"]: m for m in drain()}
    assert set(messages) == {"edited", "kept"}
    assert messages["edited"]["kwargs"] == {"community_id": 42}
    assert kept.pk in s.entries
