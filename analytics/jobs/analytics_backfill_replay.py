"""analytics_backfill_replay (on demand): a window of events into the warehouse, reconciled."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django import forms

from automation.input_limits import RANGE_TEXT
from automation.registry import tenant_job
from communities.models import Community

from ..backfill import MAX_WINDOW, run_backfill, validate_window
from ..forms import ParamsForm, PlatformDateTimeField, as_datetime
from ..periods import local_date, local_day_window

ISO_HINT = "an ISO 8601 datetime such as 2026-01-05T00:00:00Z (no offset means UTC)"


class BackfillParams(ParamsForm):
    # Both optional so that the community's stored defaults ({}) validate; without them a
    # run replays the previous local day.
    start = PlatformDateTimeField(
        required=False, label="start",
        help_text=f"window start, inclusive: {ISO_HINT}; rounded down to the hour; "
                  f"{RANGE_TEXT}; default: the start of yesterday (community-local)",
        error_messages={"invalid": f"start must be {ISO_HINT}"},
    )
    end = PlatformDateTimeField(
        required=False, label="end",
        help_text=f"window end, exclusive: {ISO_HINT}; rounded up to the hour; at most "
                  f"{MAX_WINDOW.days} days after start; {RANGE_TEXT}; default: the end of "
                  "yesterday",
        error_messages={"invalid": f"end must be {ISO_HINT}"},
    )
    dry_run = forms.BooleanField(required=False, initial=False,
                                 help_text="count what would be replayed; write nothing")
    force = forms.BooleanField(required=False, initial=False,
                               help_text="replay chunks already done as well")

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        start, end = data.get("start"), data.get("end")
        given = {name for name in ("start", "end") if self.data.get(name) not in (None, "")}
        if len(given) == 1 and not self.errors:
            missing = ({"start", "end"} - given).pop()
            raise forms.ValidationError(
                f"{missing} is required with {given.pop()} (give both, or neither to replay "
                "yesterday's local day)")
        if start is not None and end is not None:
            try:
                validate_window(start, end)
            except ValueError as exc:
                raise forms.ValidationError(str(exc)) from exc
        return data


@tenant_job(
    name="analytics_backfill_replay",
    description="Replay a window of activity events into the warehouse sink as hourly JSON "
                "Lines objects (overwritten on replay, resumable), then reconcile row counts.",
    category="analytics",
    queue="automation",
    cron=None,
    soft_time_limit=3600,
    time_limit=3900,
    max_retries=3,
    backoff_base=30.0,
    backoff_cap=600.0,
    params_form=BackfillParams,
)
def analytics_backfill_replay(community: Community, now: datetime, *,
                              start: datetime | str | None = None,
                              end: datetime | str | None = None,
                              dry_run: bool = False, force: bool = False) -> dict[str, Any]:
    # Chunks run inline here (see analytics.backfill): a retried run resumes at the first
    # chunk not done, so nothing is written twice and nothing is lost.
    start, end = as_datetime(start), as_datetime(end)
    if start is None or end is None:
        yesterday = local_date(now, community.tzinfo) - timedelta(days=1)
        start, end = local_day_window(yesterday, community.tzinfo)
    window = validate_window(start, end)
    return run_backfill(community, window, now, force=force, is_dry_run=dry_run)
