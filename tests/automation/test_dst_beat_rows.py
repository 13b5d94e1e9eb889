"""What beat itself decides for tenant rows across DST: the row's own schedule object."""

from datetime import UTC, datetime, timedelta

import pytest
from django_celery_beat.models import PeriodicTask

from automation.schedules import periodic_task_name
from communities.models import Community

pytestmark = pytest.mark.django_db(transaction=True)


def noon_row(community: Community) -> PeriodicTask:
    setting = community.automation_settings.get(job_name="test_sleep")
    setting.cron_override = "0 12 * * *"
    setting.save()
    return PeriodicTask.objects.get(name=periodic_task_name(community.pk, "test_sleep"))


def is_due_at(row: PeriodicTask, now: datetime, last_run_at: datetime) -> bool:
    schedule = row.crontab.schedule
    schedule.nowfun = lambda: now.astimezone(schedule.tz)
    return schedule.is_due(last_run_at).is_due


@pytest.mark.parametrize(
    ("day", "fire_utc"),
    [(datetime(2026, 7, 15, tzinfo=UTC), 16), (datetime(2026, 1, 15, tzinfo=UTC), 17)],
)
def test_new_york_noon_row_is_due_at_the_right_utc_hour(
    community: Community, day: datetime, fire_utc: int
) -> None:
    """Beat fires New York's noon row at 16:00 UTC in July and 17:00 UTC in January."""
    row = noon_row(community)
    fire = day.replace(hour=fire_utc)
    last_run = fire - timedelta(days=1)
    assert not is_due_at(row, fire - timedelta(minutes=1), last_run)
    assert is_due_at(row, fire + timedelta(seconds=5), last_run)


def test_kolkata_noon_row_is_due_at_0630_utc(other_community: Community) -> None:
    """Asia/Kolkata has no DST and a half-hour offset: 12:00 IST is 06:30 UTC."""
    row = noon_row(other_community)
    fire = datetime(2026, 7, 15, 6, 30, tzinfo=UTC)
    last_run = fire - timedelta(days=1)
    assert not is_due_at(row, fire - timedelta(minutes=1), last_run)
    assert is_due_at(row, fire + timedelta(seconds=5), last_run)
