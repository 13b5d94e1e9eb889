"""Weekly leaderboards: points, badges and streaks from the event store, boards in Redis.

A board is a Redis sorted set `leaderboard:<community_id>:<period>` (member id → points)
for one local ISO week. It is built under a private temporary key and renamed over the
live key in one Lua script, so a reader sees the old board or the new one, never a
half-built one. `leaderboard:<community_id>:current` names the newest published period.
Pages read the cached top N from LeaderboardSnapshot through `top()`.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import redis
from django.db import transaction
from django.db.models import Count
from django.db.models.functions import TruncDate

from communities.models import Community, Member
from notifications.outbox import notify_member

from .connections import leaderboard_redis
from .models import (
    ActivityEvent,
    Badge,
    EventType,
    LeaderboardSnapshot,
    LeaderboardStanding,
    MemberBadge,
)
from .periods import period_label, week_window

# Points per event: contributions that help others weigh most, a login least.
DEFAULT_WEIGHTS: dict[str, int] = {
    EventType.POST: 10,
    EventType.COMMENT: 4,
    EventType.EVENT_RSVP: 3,
    EventType.REACTION: 1,
    EventType.LOGIN: 1,
    EventType.MEMBER_JOINED: 0,
}
# Points in the week needed for each badge; a member gets the highest tier reached.
DEFAULT_THRESHOLDS: dict[str, int] = {Badge.BRONZE: 25, Badge.SILVER: 75, Badge.GOLD: 150}
BADGE_ORDER = [Badge.GOLD, Badge.SILVER, Badge.BRONZE]
STAGING_TTL_SECONDS = 3600  # an abandoned build (crashed worker) cleans itself up

# Rename the staged board over the live one, set its lifetime, and move the "current"
# pointer forward only (recomputing an old week must not hide the newest board).
# Period labels (YYYY-Www) sort as strings in time order.
_SWAP_SCRIPT = """
if ARGV[3] == '1' then
  if redis.call('EXISTS', KEYS[1]) == 0 then
    return redis.error_reply('staged board ' .. KEYS[1] .. ' is missing')
  end
  redis.call('RENAME', KEYS[1], KEYS[2])
  redis.call('EXPIRE', KEYS[2], ARGV[1])
else
  redis.call('DEL', KEYS[1], KEYS[2])
end
local current = redis.call('GET', KEYS[3])
if (not current) or current <= ARGV[2] then
  redis.call('SET', KEYS[3], ARGV[2])
  return 1
