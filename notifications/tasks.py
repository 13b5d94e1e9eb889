"""Outbox delivery tasks (not tenant jobs: they carry one notification each)."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="notifications.deliver_notification", queue="notifications",
             ignore_result=True, acks_late=True)
def deliver_notification(notification_id: int) -> str:
    from .delivery import deliver

    return deliver(notification_id)
