"""Delivering outbox notifications on their channel."""

from __future__ import annotations

from django.core.mail import EmailMultiAlternatives
from django.db import transaction
from django.utils import timezone

from .models import Channel, Notification


def deliver(notification_id: int) -> str:
    """Send one pending notification; returns its resulting status."""
    with transaction.atomic():
        notification = (
            Notification.objects.select_for_update(skip_locked=True)
            .select_related("member", "community")
            .filter(pk=notification_id, status=Notification.Status.PENDING)
            .first()
        )
        if notification is None:
            return "not_pending"
        notification.attempts += 1
        member = notification.member
        if member is None or not member.is_active or notification.channel != Channel.EMAIL:
            notification.status = Notification.Status.SUPPRESSED
            notification.save(update_fields=["status", "attempts"])
            return notification.status
        message = EmailMultiAlternatives(notification.subject, notification.body,
                                         to=[member.email])
        if notification.html_body:
            message.attach_alternative(notification.html_body, "text/html")
        message.send()
        notification.status = Notification.Status.SENT
        notification.sent_at = timezone.now()
        notification.save(update_fields=["status", "attempts", "sent_at"])
        return notification.status