end
return 0
"""


def board_key(community_id: int, period: str) -> str:
    return f"leaderboard:{community_id}:{period}"


def current_key(community_id: int) -> str:
    return f"leaderboard:{community_id}:current"


# --- publishing ----------------------------------------------------------------------


def stage_board(client: redis.Redis, final_key: str, scores: dict[int, int]) -> str:
    """Write the scores under a fresh temporary key next to the live board; returns it."""
    temp = f"{final_key}:building:{uuid.uuid4().hex}"
    items = list(scores.items())
    pipe = client.pipeline(transaction=False)
    for offset in range(0, len(items), 1000):
        pipe.zadd(temp, {str(member_id): points for member_id, points in
                         items[offset:offset + 1000]})
    pipe.expire(temp, STAGING_TTL_SECONDS)
    pipe.execute()
    return temp


def swap_in(client: redis.Redis, temp_key: str, final_key: str, pointer_key: str,
            period: str, *, ttl_seconds: int, has_entries: bool) -> bool:
    """Atomically replace the live board; returns True when the pointer now names `period`."""
    moved = client.eval(_SWAP_SCRIPT, 3, temp_key, final_key, pointer_key,
                        ttl_seconds, period, "1" if has_entries else "0")
    return bool(moved)


# --- reading -------------------------------------------------------------------------


def board(community: Community | int, period: str,
          client: redis.Redis | None = None) -> list[tuple[int, int]]:
    """The live board from Redis as [(member_id, points)], best first."""
    cid = community if isinstance(community, int) else community.pk
    rows = (client or leaderboard_redis()).zrevrange(board_key(cid, period), 0, -1,
                                                     withscores=True)
    return [(int(member), int(score)) for member, score in rows]


def current_period(community: Community, client: redis.Redis | None = None) -> str | None:
    """The newest published period: Redis pointer, or the newest snapshot if Redis lost it."""
    value = (client or leaderboard_redis()).get(current_key(community.pk))
    if value:
        return value.decode()
    snapshot = (LeaderboardSnapshot.objects.filter(community=community)
                .order_by("-period").first())
    return snapshot.period if snapshot else None


def _entry(standing: LeaderboardStanding) -> dict[str, Any]:
    return {"rank": standing.rank, "member_id": standing.member_id,
            "display_name": standing.member.display_name, "points": standing.points,
            "badge": standing.badge, "active_days": standing.active_days,
            "longest_streak": standing.longest_streak,
            "current_streak": standing.current_streak}


def top(community: Community, period: str | None = None, n: int = 10) -> list[dict[str, Any]]:
    """The first n lines of a period's board for pages (default: the current period).

    Served from the snapshot's cached top N; a longer list falls back to the standings.
    """
    period = period or current_period(community)
    if not period or n <= 0:
        return []
    snapshot = LeaderboardSnapshot.objects.filter(community=community, period=period).first()
    if snapshot is None:
        return []
    if n <= snapshot.top_n or len(snapshot.top) >= snapshot.members_scored:
        return snapshot.top[:n]
    standings = (LeaderboardStanding.objects.filter(community=community, period=period)
                 .select_related("member").order_by("rank", "member__display_name",
                                                    "member_id")[:n])
    return [_entry(s) for s in standings]


# --- computing -----------------------------------------------------------------------


@dataclass
class Line:
    member: Member
    points: int = 0
    events: int = 0
    active_days: int = 0
    longest_streak: int = 0
    current_streak: int = 0
    rank: int = 0
    badge: str = ""


@dataclass
class Board:
    period: str
    start: datetime
    end: datetime
    lines: list[Line] = field(default_factory=list)
    events_scanned: int = 0
    events_unattributed: int = 0


def badge_for(points: int, thresholds: dict[str, int]) -> str:
    for badge in BADGE_ORDER:
        if points >= thresholds[badge]:
            return badge
    return ""


def streaks(active: set[date], first: date, last: date) -> tuple[int, int]:
    """(longest run of active days within [first, last], run ending on `last`).

    The current streak may reach back before `first`, as far as `active` goes.
    """
    longest = run = 0
    day = first
    while day <= last:
        run = run + 1 if day in active else 0
        longest = max(longest, run)
        day += timedelta(days=1)
    current = 0
    day = last
    while day in active:
        current += 1
        day -= timedelta(days=1)
    return longest, current


def compute_board(community: Community, monday: date, *, weights: dict[str, int],
                  thresholds: dict[str, int], streak_lookback_days: int) -> Board:
    tz = community.tzinfo
    start, end = week_window(monday, tz)
    result = Board(period=period_label(monday), start=start, end=end)
    week = ActivityEvent.objects.filter(community=community, occurred_at__gte=start,
                                        occurred_at__lt=end).order_by()
    points: dict[int, int] = defaultdict(int)
    events: dict[int, int] = defaultdict(int)
    for row in week.values("member_id", "type").annotate(n=Count("id")):
        result.events_scanned += row["n"]
        if row["member_id"] is None:
            result.events_unattributed += row["n"]
            continue
        points[row["member_id"]] += weights.get(row["type"], 0) * row["n"]
        events[row["member_id"]] += row["n"]
    # Anonymised or deactivated members keep their events in totals but leave the board.
    members = {m.pk: m for m in Member.objects.filter(
        community=community, pk__in=[pk for pk, p in points.items() if p > 0],
        is_active=True, anonymized_at__isnull=True)}
    if not members:
        return result

    # Active local days per member, from further back so a streak can predate the week.
    lookback_start = week_window(monday - timedelta(days=streak_lookback_days), tz)[0]
    days: dict[int, set[date]] = defaultdict(set)
    for row in (ActivityEvent.objects.filter(community=community, member_id__in=list(members),
                                             occurred_at__gte=lookback_start,
                                             occurred_at__lt=end)
                .order_by().annotate(day=TruncDate("occurred_at", tzinfo=tz))
                .values("member_id", "day").distinct()):
        days[row["member_id"]].add(row["day"])

    sunday = monday + timedelta(days=6)
    for pk, member in members.items():
        active = days[pk]
        longest, current = streaks(active, monday, sunday)
        result.lines.append(Line(
            member=member, points=points[pk], events=events[pk],
            active_days=sum(1 for d in active if monday <= d <= sunday),
            longest_streak=longest, current_streak=current,
            badge=badge_for(points[pk], thresholds),
        ))
    result.lines.sort(key=lambda ln: (-ln.points, ln.member.display_name.lower(), ln.member.pk))
    # Competition ranking: equal points share a rank, the next rank skips (1, 2, 2, 4).
    for index, line in enumerate(result.lines):
        previous = result.lines[index - 1] if index else None
        line.rank = previous.rank if previous and previous.points == line.points else index + 1
    return result


# --- storing -------------------------------------------------------------------------


def _top_entries(lines: list[Line], n: int) -> list[dict[str, Any]]:
    return [{"rank": ln.rank, "member_id": ln.member.pk, "display_name": ln.member.display_name,
             "points": ln.points, "badge": ln.badge, "active_days": ln.active_days,
             "longest_streak": ln.longest_streak, "current_streak": ln.current_streak}
            for ln in lines[:n]]


def sync_badges(community: Community, result: Board, now: datetime) -> dict[str, int]:
    """Make the period's badges equal to what the board earns; count new and revoked ones."""
    wanted = {(ln.member.pk, ln.badge): ln for ln in result.lines if ln.badge}
    existing = set(MemberBadge.objects.filter(community=community, period=result.period)
                   .values_list("member_id", "badge"))
    new = [MemberBadge(community=community, member=ln.member, badge=badge,
                       period=result.period, points=ln.points, awarded_at=now)
           for (pk, badge), ln in wanted.items() if (pk, badge) not in existing]
    MemberBadge.objects.bulk_create(new)
    stale = existing - set(wanted)
    revoked = 0
    for member_id, badge in stale:  # a recompute with changed data may lower a tier
        revoked += MemberBadge.objects.filter(community=community, period=result.period,
                                              member_id=member_id, badge=badge).delete()[0]
    return {"badges_awarded": len(new), "badges_revoked": revoked, "badges_held": len(wanted)}


