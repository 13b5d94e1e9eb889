"""analytics_hourly_rollup: recount the local day(s) the last hour touched into daily rollups."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from django import forms

from automation.registry import tenant_job
from communities.models import Community

from ..forms import ParamsForm
from ..periods import local_days_touching
from ..rollups import recompute_days


class HourlyRollupParams(ParamsForm):
    hours = forms.IntegerField(
        min_value=1, max_value=24 * 14, initial=1, required=False,
        help_text="hours before the slot to cover (more than 1 catches up after an outage)",
    )


def hour_window(now: datetime, community: Community, hours: int) -> tuple[datetime, datetime]:
    """The `hours` whole local hours that ended at or before `now` (fired at :05 → 1 h ago)."""
    # Floor in local time (a +05:30 zone's hours start at :30 UTC), then subtract in UTC:
    # wall-clock arithmetic would be an hour off across a DST change.
    end = now.astimezone(community.tzinfo).replace(minute=0, second=0, microsecond=0)
    end = end.astimezone(UTC)
    return end - timedelta(hours=hours), end


@tenant_job(
    name="analytics_hourly_rollup",
    description="Recount the community-local day(s) of the last hour from the event store into "
                "daily rollups (community, date, event type); replays give the same numbers.",
    category="analytics",
    queue="automation",
    cron="5 * * * *",
    soft_time_limit=300,
    time_limit=360,
    max_retries=3,
    backoff_base=20.0,
    backoff_cap=300.0,
    params_form=HourlyRollupParams,
)
def analytics_hourly_rollup(community: Community, now: datetime, *,
                            hours: int = 1) -> dict[str, Any]:
    start, end = hour_window(now, community, hours)
    # Whole days are recounted, not the hour added: late events anywhere in the day count,
    # and a replayed hour cannot count anything twice.
    days = local_days_touching(start, end, community.tzinfo)
    summary = recompute_days(community, days, now)
    summary["window"] = [start.isoformat(), end.isoformat()]
    return summary
