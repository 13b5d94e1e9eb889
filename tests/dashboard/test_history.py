"""The job history page: stats, the timeline chart, recent runs and the filters."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.test import Client
from django.utils import timezone

from automation.models import JobRun
from communities.models import Community
from dashboard.charts import stacked_bars

from .helpers import make_run

pytestmark = pytest.mark.django_db
S = JobRun.Status
JOB = "webhook_health_monitor"
URL = f"/admin/dashboard/jobs/{JOB}/"


def figure(page: str, name: str) -> str:
    return re.search(rf'data-figure="{name}">([^<]*)<', page).group(1)


def bars(page: str) -> list[tuple[str, int]]:
    return [(start, int(total)) for start, total in
            re.findall(r'<g class="bar" data-start="([^"]+)" data-total="(\d+)">', page)]


@pytest.fixture
def runs(community: Community, other_community: Community) -> dict[str, JobRun]:
    now = timezone.now()
    made = {
        "ok1": make_run(community, JOB, S.SUCCEEDED, duration=2.0, at=now - timedelta(hours=2)),
        "ok2": make_run(community, JOB, S.SUCCEEDED, duration=4.0, at=now - timedelta(hours=1)),
        "ok3": make_run(other_community, JOB, S.SUCCEEDED, duration=9.0,
                        at=now - timedelta(hours=30)),
        "bad": make_run(community, JOB, S.FAILED, duration=0.5, at=now - timedelta(minutes=20),
                        error_type="ConnectionError",
                        error_message="hooks.example answered 503 <b>busy</b>"),
        "late": make_run(other_community, JOB, S.TIMED_OUT, duration=30,
                         at=now - timedelta(days=2)),
        "skip": make_run(community, JOB, S.SKIPPED, at=now - timedelta(minutes=50),
                         skip_reason="already_running"),
        "old": make_run(community, JOB, S.FAILED, at=now - timedelta(days=20)),
    }
    make_run(community, "daily_community_digest", S.FAILED, at=now - timedelta(hours=1))
    return made


def test_history_stats_chart_and_recent_runs(admin_client: Client, runs) -> None:
    response = admin_client.get(URL)
    assert response.status_code == 200
    page = response.content.decode()
    assert figure(page, "runs") == "6"  # the default window is 7 days; "old" is outside
    assert (figure(page, "succeeded"), figure(page, "failures"),
            figure(page, "skipped")) == ("3", "2", "1")
    assert figure(page, "success-rate") == "60 %"
    assert "health-red" in page
    assert figure(page, "avg-duration") == "5.0 s"  # over succeeded runs
    assert "min 2.0 s, max 9.0 s" in page
    assert figure(page, "last-success") == f"{runs['ok2'].finished_at:%Y-%m-%d %H:%M}"
    assert figure(page, "last-failure") == f"{runs['bad'].finished_at:%Y-%m-%d %H:%M}"
    # Daily bars over the 7 days, empty ones included, summing to the runs.
    chart = bars(page)
    assert len(chart) == 8 and sum(total for _, total in chart) == 6
    assert 'class="seg-failed" data-count="' in page and "<svg id=\"timeline\"" in page
    # Recent runs newest first, each linked to its admin page, errors escaped.
    ids = [int(i) for i in re.findall(r'<tr data-run="(\d+)"', page)]
    expected = ["bad", "skip", "ok2", "ok1", "ok3", "late"]
    assert ids == [runs[key].pk for key in expected]
    assert f'href="/admin/automation/jobrun/{runs["bad"].pk}/change/"' in page
    assert "<b>ConnectionError</b>" in page and "503 &lt;b&gt;busy&lt;/b&gt;" in page
    assert "already_running" in page
    assert "daily_community_digest" not in page.split('id="runs"')[1]


def test_history_window_is_hourly_up_to_three_days(admin_client: Client, runs) -> None:
    page = admin_client.get(URL, {"window": "24h"}).content.decode()
    assert figure(page, "runs") == "4"
    assert "Runs per hour" in page
    chart = bars(page)
    assert len(chart) in (24, 25) and sum(total for _, total in chart) == 4
    assert all(start.endswith(":00:00+00:00") for start, _ in chart)


def test_history_by_community_and_date_range(admin_client: Client, runs,
                                             other_community: Community) -> None:
    page = admin_client.get(URL, {"community": other_community.pk}).content.decode()
    assert figure(page, "runs") == "2"
    assert f'<option value="{other_community.pk}" selected>kolkata' in page
    # The window presets keep the community; the default (7 days) is the active one.
    assert (f'<a href="?window=30d&amp;community={other_community.pk}" data-window="30d">'
            in page)
    assert 'data-window="7d" class="ops-active"' in page
    day = runs["old"].created_at.date()
    page = admin_client.get(URL, {"start": day.isoformat(),
                                  "end": day.isoformat()}).content.decode()
    assert figure(page, "runs") == "1" and "Runs per hour" in page
    assert len(bars(page)) == 24
    assert f'value="{day.isoformat()}"' in page
    assert "ops-active" not in page.split('id="history-windows"')[1].split("</nav>")[0]


@pytest.mark.parametrize("query, expected", [
    ({"start": "2026-05-10", "end": "2026-05-01"}, "The range ends before it starts."),
    ({"start": "yesterday"}, "from: Enter a valid date."),
    ({"start": "2020-01-01", "end": "2026-01-01"}, "Choose at most 366 days."),
    ({"community": "nope"}, "community: Select a valid choice."),
    ({"window": "9y"}, "window: Select a valid choice."),
])
def test_bad_history_filters_give_a_message(admin_client: Client, runs, query,
                                            expected) -> None:
    response = admin_client.get(URL, query)
    assert response.status_code == 200
    [message] = [str(m) for m in response.context["messages"]]
    assert message.startswith("Filter ignored") and expected in message
    assert figure(response.content.decode(), "runs") == "6"  # the default: 7 days, all


def test_history_of_an_unknown_job_is_404(admin_client: Client) -> None:
    assert admin_client.get("/admin/dashboard/jobs/no_such_job/").status_code == 404


def test_history_without_runs(admin_client: Client) -> None:
    page = admin_client.get("/admin/dashboard/jobs/test_sleep/").content.decode()
    assert figure(page, "runs") == "0" and figure(page, "success-rate") == "—"
    assert "No runs in this period." in page and len(bars(page)) == 8


def test_stacked_bars_layout() -> None:
    since = datetime(2026, 3, 1, 10, 30, tzinfo=UTC)
    until = since + timedelta(hours=3)
    h = lambda hour: datetime(2026, 3, 1, hour, tzinfo=UTC)  # noqa: E731
    chart = stacked_bars([
        {"bucket": h(10), "succeeded": 6, "failed": 2, "skipped": 0, "other": 0},
        {"bucket": h(12), "succeeded": 1, "failed": 0, "skipped": 2, "other": 1},
    ], since, until, "hour")
    assert [bar.start for bar in chart.bars] == [h(10), h(11), h(12), h(13)]
    assert [bar.total for bar in chart.bars] == [8, 0, 4, 0] and chart.peak == 8
    first = chart.bars[0]
    assert [s.series for s in first.segments] == ["succeeded", "failed"]
    # The tallest bar fills the plot; segments stack upwards from the baseline.
    assert sum(s.height for s in first.segments) == pytest.approx(chart.plot_height)
    assert first.segments[0].y + first.segments[0].height == pytest.approx(chart.baseline)
    assert first.segments[1].y == pytest.approx(chart.top)
    third = chart.bars[2]
    assert sum(s.height for s in third.segments) == pytest.approx(chart.plot_height / 2)
    assert chart.bars[1].segments == [] and "no runs" in chart.bars[1].title
    assert first.title == "Mar 01 10:00 UTC: 6 succeeded, 2 failed"
    xs = [bar.x for bar in chart.bars]
    assert xs == sorted(xs) and xs[-1] + chart.bars[-1].width <= chart.width
    assert chart.ticks[0][1] == "Mar 01 10:00"


def test_stacked_bars_days_and_ticks() -> None:
    since = datetime(2025, 1, 1, tzinfo=UTC)
    chart = stacked_bars([], since, since + timedelta(days=366), "day")
    assert len(chart.bars) == 366 and chart.peak == 0
    assert 1 < len(chart.ticks) <= 8 and chart.ticks[0][1] == "Jan 01"
