"""Jobs of the analytics app, one module per job, named after it."""

from . import (  # noqa: F401
    analytics_backfill_replay,
    analytics_daily_report,
    analytics_hourly_rollup,
    analytics_monthly_usage_summary,
    weekly_leaderboard_recalculate,
)
