"""The range of values the platform accepts from outside: dates, datetimes and text.

Every entry point (API bodies and params, admin and dashboard forms, command arguments,
job params) checks values against these, so a value that passes one door passes them all
and never reaches a computation that overflows (year 1 minus a day, year 9999 plus a
week) or a database that refuses it (PostgreSQL rejects NUL in text).
"""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, date, datetime

from django.core.exceptions import ValidationError

EARLIEST_DATE = date(2000, 1, 1)
LATEST_DATE = date(2099, 12, 31)
EARLIEST = datetime(EARLIEST_DATE.year, 1, 1, tzinfo=UTC)
LATEST = datetime(LATEST_DATE.year, 12, 31, 23, 59, 59, tzinfo=UTC)
RANGE_TEXT = f"between {EARLIEST_DATE.isoformat()} and {LATEST_DATE.isoformat()}"

# C0 controls except tab, newline and carriage return; DEL; C1 controls.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def check_date(value: date, *, label: str = "date") -> date:
    """`value` if it lies in the platform's range, else a ValidationError naming the range."""
    day = value.date() if isinstance(value, datetime) else value
    if not EARLIEST_DATE <= day <= LATEST_DATE:
        raise ValidationError(
            "%(label)s %(value)s is out of range; dates must be %(range)s.",
            params={"label": label, "value": day.isoformat(), "range": RANGE_TEXT},
            code="date_range",
        )
    return value


def check_text(value: str, *, label: str = "text") -> str:
    """`value` if it holds no NUL or other control character (tab and newlines allowed)."""
    found = _CONTROL.search(value)
    if found:
        name = unicodedata.name(found.group(), f"U+{ord(found.group()):04X}")
        raise ValidationError(
            "%(label)s contains a control character (%(name)s) at position %(at)d.",
            params={"label": label, "name": name, "at": found.start()},
            code="control_character",
        )
    return value


def has_control_characters(value: str) -> bool:
    return _CONTROL.search(value) is not None
