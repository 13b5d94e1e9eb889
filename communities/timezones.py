"""IANA timezone names, validated against the zoneinfo database where they enter."""

import zoneinfo
from functools import lru_cache

from django.core.exceptions import ValidationError


@lru_cache(maxsize=1)
def available_timezones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def validate_timezone(name: str) -> None:
    """Refuse anything that is not an IANA zone name zoneinfo can load."""
    if name not in available_timezones():
        raise ValidationError(
            "%(value)s is not an IANA timezone name (for example Europe/Berlin or "
            "America/New_York).",
            code="invalid_timezone",
            params={"value": name},
        )


def timezone_choices() -> list[tuple[str, str]]:
    return [(name, name) for name in sorted(available_timezones())]
