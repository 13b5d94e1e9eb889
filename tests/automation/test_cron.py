"""Cron validation and wall-clock fire times in community timezones."""

from datetime import UTC, datetime

import pytest
from django.core.exceptions import ValidationError

from automation.cron import describe_cron, next_fire_time, previous_fire_time, validate_cron


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("", "Enter a cron expression"),
        ("* * * *", "5 fields"),
        ("0 0 * * * *", "5 fields"),
        ("61 * * * *", "not a valid cron expression"),
        ("0 25 * * *", "not a valid cron expression"),
        ("every day", "5 fields"),
        ("0 0 31 2 *", "never"),  # celery's crontab ("never occurs") or ours ("never fires")
    ],
)
def test_invalid_cron_is_refused_with_a_message(expression: str, message: str) -> None:
    """Bad expressions raise ValidationError naming the problem."""
    with pytest.raises(ValidationError) as info:
        validate_cron(expression)
    assert message in " ".join(info.value.messages)


def test_valid_cron_is_normalised() -> None:
    """Extra whitespace is folded so equal schedules compare equal."""
    assert validate_cron("  */15   *  * * mon-fri ") == "*/15 * * * mon-fri"


def test_description_is_human_readable() -> None:
    assert describe_cron("0 12 * * *") == "At 12:00 PM"
    assert describe_cron("*/15 * * * *") == "Every 15 minutes"


def test_new_york_noon_follows_daylight_saving() -> None:
    """Noon in New York is 16:00 UTC in July (EDT) and 17:00 UTC in January (EST)."""
    july = next_fire_time("0 12 * * *", "America/New_York", datetime(2026, 7, 1, tzinfo=UTC))
    january = next_fire_time("0 12 * * *", "America/New_York", datetime(2026, 1, 5, tzinfo=UTC))
    assert july == datetime(2026, 7, 1, 16, 0, tzinfo=UTC)
    assert january == datetime(2026, 1, 5, 17, 0, tzinfo=UTC)


def test_kolkata_noon_is_0630_utc() -> None:
    """A half-hour offset zone: 12:00 IST is 06:30 UTC all year."""
    fire = next_fire_time("0 12 * * *", "Asia/Kolkata", datetime(2026, 3, 1, tzinfo=UTC))
    assert fire == datetime(2026, 3, 1, 6, 30, tzinfo=UTC)


def test_spring_forward_gap_fires_once_at_the_jump() -> None:
    """02:30 does not exist on 2026-03-08 in New York: the job runs once, at 03:00 EDT."""
    after = datetime(2026, 3, 8, 5, 0, tzinfo=UTC)  # 00:00 EST
    first = next_fire_time("30 2 * * *", "America/New_York", after)
    assert first == datetime(2026, 3, 8, 7, 0, tzinfo=UTC)
    assert next_fire_time("30 2 * * *", "America/New_York", first) == datetime(
        2026, 3, 9, 6, 30, tzinfo=UTC
    )


def test_fall_back_repeat_fires_once() -> None:
    """01:30 happens twice on 2026-11-01 in New York: the job runs on the first only."""
    after = datetime(2026, 11, 1, 4, 0, tzinfo=UTC)  # 00:00 EDT
    first = next_fire_time("30 1 * * *", "America/New_York", after)
    assert first == datetime(2026, 11, 1, 5, 30, tzinfo=UTC)  # 01:30 EDT
    assert next_fire_time("30 1 * * *", "America/New_York", first) == datetime(
        2026, 11, 2, 6, 30, tzinfo=UTC
    )


def test_previous_fire_time_is_inclusive() -> None:
    """A beat message sent at the fire time belongs to that slot."""
    at = datetime(2026, 7, 1, 16, 0, 3, tzinfo=UTC)
    assert previous_fire_time("0 12 * * *", "America/New_York", at) == datetime(
        2026, 7, 1, 16, 0, tzinfo=UTC
    )
    assert previous_fire_time("*/10 * * * *", "UTC", datetime(2026, 1, 1, 0, 20, tzinfo=UTC)) == (
        datetime(2026, 1, 1, 0, 20, tzinfo=UTC)
    )
