"""Calendar params at the ends of the platform's range run; past them they are refused.

Months, ISO weeks, dates and backfill windows are bounded to input_limits' range, so a
value the form accepts never makes a run overflow (9999-12 plus a month, 9999-12-31T23:30Z
rounded up to the hour), and a value past the range is refused with a message naming it.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from analytics.backfill import validate_window
from analytics.jobs.analytics_backfill_replay import analytics_backfill_replay
from analytics.jobs.analytics_daily_report import analytics_daily_report
from analytics.jobs.analytics_monthly_usage_summary import analytics_monthly_usage_summary
from analytics.jobs.weekly_leaderboard_recalculate import weekly_leaderboard_recalculate
from analytics.periods import parse_month, parse_period
from automation.errors import InvalidJobParams
from automation.input_limits import RANGE_TEXT
from automation.models import JobRun
from automation.registry import JobSpec
from automation.runs import run_inline
from communities.models import Community

NOW = datetime(2026, 2, 1, 12, tzinfo=UTC)

EDGES = [
    (analytics_monthly_usage_summary, {"month": "2000-01"}),
    (analytics_monthly_usage_summary, {"month": "2099-12"}),
    (weekly_leaderboard_recalculate, {"period": "2000-W01", "notify": False}),
    (weekly_leaderboard_recalculate, {"period": "2099-W53", "notify": False,
                                      "streak_lookback_days": 366}),
    (analytics_daily_report, {"date": "2000-01-01"}),
    (analytics_daily_report, {"date": "2099-12-31"}),
    (analytics_backfill_replay, {"start": "2000-01-01T00:00:00Z",
                                 "end": "2000-01-01T02:00:00+00:00"}),
    (analytics_backfill_replay, {"start": "2099-12-31T21:00:00Z",
                                 "end": "2099-12-31T23:59:59.999999Z"}),
]

BEYOND = [
    (analytics_monthly_usage_summary, {"month": "9999-12"}, "month"),
    (analytics_monthly_usage_summary, {"month": "2100-01"}, "month"),
    (analytics_monthly_usage_summary, {"month": "0000-01"}, "month"),
    (analytics_monthly_usage_summary, {"month": "1999-12"}, "month"),
    (weekly_leaderboard_recalculate, {"period": "9999-W52"}, "period"),
    (weekly_leaderboard_recalculate, {"period": "0001-W01"}, "period"),
    (analytics_daily_report, {"date": "9999-12-31"}, "date"),
    (analytics_daily_report, {"date": "0001-01-01"}, "date"),
    (analytics_backfill_replay, {"start": "9999-12-31T23:00:00Z",
                                 "end": "9999-12-31T23:30:00Z"}, "start"),
    (analytics_backfill_replay, {"start": "0001-01-01T00:00:00+05:00",
                                 "end": "2000-01-01T01:00:00Z"}, "start"),
    # In range where it was written, not in UTC, where it is stored.
    (analytics_backfill_replay, {"start": "2099-12-31T22:00:00-12:00",
                                 "end": "2099-12-31T23:00:00-12:00"}, "start"),
    (analytics_backfill_replay, {"start": "2000-01-01T00:00:00Z",
                                 "end": "9999-12-31T23:59:59-23:59"}, "end"),
]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("job", "params"), EDGES,
                         ids=[f"{job.spec.name}-{next(iter(p.values()))}" for job, p in EDGES])
def test_params_at_the_edges_run(community: Community, job, params: dict) -> None:
    """The first and last values of the range go through the platform's run path."""
    spec: JobSpec = job.spec
    cleaned = spec.clean_params(params)
    assert spec.clean_params(cleaned) == cleaned
    run = run_inline(spec, community, trigger=JobRun.Trigger.MANUAL, now=NOW, params=params)
    assert run.status == JobRun.Status.SUCCEEDED, run.error_message
    assert run.params == {name: cleaned[name] for name in params}


@pytest.mark.parametrize(("job", "params", "field"), BEYOND,
                         ids=[f"{job.spec.name}-{field}-{params[field]}"
                              for job, params, field in BEYOND])
def test_params_beyond_the_range_are_refused_naming_it(job, params: dict, field: str) -> None:
    with pytest.raises(InvalidJobParams) as info:
        job.spec.clean_params(params)
    assert RANGE_TEXT in " ".join(info.value.errors[field])


def test_wrong_types_for_dates_are_refused() -> None:
    """A number or a list where a date is expected is a field error, not a crash."""
    spec = analytics_backfill_replay.spec
    with pytest.raises(InvalidJobParams) as info:
        spec.clean_params({"start": 12345, "end": ["2026-01-05T00:00:00Z"]})
    assert info.value.errors == {
        "start": ["start must be an ISO 8601 datetime such as 2026-01-05T00:00:00Z, "
                  "not a number"],
        "end": ["end must be an ISO 8601 datetime such as 2026-01-05T00:00:00Z, not a list"]}


def test_window_is_stored_in_utc_and_cleans_to_itself() -> None:
    spec = analytics_backfill_replay.spec
    cleaned = spec.clean_params({"start": "2026-01-05T05:30:00+05:30",
                                 "end": "2026-01-05T12:00:00"})
    assert cleaned == {"start": "2026-01-05T00:00:00+00:00", "end": "2026-01-05T12:00:00+00:00",
                       "dry_run": False, "force": False}
    assert spec.clean_params(cleaned) == cleaned


@pytest.mark.parametrize(("start", "end"), [
    (datetime(9999, 12, 31, 23, 0, tzinfo=UTC), datetime(9999, 12, 31, 23, 30, tzinfo=UTC)),
    (datetime(1, 1, 1, 0, 30, tzinfo=UTC), datetime(1, 1, 1, 2, tzinfo=UTC)),
])
def test_validate_window_refuses_the_ends_of_the_calendar(start: datetime,
                                                          end: datetime) -> None:
    """The command calls validate_window itself: far out it refuses, it never overflows."""
    with pytest.raises(ValueError, match=RANGE_TEXT):
        validate_window(start, end)


@pytest.mark.parametrize("label", ["9999-12", "0000-01", "2100-01"])
def test_parse_month_refuses_months_out_of_range(label: str) -> None:
    with pytest.raises(ValueError, match=f"months must be {RANGE_TEXT}"):
        parse_month(label)


@pytest.mark.parametrize("label", ["9999-W52", "0000-W01", "1999-W52"])
def test_parse_period_refuses_weeks_out_of_range(label: str) -> None:
    with pytest.raises(ValueError, match=f"weeks must be {RANGE_TEXT}"):
        parse_period(label)
