"""Members and an event helper for the analytics tests."""

from __future__ import annotations

from datetime import UTC, date, datetime, time

import pytest

from analytics.events import record_event
from analytics.models import ActivityEvent
from communities.models import Community, Member

LONG_AGO = datetime(2020, 1, 1, tzinfo=UTC)


def local(community: Community, day: date, hour: int, minute: int = 0) -> datetime:
    """A community-local wall-clock time as an aware datetime."""
    return datetime.combine(day, time(hour, minute), tzinfo=community.tzinfo)


def add(community: Community, member: Member | None, type_: str, at: datetime,
        count: int = 1, **payload) -> list[ActivityEvent]:
    return [record_event(community, type_, member=member, occurred_at=at, payload=payload)
            for _ in range(count)]


def make_member(community: Community, name: str, **fields) -> Member:
    return Member.objects.create(
        community=community, email=f"{name.lower()}@{community.slug}.example",
        display_name=name, joined_at=fields.pop("joined_at", LONG_AGO), **fields,
    )


@pytest.fixture
def people(community: Community) -> dict[str, Member]:
    return {name: make_member(community, name)
            for name in ["Ann", "Bob", "Cy", "Dee", "Eve", "Fay"]}
