"""Outbox delivery tasks (not tenant jobs: they carry notifications, not a community slot).

- `notifications.deliver_notification(id)`: queued after commit by notify_member; retries
  with backoff while its channel is down, then leaves the row to the sweep.
- `notifications.deliver_pending(limit)`: the sweep; flushes every pending row. Other code
  calls it to flush the outbox (`deliver_pending.delay()`), and operators can schedule it.
"""

from __future__ import annotations

from typing import Any

from celery import Task, shared_task

from .models import Notification

DELIVERY_RETRIES = 5


@shared_task(name="notifications.deliver_notification", bind=True,
             ignore_result=True, acks_late=True, max_retries=DELIVERY_RETRIES)
def deliver_notification(self: Task, notification_id: int) -> str:
    from .delivery import deliver

    status = deliver(notification_id)
    if status == Notification.Status.PENDING and self.request.retries < DELIVERY_RETRIES:
        # The channel was down or the recipient soft-bounced: try again later.
        raise self.retry(countdown=min(900, 30 * 2 ** self.request.retries))
    return status


@shared_task(name="notifications.deliver_pending",
             ignore_result=True, acks_late=True)
def deliver_pending(limit: int = 500) -> dict[str, Any]:
    from .delivery import deliver_pending as flush

    summary = flush(limit=limit)
    summary.pop("statuses")  # per-row detail is on the rows; keep the message small
    return summary
