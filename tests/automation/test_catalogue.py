"""The catalogue as the design table states it: schedules, queues and limits per job."""

from io import StringIO

import pytest
from django.conf import settings
from django.core.management import call_command

from automation.registry import all_jobs, get_job

# job: (default cron in the community's local time, queue, category)
CATALOGUE = {
    "daily_community_digest": ("0 12 * * *", "notifications", "notifications"),
    "weekly_leaderboard_recalculate": ("0 6 * * 1", "automation", "engagement"),
    "subscription_delinquency_retry": ("*/30 * * * *", "billing", "billing"),
    "moderation_sla_checker": ("*/15 * * * *", "automation", "moderation"),
    "analytics_backfill_replay": (None, "automation", "analytics"),
    "data_cleanup_archiver": ("30 3 * * 0", "automation", "maintenance"),
    "webhook_health_monitor": ("*/10 * * * *", "automation", "integrations"),
    "analytics_hourly_rollup": ("5 * * * *", "automation", "analytics"),
    "analytics_daily_report": ("15 0 * * *", "automation", "analytics"),
    "analytics_monthly_usage_summary": ("30 0 1 * *", "automation", "analytics"),
}


def test_every_catalogue_job_is_registered_as_designed() -> None:
    registered = {spec.name for spec in all_jobs() if spec.category != "testing"}
    assert registered == set(CATALOGUE)
    for name, (cron, queue, category) in CATALOGUE.items():
        spec = get_job(name)
        assert (spec.default_cron, spec.queue, spec.category) == (cron, queue, category), name
        assert spec.description and spec.max_retries >= 1, name
        # A redelivered message of a still-running job would run it twice.
        assert spec.time_limit < settings.CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"]


@pytest.mark.django_db(transaction=True)
def test_schedule_list_shows_the_catalogue_in_local_time(community) -> None:
    out = StringIO()
    call_command("automation_schedule_list", "--community", "acme",
                 "--now", "2026-07-01T15:47:00+00:00", stdout=out)
    rows = {line.split()[0]: line for line in out.getvalue().splitlines()[1:]}
    assert "2026-07-01 16:00  2026-07-01 12:00 EDT" in rows["daily_community_digest"]
    assert "2026-07-06 10:00  2026-07-06 06:00 EDT" in rows["weekly_leaderboard_recalculate"]
    assert "2026-07-05 07:30  2026-07-05 03:30 EDT" in rows["data_cleanup_archiver"]
    assert "on demand" in rows["analytics_backfill_replay"]
