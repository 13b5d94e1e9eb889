"""How other apps notify members and admins: write to the outbox, idempotently.

Delivery happens after the caller's transaction commits, on the notifications queue.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from communities.models import Community, Member

from .models import Channel, Notification


def notify_member(
    member: Member,
    *,
    kind: str,
    subject: str,
    body: str,
    dedup_key: str,
    html_body: str = "",
    data: dict[str, Any] | None = None,
    channel: str = Channel.EMAIL,
) -> tuple[Notification, bool]:
    """Queue one notification for a member; returns (notification, created).

    The same dedup_key for the same member and channel never creates a second row, so a
    job that re-runs for its slot notifies nobody twice.
    """
    notification, created = Notification.objects.get_or_create(
        community_id=member.community_id,
        channel=channel,
        dedup_key=f"{dedup_key}#member:{member.pk}",
        defaults={
            "member": member,
            "kind": kind,
            "subject": subject[:300],
            "body": body,
            "html_body": html_body,
            "data": data or {},
        },
    )
    if created:
        _deliver_after_commit(notification.pk)
    return notification, created


def notify_admins(
    community: Community,
    *,
    kind: str,
    subject: str,
    body: str,
    dedup_key: str,
    data: dict[str, Any] | None = None,
) -> int:
    """Queue an email to each active admin of the community; returns how many were new."""
    admins = community.members.filter(role=Member.Role.ADMIN, is_active=True)
    return sum(
        notify_member(admin, kind=kind, subject=subject, body=body, dedup_key=dedup_key,
                      data=data)[1]
        for admin in admins
    )


def _deliver_after_commit(notification_id: int) -> None:
    from .tasks import deliver_notification

    transaction.on_commit(lambda: deliver_notification.delay(notification_id))
