"""Incremental change pickup: only changed rows are read, and bad rows never stop beat."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_celery_beat.models import PeriodicTask, PeriodicTasks, SolarSchedule

from .conftest import TEST_QUEUE, FakeClock, crontab, drain, make_row, slots_of

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def clock() -> FakeClock:
    # Near real time: ORM saves stamp date_changed with the real clock.
    now = timezone.now().replace(second=0, microsecond=0)
    return FakeClock(now + timedelta(seconds=1))


def bulk_rows(n: int, cron: str, tz: str, since) -> list[int]:
    ct = crontab(cron, tz)
    PeriodicTask.objects.bulk_create(
        PeriodicTask(name=f"tenant:{i}:job", task="tests.beat.noop", crontab=ct,
                     kwargs=json.dumps({"community_id": i}), queue=TEST_QUEUE,
                     last_run_at=since)
        for i in range(n))
    PeriodicTask.objects.update(date_changed=since)
    PeriodicTasks.update_changed()
    tenants = PeriodicTask.objects.filter(name__startswith="tenant:")
    return list(tenants.values_list("pk", flat=True))


def test_each_kind_of_change_reads_only_the_changed_rows(make_scheduler, clock) -> None:
    """Add, edit the cron of, disable, re-enable and delete one row among 300."""
    bulk_rows(300, "*/15 * * * *", "America/New_York", clock.dt - timedelta(hours=1))
    s = make_scheduler()
    s.tick()
    assert s.is_leader and s.stats["full_loads"] == 1
    assert len(s.known) == PeriodicTask.objects.count()
    read_before = s.stats["rows_read"]  # the leader's own static entries (backend_cleanup)

    # Nothing changed: one query (the marker), nothing read.
    with CaptureQueriesContext(connection) as queries:
        assert s.sync_changes() == 0
    assert len(queries) == 1, [q['sql'] for q in queries]

    row = make_row("added", "*/5 * * * *", "Asia/Kolkata")
    assert s.sync_changes() == 1
    added = s.entries[row.pk]
    assert added.spec.expr == "*/5 * * * *" and added.next_ts is not None

    row.crontab = crontab("0 * * * *", "Europe/London")
    row.save()
    assert s.sync_changes() == 1
    assert s.entries[row.pk].spec.expr == "0 * * * *"
    assert added.dead  # the old entry object is out of the heap

    row.enabled = False
    row.save()
    assert s.sync_changes() == 1
    assert row.pk not in s.entries and row.pk in s.known

    row.enabled = True
    row.save()
    assert s.sync_changes() == 1
    assert row.pk in s.entries

    row.delete()
    assert s.sync_changes() == 0  # found by COUNT(*) and the id diff, no row read
    assert row.pk not in s.known and row.pk not in s.entries

    assert s.stats["full_loads"] == 1
    assert s.stats["rows_read"] - read_before == 4


def test_an_added_row_publishes_at_its_next_slot(make_scheduler, clock) -> None:
    s = make_scheduler(prepare_seconds=0)
    s.tick()
    row = make_row("every-minute", "* * * * *")
    clock.advance(1)
    s.tick()  # picks the row up (sync due every second)
    assert row.pk in s.entries
    clock.set(clock.dt.replace(second=0) + timedelta(minutes=1))
    s.tick()
    assert slots_of(drain()) == [("every-minute", clock.dt.isoformat())]


def test_editing_a_shared_crontab_rereads_only_its_rows(make_scheduler, clock) -> None:
    ids = bulk_rows(50, "0 12 * * *", "Asia/Kolkata", clock.dt - timedelta(hours=1))
    other = make_row("other", "*/15 * * * *", "UTC")
    s = make_scheduler()
    s.tick()
    shared = PeriodicTask.objects.get(pk=ids[0]).crontab
    shared.hour = "13"
    shared.save()  # no PeriodicTask row changes; the schedule table does
    assert s.sync_changes() == 50
    assert {s.entries[i].spec.expr for i in ids} == {"0 13 * * *"}
    assert s.entries[other.pk].spec.expr == "*/15 * * * *"


def test_a_late_commit_inside_the_overlap_is_picked_up(make_scheduler, clock) -> None:
    """date_changed is set at save time: a transaction that commits late carries an older
    date_changed than rows already seen."""
    rows = [make_row(f"r{i}", "*/15 * * * *") for i in range(3)]
    s = make_scheduler()
    s.tick()
    newest = max(r.date_changed for r in PeriodicTask.objects.all())
    PeriodicTask.objects.filter(pk=rows[0].pk).update(
        enabled=False, date_changed=newest - timedelta(seconds=30))
    PeriodicTasks.update_changed()
    assert s.sync_changes() == 1
    assert rows[0].pk not in s.entries


def test_reconcile_finds_what_the_marker_cannot_see(make_scheduler, clock) -> None:
    rows = [make_row(f"r{i}", "*/15 * * * *") for i in range(3)]
    s = make_scheduler(reconcile_seconds=300)
    s.tick()
    with connection.cursor() as cursor:  # behind django-celery-beat's back: no signal
        cursor.execute("DELETE FROM django_celery_beat_periodictask WHERE id = %s", [rows[1].pk])
    assert s.sync_changes() == 0 and rows[1].pk in s.entries
    clock.advance(301)
    s.sync_changes()
    assert rows[1].pk not in s.entries and rows[1].pk not in s.known


def test_bad_rows_are_logged_and_skipped(make_scheduler, clock, caplog) -> None:
    good = make_row("good", "* * * * *")
    bad_tz = make_row("bad-tz", "* * * * *", "Asia/Kolkata")
    crontab_tz = bad_tz.crontab_id
    with connection.cursor() as cursor:  # as if written before validation existed
        cursor.execute("UPDATE django_celery_beat_crontabschedule SET timezone = 'Mars/Base' "
                       "WHERE id = %s", [crontab_tz])
    bad_cron = make_row("bad-cron", "7 * * * *")
    type(bad_cron.crontab).objects.filter(pk=bad_cron.crontab_id).update(minute="61")
    bad_json = make_row("bad-json", "* * * * *")
    PeriodicTask.objects.filter(pk=bad_json.pk).update(kwargs="{not json")
    solar = make_row("solar", None, solar=SolarSchedule.objects.create(
        event="sunrise", latitude=50, longitude=0))
    bad_args = make_row("bad-args", "* * * * *", task="moderation_sla_checker",
                        kwargs={"unexpected": 1})
    never = make_row("never", "0 0 31 2 *")
    s = make_scheduler(prepare_seconds=0)
    s.tick()
    assert set(s.bad) == {bad_tz.pk, bad_cron.pk, bad_json.pk, solar.pk, bad_args.pk, never.pk}
    assert "Mars/Base" in s.bad[bad_tz.pk] and "solar" in s.bad[solar.pk]
    assert "arguments" in s.bad[bad_args.pk]
    assert "skipping schedule row" in caplog.text
    clock.set(clock.dt.replace(second=0) + timedelta(minutes=1))
    s.tick()
    assert slots_of(drain()) == [("good", clock.dt.isoformat())]
    assert good.pk in s.entries