def store_standings(community: Community, result: Board, top_n: int,
                    now: datetime, key: str) -> None:
    LeaderboardStanding.objects.filter(community=community, period=result.period).delete()
    LeaderboardStanding.objects.bulk_create([
        LeaderboardStanding(community=community, period=result.period, member=ln.member,
                            rank=ln.rank, points=ln.points, events=ln.events,
                            active_days=ln.active_days, longest_streak=ln.longest_streak,
                            current_streak=ln.current_streak, badge=ln.badge)
        for ln in result.lines
    ])
    LeaderboardSnapshot.objects.update_or_create(
        community=community, period=result.period,
        defaults={"period_start": result.start, "period_end": result.end,
                  "members_scored": len(result.lines), "events_scanned": result.events_scanned,
                  "top": _top_entries(result.lines, top_n), "top_n": top_n, "redis_key": key,
                  "computed_at": now},
    )


def notify_top_performers(community: Community, result: Board, notify_top: int) -> dict[str, int]:
    """Tell the members ranked 1..notify_top, once per period (the outbox dedups by key)."""
    counts = {"notified": 0, "notify_skipped": 0}
    for line in result.lines:
        if line.rank > notify_top:
            break
        streak = (f" and a {line.longest_streak}-day streak" if line.longest_streak > 1 else "")
        _, created = notify_member(
            line.member,
            kind="leaderboard.top_performer",
            subject=f"You're #{line.rank} on the {community.name} leaderboard ({result.period})",
            body=(f"Hi {line.member.display_name},\n\nwith {line.points} points{streak} you "
                  f"finished #{line.rank} in {community.name} for {result.period}."
                  + (f" You earned the {line.badge} badge." if line.badge else "")
                  + "\n\nThanks for being part of the community!"),
            dedup_key=f"leaderboard:{result.period}",
            data={"period": result.period, "rank": line.rank, "points": line.points,
                  "badge": line.badge},
        )
        counts["notified" if created else "notify_skipped"] += 1
    return counts


def recalculate(community: Community, monday: date, now: datetime, *,
                weights: dict[str, int], thresholds: dict[str, int], top_n: int,
                notify_top: int, notify: bool, streak_lookback_days: int, keep_weeks: int,
                client: redis.Redis | None = None) -> dict[str, Any]:
    """Compute one week's board, store it, publish it to Redis, notify the top performers.

    DB writes and the Redis swap share one transaction: if Redis is down the standings,
    badges and notifications roll back and the retried run does everything again.
    """
    client = client or leaderboard_redis()
    result = compute_board(community, monday, weights=weights, thresholds=thresholds,
                           streak_lookback_days=streak_lookback_days)
    key = board_key(community.pk, result.period)
    with transaction.atomic():
        badges = sync_badges(community, result, now)
        store_standings(community, result, top_n, now, key)
        scores = {ln.member.pk: ln.points for ln in result.lines}
        temp = stage_board(client, key, scores) if scores else f"{key}:building:none"
        moved = swap_in(client, temp, key, current_key(community.pk), result.period,
                        ttl_seconds=keep_weeks * 7 * 86400, has_entries=bool(scores))
        notices = (notify_top_performers(community, result, notify_top) if notify
                   else {"notified": 0, "notify_skipped": 0})
    return {
        "period": result.period,
        "members_scored": len(result.lines),
        "events_scanned": result.events_scanned,
        "events_unattributed": result.events_unattributed,
        **badges,
        **notices,
        "top_points": result.lines[0].points if result.lines else 0,
        "details": {
            "window": [result.start.isoformat(), result.end.isoformat()],
            "redis_key": key,
            "current_pointer_moved": moved,
            "top": _top_entries(result.lines, min(top_n, 3)),
        },
    }
