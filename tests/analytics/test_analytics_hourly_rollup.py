"""analytics_hourly_rollup: daily rollups recounted from the source, in the community's days."""

from __future__ import annotations

from datetime import date

import pytest

from analytics.jobs.analytics_hourly_rollup import analytics_hourly_rollup
from analytics.models import DailyRollup
from automation.errors import InvalidJobParams
from automation.models import JobRun
from automation.runs import run_inline

from .conftest import add, local, make_member

DAY = date(2026, 3, 9)


@pytest.fixture
def kolkata(other_community):
    """Asia/Kolkata (UTC+5:30): local midnight is 18:30 UTC, so UTC dates would be wrong."""
    ann, bob = make_member(other_community, "Ann"), make_member(other_community, "Bob")
    add(other_community, ann, "login", local(other_community, DAY, 0, 10))
    add(other_community, ann, "login", local(other_community, DAY, 23, 10))
    add(other_community, bob, "login", local(other_community, DAY, 12))
    add(other_community, bob, "post", local(other_community, DAY, 23, 20))
    add(other_community, None, "reaction", local(other_community, DAY, 23, 30))
    add(other_community, ann, "login", local(other_community, date(2026, 3, 8), 23, 59))
    add(other_community, ann, "login", local(other_community, date(2026, 3, 10), 0, 2))
    other_community.ann, other_community.bob = ann, bob
    return other_community


def rows(community) -> dict[tuple[str, str], tuple[int, int]]:
    return {(r.date.isoformat(), r.event_type): (r.count, r.distinct_members)
            for r in DailyRollup.objects.filter(community=community)}


def test_the_hour_before_local_midnight_recounts_that_local_day(kolkata) -> None:
    slot = local(kolkata, date(2026, 3, 10), 0, 5)  # fires 00:05 local → 23:00-00:00
    summary = analytics_hourly_rollup(kolkata, slot)
    assert (summary["days_recomputed"], summary["rollup_rows"], summary["events_counted"]) == (
        1, 3, 5)
    assert rows(kolkata) == {
        ("2026-03-09", "login"): (3, 2),
        ("2026-03-09", "post"): (1, 1),
        ("2026-03-09", "reaction"): (1, 0),  # a deleted member's event counts, no member
    }


def test_replayed_hour_gives_the_same_numbers(kolkata) -> None:
    slot = local(kolkata, date(2026, 3, 10), 0, 5)
    first = analytics_hourly_rollup(kolkata, slot)
    before = rows(kolkata)
    second = analytics_hourly_rollup(kolkata, slot)
    assert rows(kolkata) == before
    assert DailyRollup.objects.count() == 3
    assert {k: v for k, v in second.items() if k != "days"} == {
        k: v for k, v in first.items() if k != "days"}


def test_late_events_in_a_replayed_hour_are_picked_up(kolkata) -> None:
    slot = local(kolkata, date(2026, 3, 10), 0, 5)
    analytics_hourly_rollup(kolkata, slot)
    # Arrived after the run: one inside the replayed hour, one earlier that day.
    add(kolkata, kolkata.bob, "login", local(kolkata, DAY, 23, 40))
    add(kolkata, kolkata.ann, "comment", local(kolkata, DAY, 9))
    analytics_hourly_rollup(kolkata, slot)
    assert rows(kolkata)[("2026-03-09", "login")] == (4, 2)
    assert rows(kolkata)[("2026-03-09", "comment")] == (1, 1)


def test_a_type_whose_events_are_gone_is_removed(kolkata) -> None:
    slot = local(kolkata, date(2026, 3, 10), 0, 5)
    analytics_hourly_rollup(kolkata, slot)
    kolkata.activity_events.filter(type="post").delete()
    summary = analytics_hourly_rollup(kolkata, slot)
    assert summary["rows_removed"] == 1
    assert ("2026-03-09", "post") not in rows(kolkata)


def test_catch_up_window_spanning_two_local_days(kolkata) -> None:
    summary = analytics_hourly_rollup(kolkata, local(kolkata, date(2026, 3, 10), 1, 5), hours=3)
    assert [d["date"] for d in summary["days"]] == ["2026-03-09", "2026-03-10"]
    assert rows(kolkata)[("2026-03-10", "login")] == (1, 1)


def test_bad_params_are_refused() -> None:
    with pytest.raises(InvalidJobParams) as info:
        analytics_hourly_rollup.spec.clean_params({"hours": 0})
    assert "greater than or equal to 1" in info.value.errors["hours"][0]
    with pytest.raises(InvalidJobParams) as info:
        analytics_hourly_rollup.spec.clean_params({"hours": "many"})
    assert "Enter a whole number." in info.value.errors["hours"]


@pytest.mark.django_db(transaction=True)
def test_runs_through_the_platform_path(kolkata) -> None:
    slot = local(kolkata, date(2026, 3, 10), 0, 5)
    run = run_inline(analytics_hourly_rollup.spec, kolkata, trigger="manual", now=slot)
    assert run.status == JobRun.Status.SUCCEEDED, run.error_message
    assert run.result["events_counted"] == 5
    replay = run_inline(analytics_hourly_rollup.spec, kolkata, trigger="manual", now=slot)
    assert replay.result["events_counted"] == 5
    assert DailyRollup.objects.filter(community=kolkata).count() == 3


def test_the_25_hour_day_when_new_york_falls_back(community) -> None:
    fall_back = date(2026, 11, 1)
    add(community, None, "login", local(community, fall_back, 0, 30))  # EDT, 04:30 UTC
    add(community, None, "login", local(community, fall_back, 23, 30))  # EST, 04:30 UTC + 1d
    add(community, None, "login", local(community, date(2026, 11, 2), 0, 1))
    summary = analytics_hourly_rollup(community, local(community, date(2026, 11, 2), 0, 5))
    assert summary["window"] == ["2026-11-02T04:00:00+00:00", "2026-11-02T05:00:00+00:00"]
    assert rows(community) == {("2026-11-01", "login"): (2, 0)}
