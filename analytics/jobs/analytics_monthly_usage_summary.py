"""analytics_monthly_usage_summary: the previous local month's usage, recomputed from the source."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from automation.input_limits import RANGE_TEXT
from automation.registry import tenant_job
from communities.models import Community

from ..forms import MonthField, ParamsForm
from ..periods import parse_month, previous_month
from ..rollups import build_monthly_summary


class MonthlySummaryParams(ParamsForm):
    month = MonthField(required=False,
                       help_text=f"local month to (re)build, YYYY-MM, {RANGE_TEXT}; "
                                 "default: last month")


@tenant_job(
    name="analytics_monthly_usage_summary",
    description="Summarise the previous community-local month's usage (events by type, active "
                "members and days, peak day) into one row per month.",
    category="analytics",
    queue="automation",
    cron="30 0 1 * *",
    soft_time_limit=600,
    time_limit=720,
    max_retries=3,
    backoff_base=60.0,
    backoff_cap=900.0,
    params_form=MonthlySummaryParams,
)
def analytics_monthly_usage_summary(community: Community, now: datetime, *,
                                    month: str = "") -> dict[str, Any]:
    first = parse_month(month) if month else previous_month(now, community.tzinfo)
    summary, created = build_monthly_summary(community, first, now)
    return {
        "month": f"{first:%Y-%m}",
        "events_total": summary.events_total,
        "active_members": summary.active_members,
        "active_days": summary.active_days,
        "new_members": summary.new_members,
        "peak_day_events": summary.peak_day_events,
        "summaries_created": int(created),
        "summaries_updated": int(not created),
        "peak_day": summary.peak_day.isoformat() if summary.peak_day else None,
        "by_type": summary.by_type,
    }
