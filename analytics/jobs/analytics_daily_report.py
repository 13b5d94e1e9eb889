"""analytics_daily_report: yesterday's local-day activity report, recomputed from the source."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from automation.input_limits import RANGE_TEXT
from automation.registry import tenant_job
from communities.models import Community

from ..forms import ParamsForm, PlatformDateField, as_date
from ..periods import local_date
from ..rollups import build_daily_report


class DailyReportParams(ParamsForm):
    date = PlatformDateField(required=False, label="date", input_formats=["%Y-%m-%d"],
                             help_text=f"local date to (re)build, YYYY-MM-DD, {RANGE_TEXT}; "
                                       "default: yesterday")


@tenant_job(
    name="analytics_daily_report",
    description="Recount yesterday's community-local day (rollups, active and new members) and "
                "store it as that day's report.",
    category="analytics",
    queue="automation",
    cron="15 0 * * *",
    soft_time_limit=300,
    time_limit=360,
    max_retries=3,
    backoff_base=30.0,
    backoff_cap=600.0,
    params_form=DailyReportParams,
)
def analytics_daily_report(community: Community, now: datetime, *,
                           date: date | str | None = None) -> dict[str, Any]:
    day = as_date(date) or local_date(now, community.tzinfo) - timedelta(days=1)
    report, created = build_daily_report(community, day, now)
    return {
        "date": day.isoformat(),
        "events_total": report.events_total,
        "active_members": report.active_members,
        "new_members": report.new_members,
        "reports_created": int(created),
        "reports_updated": int(not created),
        "by_type": report.by_type,
    }
