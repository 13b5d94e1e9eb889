"""weekly_leaderboard_recalculate: last week's points, badges and streaks, published to Redis."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django import forms

from automation.input_limits import RANGE_TEXT
from automation.registry import tenant_job
from communities.models import Community

from ..forms import IsoWeekField, ParamsForm
from ..leaderboard import DEFAULT_THRESHOLDS, DEFAULT_WEIGHTS, recalculate
from ..models import Badge, EventType
from ..periods import last_complete_week, parse_period


class LeaderboardParams(ParamsForm):
    period = IsoWeekField(
        required=False,
        help_text=f"ISO week to recompute, e.g. 2026-W47, starting {RANGE_TEXT}; default: "
                  "the last full local week before the run",
    )
    weights = forms.JSONField(
        required=False,
        help_text='points per event type over the defaults, e.g. {"post": 12, "login": 0}',
    )
    bronze_points = forms.IntegerField(min_value=1, max_value=100_000, required=False,
                                       initial=DEFAULT_THRESHOLDS[Badge.BRONZE])
    silver_points = forms.IntegerField(min_value=1, max_value=100_000, required=False,
                                       initial=DEFAULT_THRESHOLDS[Badge.SILVER])
    gold_points = forms.IntegerField(min_value=1, max_value=100_000, required=False,
                                     initial=DEFAULT_THRESHOLDS[Badge.GOLD])
    top_n = forms.IntegerField(min_value=1, max_value=100, initial=10, required=False,
                               help_text="how many lines the page cache keeps")
    notify_top = forms.IntegerField(min_value=0, max_value=20, initial=3, required=False,
                                    help_text="ranks told about their placing (0: nobody)")
    notify = forms.BooleanField(required=False, initial=True,
                                help_text="off for backfills of old weeks")
    streak_lookback_days = forms.IntegerField(min_value=0, max_value=366, initial=60,
                                              required=False)
    keep_weeks = forms.IntegerField(min_value=1, max_value=520, initial=26, required=False,
                                    help_text="how long a board stays in Redis")

    def clean_weights(self) -> dict[str, int] | None:
        value = self.cleaned_data.get("weights")
        if value is None:
            return None
        if not isinstance(value, dict):
            raise forms.ValidationError("weights must be an object of event type → points")
        unknown = sorted(set(value) - set(EventType.values))
        if unknown:
            raise forms.ValidationError(
                f"unknown event types: {', '.join(unknown)} "
                f"(known: {', '.join(EventType.values)})")
        for name, points in value.items():
            if isinstance(points, bool) or not isinstance(points, int) or not 0 <= points <= 1000:
                raise forms.ValidationError(
                    f"weight of {name} must be a whole number from 0 to 1000, not {points!r}")
        return value

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        tiers = [data.get(f"{badge}_points") or DEFAULT_THRESHOLDS[badge]
                 for badge in (Badge.BRONZE, Badge.SILVER, Badge.GOLD)]
        if not tiers[0] < tiers[1] < tiers[2]:
            raise forms.ValidationError(
                f"badge thresholds must rise: bronze < silver < gold (got {tiers[0]}, "
                f"{tiers[1]}, {tiers[2]})")
        return data


@tenant_job(
    name="weekly_leaderboard_recalculate",
    description="Recompute last week's points, badges and streaks from activity; publish the "
                "board to Redis atomically and notify the top performers.",
    category="engagement",
    queue="automation",
    cron="0 6 * * 1",
    soft_time_limit=600,
    time_limit=720,
    max_retries=3,
    backoff_base=30.0,
    backoff_cap=600.0,
    params_form=LeaderboardParams,
)
def weekly_leaderboard_recalculate(
    community: Community, now: datetime, *, period: str = "",
    weights: dict[str, int] | None = None,
    bronze_points: int = DEFAULT_THRESHOLDS[Badge.BRONZE],
    silver_points: int = DEFAULT_THRESHOLDS[Badge.SILVER],
    gold_points: int = DEFAULT_THRESHOLDS[Badge.GOLD],
    top_n: int = 10, notify_top: int = 3, notify: bool = True,
    streak_lookback_days: int = 60, keep_weeks: int = 26,
) -> dict[str, Any]:
    monday = parse_period(period) if period else last_complete_week(now, community.tzinfo)
    return recalculate(
        community, monday, now,
        weights={**DEFAULT_WEIGHTS, **(weights or {})},
        thresholds={Badge.BRONZE: bronze_points, Badge.SILVER: silver_points,
                    Badge.GOLD: gold_points},
        top_n=top_n, notify_top=notify_top, notify=notify,
        streak_lookback_days=streak_lookback_days, keep_weeks=keep_weeks,
    )
