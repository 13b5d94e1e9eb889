"""Community-local days, weeks and months as UTC windows.

Every analytics figure is about a community's local calendar (a member's Tuesday is
Tuesday where the community lives), while events are stored in UTC. These helpers turn
local dates into half-open UTC windows [start, end); zoneinfo makes DST days 23 or 25
hours long, which is exactly what a local day is.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta, tzinfo

from django.core.exceptions import ValidationError

from automation.input_limits import EARLIEST_DATE, LATEST_DATE, RANGE_TEXT, check_date

PERIOD_RE = re.compile(r"^(\d{4})-W(\d{2})$")
MONTH_RE = re.compile(r"^(\d{4})-(\d{2})$")


def local_midnight(day: date, tz: tzinfo) -> datetime:
    """The UTC instant at which `day` begins in `tz`."""
    return datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)


def local_day_window(day: date, tz: tzinfo) -> tuple[datetime, datetime]:
    return local_midnight(day, tz), local_midnight(day + timedelta(days=1), tz)


def local_date(moment: datetime, tz: tzinfo) -> date:
    return moment.astimezone(tz).date()


def local_days_touching(start: datetime, end: datetime, tz: tzinfo) -> list[date]:
    """The local dates that the UTC window [start, end) overlaps, in order."""
    if end <= start:
        return []
    first = local_date(start, tz)
    last = local_date(end - timedelta(microseconds=1), tz)
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def period_label(monday: date) -> str:
    year, week, _ = monday.isocalendar()
    return f"{year}-W{week:02d}"


def parse_period(label: str) -> date:
    """The Monday of an ISO week label such as 2026-W48 within the platform's range;
    ValueError when it is not one."""
    match = PERIOD_RE.match(label.strip())
    if not match:
        raise ValueError(f"{label!r} is not an ISO week such as 2026-W48")
    year, week = int(match[1]), int(match[2])
    _check_year(year, label, "weeks")
    try:
        monday = date.fromisocalendar(year, week, 1)
    except ValueError as exc:
        raise ValueError(f"{label!r}: {year} has no ISO week {week}") from exc
    return _in_range(monday, label, "weeks")


def last_complete_week(now: datetime, tz: tzinfo) -> date:
    """The Monday of the last full local Monday-to-Sunday week that ended at or before `now`.

    Run on Monday 06:00 local, that is the week that ended six hours earlier.
    """
    today = local_date(now, tz)
    this_monday = today - timedelta(days=today.weekday())
    return this_monday - timedelta(days=7)


def week_window(monday: date, tz: tzinfo) -> tuple[datetime, datetime]:
    return local_midnight(monday, tz), local_midnight(monday + timedelta(days=7), tz)


def month_start(day: date) -> date:
    return day.replace(day=1)


def next_month(first: date) -> date:
    return (first.replace(day=28) + timedelta(days=4)).replace(day=1)


def previous_month(now: datetime, tz: tzinfo) -> date:
    """The first day of the local month before the one `now` falls in."""
    return month_start(month_start(local_date(now, tz)) - timedelta(days=1))


def parse_month(label: str) -> date:
    """The first day of a month label such as 2026-03 within the platform's range;
    ValueError when it is not one."""
    match = MONTH_RE.match(label.strip())
    if not match or not 1 <= int(match[2]) <= 12:
        raise ValueError(f"{label!r} is not a month such as 2026-03")
    year = int(match[1])
    _check_year(year, label, "months")
    return _in_range(date(year, int(match[2]), 1), label, "months")


# Labels are refused outside the platform's range: near the ends of the calendar a
# month's or a week's end (plus a month, plus 7 days) does not exist.
def _check_year(year: int, label: str, what: str) -> None:
    if not EARLIEST_DATE.year <= year <= LATEST_DATE.year:
        raise ValueError(f"{label!r} is out of range; {what} must be {RANGE_TEXT}")


def _in_range(first: date, label: str, what: str) -> date:
    try:
        return check_date(first)
    except ValidationError:
        raise ValueError(f"{label!r} is out of range; {what} must be {RANGE_TEXT}") from None


def month_window(first: date, tz: tzinfo) -> tuple[datetime, datetime]:
    return local_midnight(first, tz), local_midnight(next_month(first), tz)


def floor_hour(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def ceil_hour(moment: datetime) -> datetime:
    floored = floor_hour(moment)
    return floored if floored == moment else floored + timedelta(hours=1)
