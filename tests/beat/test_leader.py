"""Leader lease, fencing, takeover and catch-up, with schedulers in this process."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django_celery_beat.models import PeriodicTask

from automation.beat.leader import Lease
from automation.connections import get_redis

from .conftest import FakeClock, at, drain, make_row, run_until, slots_of

pytestmark = pytest.mark.django_db(transaction=True)


def test_lease_is_exclusive_renewed_and_taken_over_after_expiry() -> None:
    client = get_redis()
    a = Lease(client, "t", ttl_seconds=1.0, instance_id="a")
    b = Lease(client, "t", ttl_seconds=1.0, instance_id="b")
    assert a.keep() and a.fence == 1
    assert not b.keep()
    for _ in range(3):  # renewals keep it past its TTL
        time.sleep(0.4)
        assert a.keep()
        assert not b.keep()
    time.sleep(1.2)  # a stops renewing (died): the lease expires
    assert b.keep() and b.fence == 2 and b.holder() == "b:2"
    assert not a.keep()  # a learns it lost the lease
    b.release()
    assert a.keep() and a.fence == 3


def test_a_fenced_out_leader_cannot_publish_and_steps_down(make_scheduler, clock) -> None:
    """A leader that stalled past its lease is replaced; its next publish is refused."""
    row = make_row("r", "*/15 * * * *", since=clock.dt)
    a = make_scheduler(instance_id="a", prepare_seconds=0)
    a.tick()
    assert a.is_leader
    get_redis().delete(a.lease.lease_key)  # the lease expired while a was stalled
    b = make_scheduler(instance_id="b")
    b.tick()
    assert b.is_leader and b.lease.fence == 2
    outcome = a.publisher.publish([(a.entries[row.pk], at(2024, 3, 10, 4, 15).timestamp())])
    assert outcome.fenced_out and outcome.sent == []
    assert drain() == []
    # Through tick: a's renewal fails and it follows.
    a.tick()
    assert not a.is_leader


def test_new_leader_catches_up_the_slots_the_old_one_missed(make_scheduler, clock) -> None:
    """The leader stops at 04:20; the next one starts at 05:05: every slot since runs once."""
    rows = [make_row(f"r{tz}", "*/15 * * * *", tz, since=clock.dt)
            for tz in ("UTC", "Asia/Kolkata")]
    a = make_scheduler(instance_id="a")
    run_until(a, clock, at(2024, 3, 10, 4, 20))
    a.close()
    clock.set(at(2024, 3, 10, 5, 5))
    b = make_scheduler(instance_id="b")
    run_until(b, clock, at(2024, 3, 10, 5, 20))
    published = slots_of(drain())
    expected = [(name, at(2024, 3, 10, h, m).isoformat())
                for h, m in [(4, 15), (4, 30), (4, 45), (5, 0), (5, 15)]
                for name in ("rUTC", "rAsia/Kolkata")]
    assert sorted(published) == sorted(expected)
    for row in rows:
        row.refresh_from_db()
        assert row.last_run_at == at(2024, 3, 10, 5, 15) and row.total_run_count == 5


def test_catch_up_stops_at_the_window(make_scheduler, clock) -> None:
    make_row("r", "*/15 * * * *", since=clock.dt)
    clock.advance(3 * 3600 + 60)  # 07:01, three hours of nothing
    s = make_scheduler(catchup_seconds=1800)
    s.tick()
    assert [slot for _, slot in slots_of(drain())] == [
        at(2024, 3, 10, 6, 45).isoformat(), at(2024, 3, 10, 7, 0).isoformat()]


def test_a_takeover_after_publish_but_before_bookkeeping_publishes_nothing_twice(
        make_scheduler, clock) -> None:
    """The old leader published, then died before recording last runs: dedup covers it."""
    row = make_row("r", "*/15 * * * *", since=clock.dt)
    a = make_scheduler(instance_id="a", prepare_seconds=0)
    a.tick()
    slot = at(2024, 3, 10, 4, 15).timestamp()
    assert len(a.publisher.publish([(a.entries[row.pk], slot)]).sent) == 1  # no bookkeeping
    get_redis().delete(a.lease.lease_key)  # a is gone
    clock.set(at(2024, 3, 10, 4, 16))
    b = make_scheduler(instance_id="b")
    b.tick()
    assert b.stats["duplicates"] == 1 and b.stats["published"] == 0
    assert len(drain()) == 1
    row.refresh_from_db()
    assert row.last_run_at == at(2024, 3, 10, 4, 15)  # recorded by b


def test_followers_track_changes_and_lead_with_them(make_scheduler, clock) -> None:
    a = make_scheduler(instance_id="a")
    b = make_scheduler(instance_id="b")
    a.tick()
    b.tick()
    assert a.is_leader and not b.is_leader and len(b.heap) == 0
    row = make_row("later", "*/15 * * * *", since=clock.dt)
    clock.advance(2)
    b.tick()
    assert row.pk in b.entries
    a.close()  # clean shutdown releases the lease at once
    b.tick()
    assert b.is_leader and b.entries[row.pk].next_ts == at(2024, 3, 10, 4, 15).timestamp()


def test_tick_sleeps_until_the_next_due_slot(make_scheduler) -> None:
    clock = FakeClock(at(2024, 3, 10, 4, 14, 58))
    make_row("r", "*/15 * * * *", since=clock.dt)
    s = make_scheduler(clock=clock, prepare_seconds=0, sync_seconds=30, max_interval=60,
                       lease_seconds=60)
    assert s.tick() == pytest.approx(2.0)
    clock.advance(2)
    s.tick()
    assert len(drain()) == 1
    assert PeriodicTask.objects.get(name="r").total_run_count == 1
    # Nothing due for 15 minutes: the lease renewal (a third of its TTL) comes first.
    assert s.tick() == pytest.approx(20)


def test_idle_ticks_touch_only_the_lease(make_scheduler, clock) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    make_row("r", "0 12 * * *", since=clock.dt)
    s = make_scheduler(sync_seconds=10)
    s.tick()
    clock.advance(timedelta(seconds=1).total_seconds())
    with CaptureQueriesContext(connection) as queries:
        s.tick()
    assert len(queries) == 0
