"""weekly_leaderboard_recalculate against the real Redis and the notification outbox."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from analytics.connections import leaderboard_redis
from analytics.jobs.weekly_leaderboard_recalculate import weekly_leaderboard_recalculate
from analytics.leaderboard import (
    board,
    board_key,
    current_key,
    current_period,
    stage_board,
    swap_in,
    top,
)
from analytics.models import LeaderboardStanding, MemberBadge
from automation.errors import InvalidJobParams
from automation.models import JobRun
from automation.runs import run_inline
from notifications.models import Notification
from tests.servers import free_port

from .conftest import add, local

MONDAY = date(2026, 2, 2)  # ISO week 2026-W06, in America/New_York (UTC-5 in February)
PERIOD = "2026-W06"


def day(n: int) -> date:
    return MONDAY + timedelta(days=n)


@pytest.fixture
def week(community, people):
    """A week of activity whose expected board is worked out by hand (default weights)."""
    ann, bob, cy, dee, eve, fay = (people[n] for n in ["Ann", "Bob", "Cy", "Dee", "Eve", "Fay"])
    for n in range(4):  # Mon-Thu, 4 posts a day: 160 points, gold, streak 4, not active Sunday
        add(community, ann, "post", local(community, day(n), 10), count=4)
    add(community, fay, "post", local(community, day(0), 9), count=8)  # 80: silver
    for n in (4, 5, 6):  # Fri-Sun, 2 posts a day = 60 ...
        add(community, bob, "post", local(community, day(n), 12), count=2)
    # ... + a comment on Sunday 23:30 local (Monday 04:30 UTC): still this week → 64, bronze
    add(community, bob, "comment", local(community, day(6), 23, 30))
    # Tue 23:30 and Wed 00:30 local: one UTC date (Wednesday), two local days → streak 2.
    add(community, cy, "comment", local(community, day(1), 23, 30))
    add(community, cy, "comment", local(community, day(2), 0, 30))
    # Eve logs in every day for two weeks: 7 points this week, current streak 14.
    for n in range(-7, 7):
        add(community, eve, "login", local(community, day(n), 8))
    # Dee only just misses the week on both sides (UTC dates would put both inside it).
    add(community, dee, "post", local(community, day(-1), 23, 30))
    add(community, dee, "post", local(community, day(7), 0, 30))
    add(community, None, "reaction", local(community, day(3), 15))  # a deleted member's
    return people


def run(community, **params):
    return weekly_leaderboard_recalculate(community, local(community, day(7), 6), **params)


def test_board_badges_streaks_and_notices(community, week) -> None:
    summary = run(community)
    ann, bob, cy, eve, fay = (week[n].pk for n in ["Ann", "Bob", "Cy", "Eve", "Fay"])
    assert summary["period"] == PERIOD
    assert (summary["members_scored"], summary["events_unattributed"]) == (5, 1)
    assert summary["events_scanned"] == 16 + 8 + 6 + 1 + 2 + 7 + 1
    assert (summary["badges_awarded"], summary["notified"]) == (3, 3)

    # Redis holds the board, best first, under the period's key; the pointer names it.
    assert board(community, PERIOD) == [(ann, 160), (fay, 80), (bob, 64), (cy, 8), (eve, 7)]
    redis = leaderboard_redis()
    assert redis.get(current_key(community.pk)) == PERIOD.encode()
    assert 0 < redis.ttl(board_key(community.pk, PERIOD)) <= 26 * 7 * 86400
    assert list(redis.scan_iter("leaderboard:*:building:*")) == []

    badges = set(MemberBadge.objects.values_list("member_id", "badge", "period"))
    assert badges == {(ann, "gold", PERIOD), (fay, "silver", PERIOD), (bob, "bronze", PERIOD)}

    lines = {s.member_id: s for s in LeaderboardStanding.objects.filter(period=PERIOD)}
    assert (lines[ann].longest_streak, lines[ann].current_streak) == (4, 0)
    assert (lines[bob].longest_streak, lines[bob].current_streak) == (3, 3)
    assert (lines[cy].active_days, lines[cy].longest_streak) == (2, 2)
    assert (lines[eve].longest_streak, lines[eve].current_streak) == (7, 14)

    cached = top(community, PERIOD, 3)
    assert [(e["rank"], e["display_name"], e["points"], e["badge"]) for e in cached] == [
        (1, "Ann", 160, "gold"), (2, "Fay", 80, "silver"), (3, "Bob", 64, "bronze")]
    assert [e["display_name"] for e in top(community)] == ["Ann", "Fay", "Bob", "Cy", "Eve"]

    notices = Notification.objects.filter(kind="leaderboard.top_performer").order_by("member_id")
    assert [(n.member_id, n.data["rank"]) for n in notices] == [(ann, 1), (bob, 3), (fay, 2)]
    assert "#1 on the Acme Makers leaderboard (2026-W06)" in notices[0].subject
    assert "gold badge" in notices[0].body


def test_rerun_gives_the_same_board_and_no_second_notice(community, week) -> None:
    first = run(community)
    second = run(community)
    assert board(community, PERIOD)[0] == (week["Ann"].pk, 160)
    assert len(board(community, PERIOD)) == 5
    assert {k: second[k] for k in ("members_scored", "events_scanned", "top_points")} == {
        k: first[k] for k in ("members_scored", "events_scanned", "top_points")}
    assert (second["badges_awarded"], second["badges_held"], second["notified"],
            second["notify_skipped"]) == (0, 3, 0, 3)
    assert Notification.objects.filter(kind="leaderboard.top_performer").count() == 3
    assert MemberBadge.objects.count() == 3
    assert LeaderboardStanding.objects.count() == 5


def test_recompute_follows_late_events_and_lowers_a_tier(community, week) -> None:
    run(community)
    # Late events arrive for the week; the recompute counts from the source, not on top.
    add(community, week["Cy"], "post", local(community, day(5), 9), count=3)
    week["Fay"].activity_events.order_by("pk").first().delete()  # Fay: 70, silver → bronze
    summary = run(community, notify=False)
    assert dict(board(community, PERIOD))[week["Cy"].pk] == 38
    assert set(MemberBadge.objects.filter(member=week["Fay"]).values_list("badge", flat=True)) \
        == {"bronze"}
    assert (summary["badges_awarded"], summary["badges_revoked"]) == (2, 1)  # Cy, Fay; Fay


def test_a_reader_sees_the_old_board_until_the_swap(community) -> None:
    """Building a new board never shows readers a partial one; the rename swaps it whole."""
    redis = leaderboard_redis()
    key, pointer = board_key(community.pk, PERIOD), current_key(community.pk)
    temp = stage_board(redis, key, {1: 10, 2: 20})
    swap_in(redis, temp, key, pointer, PERIOD, ttl_seconds=60, has_entries=True)

    temp = stage_board(redis, key, {3: 30, 4: 40, 5: 50})
    assert board(community, PERIOD) == [(2, 20), (1, 10)]  # still the old board, complete
    assert redis.zcard(temp) == 3 and redis.ttl(temp) > 0  # the new one waits beside it
    assert swap_in(redis, temp, key, pointer, PERIOD, ttl_seconds=60, has_entries=True)
    assert board(community, PERIOD) == [(5, 50), (4, 40), (3, 30)]
    assert not redis.exists(temp)

    # An older week recomputed later is published without moving "current" back.
    old = "2026-W05"
    temp = stage_board(redis, board_key(community.pk, old), {9: 1})
    moved = swap_in(redis, temp, board_key(community.pk, old), pointer, old, ttl_seconds=60,
                    has_entries=True)
    assert not moved and current_period(community) == PERIOD
    assert board(community, old) == [(9, 1)]


def test_empty_week_removes_the_board(community, people) -> None:
    redis = leaderboard_redis()
    redis.zadd(board_key(community.pk, PERIOD), {"1": 5})
    summary = run(community)
    assert (summary["members_scored"], summary["notified"]) == (0, 0)
    assert not redis.exists(board_key(community.pk, PERIOD))
    assert top(community, PERIOD) == []


def test_weights_and_thresholds_from_params(community, week) -> None:
    summary = run(community, weights={"login": 20}, gold_points=500, silver_points=140,
                  bronze_points=100, notify_top=1, top_n=2)
    assert dict(board(community, PERIOD))[week["Eve"].pk] == 140  # 7 logins x 20
    assert set(MemberBadge.objects.values_list("badge", flat=True)) == {"silver"}
    assert summary["notified"] == 1
    # The cache holds 2 lines; asking for more reads the standings.
    assert len(top(community, PERIOD, 2)) == 2
    assert [e["display_name"] for e in top(community, PERIOD, 4)] == ["Ann", "Eve", "Fay", "Bob"]


def test_period_param_recomputes_a_past_week(community, week) -> None:
    summary = weekly_leaderboard_recalculate(community, local(community, day(30), 6),
                                             period=PERIOD, notify=False)
    assert (summary["period"], summary["members_scored"], summary["notified"]) == (PERIOD, 5, 0)


def test_inactive_and_anonymised_members_leave_the_board(community, week) -> None:
    week["Ann"].is_active = False
    week["Ann"].save()
    run(community)
    assert week["Ann"].pk not in dict(board(community, PERIOD))
    assert board(community, PERIOD)[0] == (week["Fay"].pk, 80)


@pytest.mark.parametrize(("params", "field", "message"), [
    ({"period": "2026-W60"}, "period", "2026 has no ISO week 60"),
    ({"period": "last week"}, "period", "is not an ISO week such as 2026-W48"),
    ({"weights": {"posts": 3}}, "weights", "unknown event types: posts"),
    ({"weights": {"post": -1}}, "weights", "weight of post must be a whole number"),
    ({"weights": [1, 2]}, "weights", "must be an object"),
    ({"silver_points": 10}, "__all__", "bronze < silver < gold (got 25, 10, 150)"),
    ({"top_n": 0}, "top_n", "greater than or equal to 1"),
    ({"colour": "red"}, "__all__", "unknown params: colour"),
])
def test_bad_params_are_refused(params, field, message) -> None:
    with pytest.raises(InvalidJobParams) as info:
        weekly_leaderboard_recalculate.spec.clean_params(params)
    assert message in " ".join(info.value.errors[field])


@pytest.mark.django_db(transaction=True)
def test_runs_on_schedule_once_per_slot(community, week) -> None:
    slot = local(community, day(7), 6)
    spec = weekly_leaderboard_recalculate.spec
    run1 = run_inline(spec, community, trigger=JobRun.Trigger.SCHEDULE, now=slot)
    assert run1.status == JobRun.Status.SUCCEEDED, run1.error_message
    assert (run1.result["members_scored"], run1.result["notified"]) == (5, 3)
    run2 = run_inline(spec, community, trigger=JobRun.Trigger.SCHEDULE, now=slot)
    assert (run2.status, run2.skip_reason) == (JobRun.Status.SKIPPED, "slot_already_done")
    assert Notification.objects.filter(kind="leaderboard.top_performer").count() == 3


@pytest.mark.django_db(transaction=True)
def test_redis_down_is_retried_then_fails_and_keeps_nothing(community, week, settings) -> None:
    settings.ANALYTICS_REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    run = run_inline(weekly_leaderboard_recalculate.spec, community, trigger="manual",
                     now=local(community, day(7), 6))
    assert run.status == JobRun.Status.FAILED
    assert run.attempts == 4
    assert run.error_type == "ConnectionError"
    assert run.error_message.startswith("gave up after 4 attempts: ")
    assert "Connection refused" in run.error_message
    # Standings, badges and notices roll back with the failed publish.
    assert LeaderboardStanding.objects.count() == 0
    assert MemberBadge.objects.count() == 0
    assert Notification.objects.count() == 0


def test_pages_survive_a_flushed_redis(community, week) -> None:
    run(community)
    leaderboard_redis().flushdb()
    assert current_period(community) == PERIOD  # from the newest snapshot
    assert [e["display_name"] for e in top(community, n=2)] == ["Ann", "Fay"]
    run(community)  # a recompute restores the sorted set
    assert len(board(community, PERIOD)) == 5
