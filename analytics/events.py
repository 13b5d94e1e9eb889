"""Writing to the activity event store."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError

from communities.models import Community, Member

from .models import ActivityEvent, EventType


def record_event(
    community: Community,
    type: str,
    *,
    occurred_at: datetime,
    member: Member | None = None,
    payload: dict[str, Any] | None = None,
) -> ActivityEvent:
    """Store one activity event; refuses unknown types, naive times and foreign members."""
    if type not in EventType.values:
        raise ValidationError(
            f"unknown event type {type!r}; expected one of {', '.join(EventType.values)}"
        )
    if occurred_at.tzinfo is None:
        raise ValidationError("occurred_at must be timezone-aware")
    if member is not None and member.community_id != community.pk:
        raise ValidationError(f"member {member.pk} does not belong to community {community.slug}")
    if payload is not None and not isinstance(payload, dict):
        raise ValidationError("payload must be a JSON object")
    return ActivityEvent.objects.create(
        community=community, member=member, type=type, occurred_at=occurred_at,
        payload=payload or {},
    )
