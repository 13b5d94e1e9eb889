"""Delivering outbox notifications on their channel.

`deliver_pending` flushes the outbox: pending rows, oldest first, each locked while it is
sent (`SELECT … FOR UPDATE SKIP LOCKED`, so the per-notification task and a sweep never
send the same row), all emails of the sweep over one SMTP connection and all pushes over
one HTTP pool. Suppressed addresses and inactive members are not attempted.

Transient trouble (SMTP or push provider down, soft bounces, provider 5xx) leaves the row
pending for the next sweep until MAX_DELIVERY_ATTEMPTS; a hard bounce ends it as
`bounced` and suppresses the address.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.core.mail import EmailMultiAlternatives
from django.db import transaction
from django.utils import timezone

from communities.models import Community

from .mail import EmailBatch, SmtpUnavailable, is_suppressed, record_bounce
from .models import Channel, Notification
from .push import PushClient, PushNotConfigured, PushUnavailable

MAX_DELIVERY_ATTEMPTS = 5
DEFERRED = "deferred"  # left pending because the channel is down right now


class _Channels:
    """Opens each channel once per sweep, on first use, and remembers when one is down."""

    def __init__(self, clock: Callable[[], datetime]) -> None:
        self.clock = clock
        self._email: EmailBatch | None = None
        self._push: PushClient | None = None
        self.down: dict[str, str] = {}

    def email(self) -> EmailBatch:
        if self._email is None:
            batch = EmailBatch()
            batch.__enter__()  # raises SmtpUnavailable before anything is assigned
            self._email = batch
        return self._email

    def push(self) -> PushClient:
        if self._push is None:
            self._push = PushClient(clock=self.clock)
        return self._push

    def close(self) -> None:
        if self._email is not None:
            self._email.close()
        if self._push is not None:
            self._push.__exit__(None, None, None)


def _retry_or_fail(notification: Notification, error: str) -> str:
    notification.last_error = error[:2000]
    if notification.attempts >= MAX_DELIVERY_ATTEMPTS:
        notification.status = Notification.Status.FAILED
        notification.last_error = f"gave up after {notification.attempts} attempts: {error}"
    return notification.status


def _send_email(notification: Notification, channels: _Channels) -> str:
    member = notification.member
    if is_suppressed(member.email):
        notification.status = Notification.Status.SUPPRESSED
        notification.last_error = f"{member.email} is suppressed after a hard bounce"
        return notification.status
    message = EmailMultiAlternatives(notification.subject, notification.body,
                                     to=[member.email])
    if notification.html_body:
        message.attach_alternative(notification.html_body, "text/html")
    result = channels.email().send(message)
    notification.attempts += 1
    if result.ok:
        notification.status = Notification.Status.SENT
        notification.sent_at = channels.clock()
        notification.last_error = ""
        return notification.status
    if result.bounced:
        record_bounce(notification.community, member, member.email, result,
                      source=notification.kind, clock=channels.clock)
    if result.retryable:
        return _retry_or_fail(notification, result.error)
    notification.status = (Notification.Status.BOUNCED if result.bounced
                            else Notification.Status.FAILED)
    notification.last_error = result.error[:2000]
    return notification.status


def _send_push(notification: Notification, channels: _Channels) -> str:
    devices = list(notification.member.push_devices.filter(is_active=True).order_by("pk"))
    if not devices:
        notification.status = Notification.Status.SUPPRESSED
        notification.last_error = "the member has no active push device"
        return notification.status
    client = channels.push()
    notification.attempts += 1
    results = [client.send(device, title=notification.subject, body=notification.body,
                           data={"kind": notification.kind, **notification.data})
               for device in devices]
    if any(r.ok for r in results):
        notification.status = Notification.Status.SENT
        notification.sent_at = channels.clock()
        notification.last_error = ""
        return notification.status
    errors = "; ".join(r.error for r in results)
    if any(r.outcome == "retryable" for r in results):
        return _retry_or_fail(notification, errors)
    notification.status = Notification.Status.FAILED
    notification.last_error = f"every device token was invalid: {errors}"[:2000]
    return notification.status


def _deliver_locked(notification: Notification, channels: _Channels) -> str:
    member = notification.member
    if member is None or not member.is_active or member.anonymized_at is not None:
        notification.status = Notification.Status.SUPPRESSED
        notification.last_error = "the member is gone, inactive or anonymised"
        return notification.status
    if notification.channel in channels.down:
        return DEFERRED
    try:
        if notification.channel == Channel.EMAIL:
            return _send_email(notification, channels)
        if notification.channel == Channel.PUSH:
            return _send_push(notification, channels)
    except (SmtpUnavailable, PushUnavailable) as exc:
        channels.down[notification.channel] = str(exc)
        notification.last_error = str(exc)[:2000]
        return DEFERRED
    except PushNotConfigured as exc:
        notification.status = Notification.Status.FAILED
        notification.last_error = f"push is not configured: {exc}"
        return notification.status
    notification.status = Notification.Status.FAILED
    notification.last_error = f"unknown channel {notification.channel!r}"
    return notification.status


def deliver_pending(*, limit: int = 500, ids: list[int] | None = None,
                    community: Community | None = None,
                    clock: Callable[[], datetime] = timezone.now) -> dict[str, Any]:
    """Flush pending notifications (all, or the given ids); returns counts by outcome."""
    if limit < 1:
        raise ValueError("limit must be at least 1")
    pending = Notification.objects.filter(status=Notification.Status.PENDING)
    if ids is not None:
        pending = pending.filter(pk__in=ids)
    if community is not None:
        pending = pending.filter(community=community)
    candidates = list(pending.order_by("created_at", "pk").values_list("pk", flat=True)[:limit])
    counts: Counter[str] = Counter()
    statuses: dict[int, str] = {}
    channels = _Channels(clock)
    try:
        for pk in candidates:
            with transaction.atomic():
                notification = (
                    Notification.objects.select_for_update(skip_locked=True, of=("self",))
                    .select_related("member", "community")
                    .filter(pk=pk, status=Notification.Status.PENDING)
                    .first()
                )
                if notification is None:
                    counts["not_pending"] += 1  # another sender has it, or it just finished
                    statuses[pk] = "not_pending"
                    continue
                status = _deliver_locked(notification, channels)
                notification.save(update_fields=["status", "attempts", "last_error", "sent_at"])
            counts[status] += 1
            statuses[pk] = status
    finally:
        channels.close()
    return {"sent": counts[Notification.Status.SENT],
            "failed": counts[Notification.Status.FAILED],
            "bounced": counts[Notification.Status.BOUNCED],
            "suppressed": counts[Notification.Status.SUPPRESSED],
            "retry_later": counts[Notification.Status.PENDING] + counts[DEFERRED],
            "not_pending": counts["not_pending"],
            "channels_down": dict(channels.down),
            "statuses": statuses}


def deliver(notification_id: int) -> str:
    """Send one pending notification; returns its resulting status (or `not_pending`)."""
    status = deliver_pending(ids=[notification_id])["statuses"].get(notification_id)
    if status == DEFERRED:
        return Notification.Status.PENDING
    return status or "not_pending"
