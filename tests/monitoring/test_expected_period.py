"""The platform-wide expected period of a job comes from its default schedule: one
community's cron override neither silences nor tightens the "not succeeded" alert for
everyone, and the watchdog still judges that community by its own cron."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from automation.models import CommunityAutomationSetting
from communities.models import Community
from monitoring.collector import PlatformCollector, expected_period_seconds
from monitoring.models import MissedRun
from monitoring.watchdog import find_missed_runs

from .test_metrics import scrape

DIGEST = "daily_community_digest"  # default "0 12 * * *": one day
DIGEST_KEY = (("job", DIGEST), ("queue", "notifications"))
SLEEP_KEY = (("job", "test_sleep"), ("queue", "automation"))  # default "*/5 * * * *"
DAY = 86400.0
RARE = ["0 0 29 2 *", "0 0 1 1 *", "0 0 31 12 *", "30 6 15 7 *", "0 9 * * 1"]


def _override(community: Community, job_name: str, cron: str) -> None:
    setting = CommunityAutomationSetting.objects.get(community=community, job_name=job_name)
    setting.cron_override = cron
    setting.save()  # validated by the model, as admin and the commands do


def _scrape() -> dict[str, dict[tuple, float]]:
    """A scrape that sees the settings as they are now (not the minute-long cache)."""
    PlatformCollector._settings_cache = None
    return scrape()


def _periods() -> dict[tuple, float]:
    return _scrape().get("automation_job_expected_period_seconds", {})


@pytest.mark.parametrize("cron", RARE)
def test_a_rare_override_does_not_raise_the_period(db, community, other_community,
                                                   cron: str) -> None:
    """Feb 29, New Year, New Year's Eve, a yearly or a weekly override: still one day."""
    assert _periods()[DIGEST_KEY] == DAY
    _override(community, DIGEST, cron)
    assert _periods()[DIGEST_KEY] == DAY


def test_many_rare_overrides_together_do_not_raise_it(db, community, other_community) -> None:
    """Every outlier at once, across jobs, leaves each job at its default period."""
    extra = [Community.objects.create(name=f"Tenant {i}", slug=f"tenant-{i}", timezone="UTC")
             for i in range(3)]
    for tenant, cron in zip([community, *extra], RARE, strict=False):
        _override(tenant, DIGEST, cron)
        _override(tenant, "test_sleep", cron)
    periods = _periods()
    assert (periods[DIGEST_KEY], periods[SLEEP_KEY]) == (DAY, 300)


@pytest.mark.parametrize("cron", ["* * * * *", "*/5 * * * *", "0 * * * *"])
def test_a_frequent_override_does_not_lower_the_period(db, community, other_community,
                                                       cron: str) -> None:
    """One tenant running the digest every minute must not make the platform page when the
    job goes two minutes without success: the alert stays at twice a day."""
    _override(community, DIGEST, cron)
    assert _periods()[DIGEST_KEY] == DAY


def test_no_series_when_nobody_runs_at_least_as_often_as_the_default(
        db, community, other_community) -> None:
    """Every enabled community on a rarer override: a one-day period would page every other
    day for healthy runs, so the job has no period (the watchdog covers its communities).
    One community on the default, or on something as frequent, brings it back."""
    _override(community, DIGEST, "0 0 29 2 *")
    _override(other_community, DIGEST, "0 9 * * 1")
    samples = _scrape()
    assert DIGEST_KEY not in samples.get("automation_job_expected_period_seconds", {})
    assert samples["automation_job_enabled_communities"][DIGEST_KEY] == 2

    _override(other_community, DIGEST, "*/30 * * * *")
    assert _periods()[DIGEST_KEY] == DAY
    _override(other_community, DIGEST, "")
    assert _periods()[DIGEST_KEY] == DAY


def test_disabled_everywhere_has_no_period(db, community, other_community) -> None:
    CommunityAutomationSetting.objects.filter(job_name=DIGEST).update(enabled=False)
    samples = _scrape()
    assert DIGEST_KEY not in samples.get("automation_job_expected_period_seconds", {})
    assert samples["automation_job_enabled_communities"][DIGEST_KEY] == 0


@pytest.mark.parametrize(("crons", "expected"), [
    (["0 12 * * *"], DAY),
    (["0 12 * * *", "0 0 29 2 *"], DAY),
    (["* * * * *"], DAY),
    (["0 0 29 2 *", "0 0 1 1 *"], None),
    (["0 0 29 2 *", "0 */6 * * *"], DAY),
    (["0 12 * * 1-5"], None),  # Fri → Mon is longer than a day
])
def test_expected_period_of_a_mix(crons: list[str], expected: float | None) -> None:
    assert expected_period_seconds("0 12 * * *", crons) == expected


def test_the_watchdog_still_checks_the_overriding_community_by_its_cron(
        db, community, other_community) -> None:
    """The Feb 29 community is out of the platform period but not out of sight: its slot
    with no run is reported by the watchdog, by its own schedule (in its own timezone)."""
    CommunityAutomationSetting.objects.exclude(job_name=DIGEST).update(enabled=False)
    _override(community, DIGEST, "0 0 29 2 *")
    before = datetime(2028, 2, 28, tzinfo=UTC)
    CommunityAutomationSetting.objects.update(updated_at=before)
    Community.objects.update(updated_at=before)
    assert _periods()[DIGEST_KEY] == DAY

    # Feb 28: the override has no slot; the default community's noon (06:30 UTC in
    # Kolkata) has none either and is reported.
    report = find_missed_runs(datetime(2028, 2, 28, 12, 0, tzinfo=UTC))
    assert [(m.community_id, m.slot) for m in report.missed] == [
        (other_community.pk, datetime(2028, 2, 28, 6, 30, tzinfo=UTC))]

    # Midnight of Feb 29 in New York is 05:00 UTC, judged once the grace has passed; the
    # default community's next noon is not due yet.
    report = find_missed_runs(datetime(2028, 2, 29, 6, 0, tzinfo=UTC))
    slot = datetime(2028, 2, 29, 5, 0, tzinfo=UTC)
    assert [(m.community_id, m.slot) for m in report.missed] == [(community.pk, slot)]
    assert report.expected_slots == 1
    assert MissedRun.objects.get(community=community).job_name == DIGEST
