"""analytics_daily_report: yesterday's local day, including a 23-hour DST day."""

from __future__ import annotations

from datetime import date

import pytest

from analytics.jobs.analytics_daily_report import analytics_daily_report
from analytics.models import DailyReport, DailyRollup
from automation.errors import InvalidJobParams
from automation.models import JobRun
from automation.runs import run_inline

from .conftest import add, local, make_member

DST_DAY = date(2026, 3, 8)  # New York springs forward: the local day has 23 hours


@pytest.fixture
def dst_day(community):
    ann, bob = make_member(community, "Ann"), make_member(community, "Bob")
    make_member(community, "Newcomer", joined_at=local(community, DST_DAY, 12))
    add(community, ann, "login", local(community, DST_DAY, 0, 30))  # EST, 05:30 UTC
    add(community, ann, "post", local(community, DST_DAY, 23, 30))  # EDT, 03:30 UTC next day
    add(community, bob, "comment", local(community, DST_DAY, 15), count=2)
    add(community, bob, "login", local(community, date(2026, 3, 9), 0, 10))  # today: not in it
    add(community, bob, "login", local(community, date(2026, 3, 7), 23, 50))  # the day before
    return community


SLOT = date(2026, 3, 9)


def test_report_of_yesterday(dst_day) -> None:
    summary = analytics_daily_report(dst_day, local(dst_day, SLOT, 0, 15))
    assert summary["date"] == "2026-03-08"
    assert (summary["events_total"], summary["active_members"], summary["new_members"]) == (
        4, 2, 1)
    assert (summary["reports_created"], summary["reports_updated"]) == (1, 0)
    report = DailyReport.objects.get(community=dst_day, date=DST_DAY)
    assert report.by_type == {"comment": 2, "login": 1, "post": 1}
    # The report recounted the day's rollups from the source on the way.
    assert dict(DailyRollup.objects.filter(date=DST_DAY).values_list("event_type", "count")) \
        == report.by_type


def test_rerun_rewrites_the_same_report(dst_day) -> None:
    slot = local(dst_day, SLOT, 0, 15)
    first = analytics_daily_report(dst_day, slot)
    second = analytics_daily_report(dst_day, slot)
    assert (second["reports_created"], second["reports_updated"]) == (0, 1)
    assert {k: first[k] for k in ("events_total", "active_members", "by_type")} == {
        k: second[k] for k in ("events_total", "active_members", "by_type")}
    assert DailyReport.objects.count() == 1


def test_late_event_is_in_the_rebuilt_report(dst_day) -> None:
    slot = local(dst_day, SLOT, 0, 15)
    analytics_daily_report(dst_day, slot)
    add(dst_day, None, "reaction", local(dst_day, DST_DAY, 20))
    assert analytics_daily_report(dst_day, slot)["events_total"] == 5


def test_date_param_rebuilds_a_past_day(dst_day) -> None:
    summary = analytics_daily_report(dst_day, local(dst_day, date(2026, 4, 1), 0, 15),
                                     date=date(2026, 3, 7))
    assert (summary["date"], summary["events_total"]) == ("2026-03-07", 1)


@pytest.mark.parametrize(("params", "message"), [
    ({"date": "08/03/2026"}, "Enter a valid date."),
    ({"date": "1999-12-31"},
     "date 1999-12-31 is out of range; dates must be between 2000-01-01 and 2099-12-31."),
    ({"date": "9999-12-31"}, "dates must be between 2000-01-01 and 2099-12-31"),
    ({"date": "0001-01-01"}, "dates must be between 2000-01-01 and 2099-12-31"),
    ({"date": 20260308}, "date must be an ISO 8601 date such as 2026-01-05, not a number"),
    ({"date": "2026-03-08\x00"}, "date contains a control character (U+0000)"),
])
def test_bad_params_are_refused(params, message) -> None:
    with pytest.raises(InvalidJobParams) as info:
        analytics_daily_report.spec.clean_params(params)
    assert any(message in text for text in info.value.errors["date"])


@pytest.mark.django_db(transaction=True)
def test_scheduled_run_once_per_slot(dst_day) -> None:
    slot = local(dst_day, SLOT, 0, 15)
    run = run_inline(analytics_daily_report.spec, dst_day, trigger="schedule", now=slot)
    assert run.status == JobRun.Status.SUCCEEDED, run.error_message
    assert run.result["events_total"] == 4
    again = run_inline(analytics_daily_report.spec, dst_day, trigger="schedule", now=slot)
    assert again.skip_reason == "slot_already_done"
    manual = run_inline(analytics_daily_report.spec, dst_day, trigger="manual", now=slot,
                        params={"date": "2026-03-08"})
    assert manual.result["reports_updated"] == 1
