"""Next fire times across DST, per-minute memoisation, intervals, and entry positioning."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from automation.beat.entries import Entry, EntryHeap
from automation.beat.specs import BadSchedule, ClockedSpec, CronSpec, IntervalSpec, SpecCache

from .conftest import at


def fires(expr: str, tz: str, start: datetime, end: datetime) -> list[datetime]:
    """Every fire time in (start, end], stepping the spec the way the scheduler does."""
    spec = CronSpec(expr, tz)
    out, t = [], start.timestamp()
    while True:
        t = spec.next_after(t)
        if t is None or t > end.timestamp():
            return out
        out.append(datetime.fromtimestamp(t, UTC))


def local(moments: list[datetime], tz: str) -> list[str]:
    return [m.astimezone(ZoneInfo(tz)).strftime("%m-%d %H:%M%z") for m in moments]


def test_new_york_spring_forward_gap_fires_once_at_the_jump() -> None:
    """02:30 does not exist on 2024-03-10: it fires once, at 03:00 EDT (07:00 UTC)."""
    got = fires("30 2 * * *", "America/New_York", at(2024, 3, 9, 12), at(2024, 3, 11, 12))
    assert got == [at(2024, 3, 10, 7, 0), at(2024, 3, 11, 6, 30)]
    assert local(got, "America/New_York") == ["03-10 03:00-0400", "03-11 02:30-0400"]


def test_new_york_fall_back_repeat_fires_once() -> None:
    """01:30 happens twice on 2024-11-03: it fires at the first (EDT) only."""
    got = fires("30 1 * * *", "America/New_York", at(2024, 11, 2, 12), at(2024, 11, 4, 12))
    assert got == [at(2024, 11, 3, 5, 30), at(2024, 11, 4, 6, 30)]
    every_20 = fires("*/20 * * * *", "America/New_York", at(2024, 11, 3, 4, 50),
                     at(2024, 11, 3, 7, 30))
    # 01:00, 01:20, 01:40 EDT, then nothing during the repeated hour, then 02:00 EST.
    assert local(every_20, "America/New_York") == [
        "11-03 01:00-0400", "11-03 01:20-0400", "11-03 01:40-0400",
        "11-03 02:00-0500", "11-03 02:20-0500"]


def test_london_both_transitions() -> None:
    spring = fires("30 1 * * *", "Europe/London", at(2024, 3, 30, 12), at(2024, 3, 31, 12))
    assert spring == [at(2024, 3, 31, 1, 0)]  # 01:30 GMT is skipped: fires at 02:00 BST
    autumn = fires("30 1 * * *", "Europe/London", at(2024, 10, 26, 12), at(2024, 10, 27, 12))
    assert autumn == [at(2024, 10, 27, 0, 30)]  # 01:30 BST, not again at 01:30 GMT
    noon = fires("0 12 * * *", "Europe/London", at(2024, 3, 29), at(2024, 4, 2))
    assert [m.hour for m in noon] == [12, 12, 11, 11]  # GMT, GMT, then BST


def test_lord_howe_half_hour_shifts() -> None:
    """Lord Howe moves by 30 minutes: +11 → +10:30 in April, back in October."""
    # 2024-04-07 02:00 +11 becomes 01:30 +10:30: 01:45 happens twice, fires once.
    april = fires("45 1 * * *", "Australia/Lord_Howe", at(2024, 4, 6, 0), at(2024, 4, 7, 23))
    assert april == [at(2024, 4, 6, 14, 45), at(2024, 4, 7, 15, 15)]
    assert local(april, "Australia/Lord_Howe") == ["04-07 01:45+1100", "04-08 01:45+1030"]
    quarter = fires("*/15 1 * * *", "Australia/Lord_Howe", at(2024, 4, 6, 13),
                    at(2024, 4, 6, 16))
    assert len(quarter) == 4  # 01:00-01:45 once each, the repeated half hour not again
    # 2024-10-06 02:00 +10:30 becomes 02:30 +11: 02:15 is skipped, fires at the jump.
    october = fires("15 2 * * *", "Australia/Lord_Howe", at(2024, 10, 5, 0), at(2024, 10, 6, 23))
    assert october == [at(2024, 10, 5, 15, 30), at(2024, 10, 6, 15, 15)]
    assert local(october, "Australia/Lord_Howe") == ["10-06 02:30+1100", "10-07 02:15+1100"]


def test_kolkata_half_hour_offset_without_dst() -> None:
    got = fires("0 12 * * *", "Asia/Kolkata", at(2024, 3, 9), at(2024, 3, 12))
    assert got == [at(2024, 3, 9, 6, 30), at(2024, 3, 10, 6, 30), at(2024, 3, 11, 6, 30)]
    quarter = fires("*/15 * * * *", "Asia/Kolkata", at(2024, 3, 10, 0, 1), at(2024, 3, 10, 1))
    assert [m.minute for m in quarter] == [15, 30, 45, 0]


def test_memoised_answers_match_direct_computation() -> None:
    """The per-minute memo returns what a fresh computation returns, for any second."""
    memo = CronSpec("*/15 * * * *", "America/New_York")
    t = at(2024, 11, 3, 4, 0).timestamp()
    for step in range(0, 4 * 3600, 37):
        fresh = CronSpec("*/15 * * * *", "America/New_York")
        assert memo.next_after(t + step) == fresh.next_after(t + step)
    # Strictly after: a fire time itself maps to the following one.
    slot = at(2024, 3, 10, 8, 15).timestamp()
    assert memo.next_after(slot) == slot + 900
    assert memo.next_after(slot - 0.5) == slot


def test_spec_cache_shares_one_spec_per_cron_and_zone() -> None:
    cache = SpecCache()
    a = cache.cron("0", "12", "*", "*", "*", "Asia/Kolkata")
    assert cache.cron("0", "12", "*", "*", "*", "Asia/Kolkata") is a
    assert cache.cron("0", "12", "*", "*", "*", "UTC") is not a
    assert len(cache) == 2


@pytest.mark.parametrize(("expr", "tz"), [("61 * * * *", "UTC"), ("0 12 * * *", "Mars/Base"),
                                          ("0 0 31 2 *", "UTC"), ("every day", "UTC")])
def test_bad_schedules_raise_bad_schedule(expr: str, tz: str) -> None:
    with pytest.raises(BadSchedule):
        CronSpec(expr, tz)


def test_interval_grid_and_clocked() -> None:
    spec = IntervalSpec(600)
    t = at(2024, 1, 1, 10, 3).timestamp()
    assert spec.next_after(t) == at(2024, 1, 1, 10, 10).timestamp()
    assert spec.latest_at_or_before(t) == at(2024, 1, 1, 10, 0).timestamp()
    anchored = IntervalSpec(600, anchor=at(2024, 1, 1, 0, 5).timestamp())
    assert anchored.next_after(t) == at(2024, 1, 1, 10, 5).timestamp()
    with pytest.raises(BadSchedule):
        IntervalSpec(0)
    once = ClockedSpec(t)
    assert once.next_after(t - 1) == t
    assert once.next_after(t) is None


def entry(spec, **fields) -> Entry:
    values = dict(id=1, name="e", task="t", spec=spec, args=(), kwargs={}, options=(),
                  headers={}, start_ts=None, expires_ts=None, expire_seconds=None,
                  one_off=False, last_run_ts=None, total_run_count=0, changed_ts=0.0)
    values.update(fields)
    return Entry(**values)


def test_position_catches_up_within_the_window_only() -> None:
    spec = CronSpec("*/15 * * * *", "UTC")
    now = at(2024, 3, 10, 12, 5).timestamp()
    last = at(2024, 3, 10, 11, 0).timestamp()
    assert entry(spec, last_run_ts=last).position(now, 3600) == at(2024, 3, 10, 11, 15).timestamp()
    # A 30-minute window: slots before 11:35 are given up.
    assert entry(spec, last_run_ts=last).position(now, 1800) == at(2024, 3, 10, 11, 45).timestamp()
    # A row changed at 11:50 does not publish the slots of its previous definition.
    changed = at(2024, 3, 10, 11, 50).timestamp()
    assert entry(spec, last_run_ts=last, changed_ts=changed).position(now, 3600) == (
        at(2024, 3, 10, 12, 0).timestamp())


def test_position_honours_start_expiry_and_one_off() -> None:
    spec = CronSpec("0 * * * *", "UTC")
    now = at(2024, 3, 10, 12, 30).timestamp()
    start = at(2024, 3, 10, 15, 0).timestamp()
    assert entry(spec, start_ts=start).position(now, 3600) == start  # slot at start counts
    expires = at(2024, 3, 10, 12, 59).timestamp()
    assert entry(spec, last_run_ts=now, expires_ts=expires).position(now, 3600) is None
    assert entry(spec, one_off=True, total_run_count=1).position(now, 3600) is None
    one = entry(spec, one_off=True, last_run_ts=now)
    assert one.advance(at(2024, 3, 10, 13).timestamp()) is None


def test_interval_catch_up_collapses_to_the_latest_slot() -> None:
    spec = IntervalSpec(60)
    now = at(2024, 3, 10, 12, 30, 30).timestamp()
    e = entry(spec, last_run_ts=at(2024, 3, 10, 12, 0).timestamp())
    assert e.position(now, 3600) == at(2024, 3, 10, 12, 30).timestamp()


def test_heap_pops_due_in_order_and_drops_stale_items() -> None:
    spec = CronSpec("* * * * *", "UTC")
    heap = EntryHeap()
    entries = [entry(spec, id=i, name=f"e{i}") for i in range(6)]
    for i, e in enumerate(entries):
        e.next_ts = 100.0 + (5 - i)
    heap.rebuild(entries)
    entries[0].next_ts = 1.0  # rescheduled earlier: the old item must not fire too
    heap.push(entries[0])
    entries[1].dead = True  # removed row
    heap.discard(entries[1])
    heap.push(entries[2])  # pushed again at the same time: still one item
    assert len(heap) == 5
    due = heap.pop_due(103.0)
    assert [e.id for e in due] == [0, 5, 4, 3, 2]
    assert heap.pop_due(1e9) == []
    assert heap.peek_ts() is None and len(heap) == 0


def test_heap_compacts_when_stale_items_pile_up() -> None:
    spec = CronSpec("* * * * *", "UTC")
    heap = EntryHeap()
    e = entry(spec)
    for step in range(5000):
        e.next_ts = float(step)
        heap.push(e)
    assert len(heap._heap) < 3000  # compacted, not 5000
    assert [x.id for x in heap.pop_due(1e9)] == [1]
    assert e.next_ts == 4999.0


def test_memo_handles_far_apart_queries() -> None:
    spec = CronSpec("0 6 * * 1", "America/New_York")
    t = at(2024, 1, 1).timestamp()
    results = {spec.next_after(t + d * 86400) for d in range(0, 28)}
    assert len(results) == 5  # Mondays Jan 1, 8, 15, 22, 29
    assert all(datetime.fromtimestamp(r, UTC).astimezone(ZoneInfo("America/New_York")).hour == 6
               for r in results)
    assert timedelta(seconds=max(results) - min(results)) == timedelta(days=28)
