"""Daily rollups, daily reports and monthly usage summaries, recomputed from the event store.

Nothing here increments a stored number: each function counts the source events of a
whole local day (or month) and writes the result over what was there. Replaying an
hour, a day or a month therefore gives the same numbers, and events that arrived late
are picked up by whichever recompute runs next.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from django.db import transaction
from django.db.models import Count
from django.db.models.functions import TruncDate

from communities.models import Community, Member

from .models import ActivityEvent, DailyReport, DailyRollup, MonthlyUsageSummary
from .periods import local_day_window, month_window


def _events(community: Community, start: datetime, end: datetime):
    return ActivityEvent.objects.filter(
        community=community, occurred_at__gte=start, occurred_at__lt=end
    )


def count_day(community: Community, day: date) -> dict[str, dict[str, int]]:
    """{event_type: {"count", "distinct_members"}} for one local day, from the source."""
    start, end = local_day_window(day, community.tzinfo)
    rows = (
        _events(community, start, end)
        .order_by()
        .values("type")
        .annotate(n=Count("id"), members=Count("member", distinct=True))
    )
    return {row["type"]: {"count": row["n"], "distinct_members": row["members"]}
            for row in rows}


def recompute_day(community: Community, day: date, now: datetime) -> dict[str, int]:
    """Make the day's rollup rows equal to the source counts; returns what it wrote."""
    counts = count_day(community, day)
    with transaction.atomic():
        if counts:
            DailyRollup.objects.bulk_create(
                [DailyRollup(community=community, date=day, event_type=event_type,
                             count=c["count"], distinct_members=c["distinct_members"],
                             updated_at=now)
                 for event_type, c in sorted(counts.items())],
                update_conflicts=True,
                unique_fields=["community", "date", "event_type"],
                update_fields=["count", "distinct_members", "updated_at"],
            )
        # A type whose events are gone (deleted since) must not keep its old count.
        removed, _ = (DailyRollup.objects.filter(community=community, date=day)
                      .exclude(event_type__in=list(counts)).delete())
    return {"rows": len(counts), "events": sum(c["count"] for c in counts.values()),
            "removed": removed}


def recompute_days(community: Community, days: list[date], now: datetime) -> dict[str, Any]:
    summary: dict[str, Any] = {"days_recomputed": 0, "rollup_rows": 0, "events_counted": 0,
                               "rows_removed": 0, "days": []}
    for day in days:
        result = recompute_day(community, day, now)
        summary["days_recomputed"] += 1
        summary["rollup_rows"] += result["rows"]
        summary["events_counted"] += result["events"]
        summary["rows_removed"] += result["removed"]
        summary["days"].append({"date": day.isoformat(), **result})
    return summary


def _new_members(community: Community, start: datetime, end: datetime) -> int:
    return Member.objects.filter(
        community=community, joined_at__gte=start, joined_at__lt=end
    ).count()


def build_daily_report(community: Community, day: date,
                       now: datetime) -> tuple[DailyReport, bool]:
    """Recompute the day's rollups from the source, then write the day's report over the old."""
    recompute_day(community, day, now)
    start, end = local_day_window(day, community.tzinfo)
    by_type = dict(
        DailyRollup.objects.filter(community=community, date=day)
        .order_by("event_type").values_list("event_type", "count")
    )
    active = (_events(community, start, end).exclude(member=None).order_by()
              .values("member").distinct().count())
    return DailyReport.objects.update_or_create(
        community=community, date=day,
        defaults={
            "events_total": sum(by_type.values()),
            "active_members": active,
            "new_members": _new_members(community, start, end),
            "by_type": by_type,
            "generated_at": now,
        },
    )


def build_monthly_summary(community: Community, first: date,
                          now: datetime) -> tuple[MonthlyUsageSummary, bool]:
    """Count the local month from the source (distinct members need it) and store the row."""
    tz = community.tzinfo
    start, end = month_window(first, tz)
    events = _events(community, start, end).order_by()
    by_type = dict(events.values("type").annotate(n=Count("id")).values_list("type", "n"))
    per_day = list(
        events.annotate(day=TruncDate("occurred_at", tzinfo=tz))
        .values("day").annotate(n=Count("id")).order_by("-n", "day")
    )
    peak = per_day[0] if per_day else None
    return MonthlyUsageSummary.objects.update_or_create(
        community=community, month=first,
        defaults={
            "events_total": sum(by_type.values()),
            "active_members": events.exclude(member=None).values("member").distinct().count(),
            "active_days": len(per_day),
            "new_members": _new_members(community, start, end),
            "peak_day": peak["day"] if peak else None,
            "peak_day_events": peak["n"] if peak else 0,
            "by_type": dict(sorted(by_type.items())),
            "generated_at": now,
        },
    )
