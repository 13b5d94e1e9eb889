"""Cron expressions: validation where they enter, descriptions, and fire times.

Fire times follow wall-clock semantics in the community's timezone:
- every local time that matches fires once;
- a local time skipped by a spring-forward jump fires at the jump (02:30 → 03:00);
- a local time repeated by a fall-back fires on its first occurrence only.
"""

from __future__ import annotations

import zoneinfo
from datetime import UTC, datetime, timedelta

from celery.schedules import crontab
from cron_descriptor import get_description
from croniter import croniter
from django.core.exceptions import ValidationError

CRON_FIELDS = ("minute", "hour", "day_of_month", "month_of_year", "day_of_week")
_SEARCH_LIMIT = 5000  # iterations; only DST repeats ever need more than one


def split_cron(expression: str) -> dict[str, str]:
    parts = expression.split()
    return dict(zip(CRON_FIELDS, parts, strict=True))


def validate_cron(expression: str) -> str:
    """Return the normalised expression or raise ValidationError with a clear message."""
    if not isinstance(expression, str) or not expression.strip():
        raise ValidationError("Enter a cron expression such as '0 12 * * *'.", code="empty")
    normalised = " ".join(expression.split())
    fields = normalised.split(" ")
    if len(fields) != 5:
        raise ValidationError(
            "A cron expression has 5 fields (minute hour day-of-month month day-of-week); "
            "got %(count)d in %(value)r.",
            code="field_count",
            params={"count": len(fields), "value": expression},
        )
    if not croniter.is_valid(normalised):
        raise ValidationError(
            "%(value)r is not a valid cron expression.",
            code="invalid",
            params={"value": expression},
        )
    try:
        # Beat parses the same fields with Celery's crontab: refuse what it would reject.
        crontab(**split_cron(normalised))
    except (ValueError, TypeError) as exc:
        raise ValidationError(
            "%(value)r is not accepted by the scheduler: %(reason)s",
            code="invalid",
            params={"value": expression, "reason": exc},
        ) from exc
    try:
        next_fire_time(normalised, "UTC", datetime(2024, 1, 1, tzinfo=UTC))
    except ValueError as exc:
        raise ValidationError(
            "%(value)r never fires.", code="never", params={"value": expression}
        ) from exc
    return normalised


def describe_cron(expression: str) -> str:
    """A human-readable sentence, e.g. 'At 12:00 PM'."""
    try:
        return get_description(expression)
    except Exception:
        return expression


def _exists(naive: datetime, tz: zoneinfo.ZoneInfo) -> bool:
    roundtrip = naive.replace(tzinfo=tz).astimezone(UTC).astimezone(tz).replace(tzinfo=None)
    return roundtrip == naive


def _to_instant(naive: datetime, tz: zoneinfo.ZoneInfo) -> datetime:
    """The UTC instant of a local wall time (gap times map to the end of the gap)."""
    if _exists(naive, tz):
        return naive.replace(tzinfo=tz, fold=0).astimezone(UTC)
    last_valid = naive
    while not _exists(last_valid, tz):
        last_valid -= timedelta(minutes=1)
    return last_valid.replace(tzinfo=tz).astimezone(UTC) + timedelta(minutes=1)


def _zone(tz: str | zoneinfo.ZoneInfo) -> zoneinfo.ZoneInfo:
    return tz if isinstance(tz, zoneinfo.ZoneInfo) else zoneinfo.ZoneInfo(tz)


def next_fire_time(expression: str, tz: str | zoneinfo.ZoneInfo, after: datetime) -> datetime:
    """The first fire time strictly after `after` (aware), in UTC."""
    zone = _zone(tz)
    local = after.astimezone(zone).replace(tzinfo=None, second=0, microsecond=0)
    iterator = croniter(expression, local)
    for _ in range(_SEARCH_LIMIT):
        candidate = _to_instant(iterator.get_next(datetime), zone)
        if candidate > after:
            return candidate
    raise ValueError(f"no fire time for {expression!r} after {after.isoformat()}")


def previous_fire_time(expression: str, tz: str | zoneinfo.ZoneInfo, at: datetime) -> datetime:
    """The last fire time at or before `at` (aware), in UTC."""
    zone = _zone(tz)
    local = at.astimezone(zone).replace(tzinfo=None, second=0, microsecond=0)
    iterator = croniter(expression, local + timedelta(minutes=1))
    for _ in range(_SEARCH_LIMIT):
        candidate = _to_instant(iterator.get_prev(datetime), zone)
        if candidate <= at:
            return candidate
    raise ValueError(f"no fire time for {expression!r} before {at.isoformat()}")
