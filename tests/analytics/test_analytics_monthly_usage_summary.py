"""analytics_monthly_usage_summary: the previous local month, one row per month."""

from __future__ import annotations

from datetime import date

import pytest

from analytics.jobs.analytics_monthly_usage_summary import analytics_monthly_usage_summary
from analytics.models import MonthlyUsageSummary
from automation.errors import InvalidJobParams

from .conftest import add, local, make_member


@pytest.fixture
def february(community):
    ann, bob = make_member(community, "Ann"), make_member(community, "Bob")
    make_member(community, "New", joined_at=local(community, date(2026, 2, 14), 9))
    add(community, ann, "login", local(community, date(2026, 2, 1), 0, 10))
    add(community, ann, "post", local(community, date(2026, 2, 14), 10), count=3)
    add(community, bob, "comment", local(community, date(2026, 2, 14), 11))
    add(community, bob, "login", local(community, date(2026, 2, 28), 23, 50))  # Mar 1 UTC
    add(community, bob, "login", local(community, date(2026, 1, 31), 23, 50))  # Feb 1 UTC
    add(community, ann, "login", local(community, date(2026, 3, 1), 0, 10))
    return community


SLOT = date(2026, 3, 1)


def test_summary_of_last_month(february) -> None:
    summary = analytics_monthly_usage_summary(february, local(february, SLOT, 0, 30))
    assert summary["month"] == "2026-02"
    assert (summary["events_total"], summary["active_members"], summary["active_days"],
            summary["new_members"]) == (6, 2, 3, 1)
    assert (summary["peak_day"], summary["peak_day_events"]) == ("2026-02-14", 4)
    row = MonthlyUsageSummary.objects.get(community=february, month=date(2026, 2, 1))
    assert row.by_type == {"comment": 1, "login": 2, "post": 3}


def test_rerun_gives_one_row_with_the_same_numbers(february) -> None:
    slot = local(february, SLOT, 0, 30)
    first = analytics_monthly_usage_summary(february, slot)
    second = analytics_monthly_usage_summary(february, slot)
    assert (second["summaries_created"], second["summaries_updated"]) == (0, 1)
    assert {k: v for k, v in first.items() if not k.startswith("summaries_")} == {
        k: v for k, v in second.items() if not k.startswith("summaries_")}
    assert MonthlyUsageSummary.objects.count() == 1


def test_month_param_and_an_empty_month(february) -> None:
    summary = analytics_monthly_usage_summary(february, local(february, SLOT, 0, 30),
                                              month="2025-11")
    assert (summary["month"], summary["events_total"], summary["peak_day"]) == (
        "2025-11", 0, None)


@pytest.mark.parametrize("month", ["2026-13", "March", "2026-3-1"])
def test_bad_month_is_refused(month) -> None:
    with pytest.raises(InvalidJobParams) as info:
        analytics_monthly_usage_summary.spec.clean_params({"month": month})
    assert "is not a month such as 2026-03" in info.value.errors["month"][0]
