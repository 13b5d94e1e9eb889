"""Keep beat rows in step with settings, stamp publish times, tidy metrics files."""

from __future__ import annotations

import os
import threading

from celery.signals import before_task_publish, worker_process_shutdown
from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from django.utils import timezone

from communities.models import Community

from .models import CommunityAutomationSetting
from .registry import is_registered

_pending = threading.local()


def schedule_sync(community_id: int) -> None:
    """Sync this community's beat rows once the current transaction commits.

    Many setting saves in one transaction (a new community gets one per job) share
    a single sync.
    """
    pending: set[int] = _pending.__dict__.setdefault("ids", set())
    if community_id in pending:
        return
    pending.add(community_id)

    def run() -> None:
        pending.discard(community_id)
        from .schedules import sync_schedules

        community = Community.objects.filter(pk=community_id).first()
        if community is None:
            remove_community_rows(community_id)
        else:
            sync_schedules(community)

    transaction.on_commit(run)


def remove_community_rows(community_id: int) -> None:
    from django_celery_beat.models import PeriodicTask

    from .schedules import periodic_task_name

    for row in PeriodicTask.objects.filter(name__startswith=periodic_task_name(community_id, "")):
        row.delete()  # one by one, so beat's change tracking sees each removal


@receiver(post_save, sender=Community, dispatch_uid="automation.community_saved")
def community_saved(sender, instance: Community, created: bool, **kwargs) -> None:
    if kwargs.get("raw"):
        return
    if created:
        from .schedules import ensure_settings

        ensure_settings(Community.objects.filter(pk=instance.pk))
    schedule_sync(instance.pk)


@receiver(post_delete, sender=Community, dispatch_uid="automation.community_deleted")
def community_deleted(sender, instance: Community, **kwargs) -> None:
    schedule_sync(instance.pk)


@receiver(post_save, sender=CommunityAutomationSetting, dispatch_uid="automation.setting_saved")
@receiver(post_delete, sender=CommunityAutomationSetting,
          dispatch_uid="automation.setting_deleted")
def setting_changed(sender, instance: CommunityAutomationSetting, **kwargs) -> None:
    if kwargs.get("raw"):
        return
    schedule_sync(instance.community_id)


@before_task_publish.connect(dispatch_uid="automation.stamp_sent_at")
def stamp_sent_at(sender: str | None = None, headers: dict | None = None, **kwargs) -> None:
    """Record when a job message was published; the run derives its cron slot from it."""
    from .tasks import SENT_AT_HEADER

    if headers is not None and sender and is_registered(sender):
        headers.setdefault(SENT_AT_HEADER, timezone.now().isoformat())


@worker_process_shutdown.connect(dispatch_uid="automation.metrics_process_dead")
def metrics_process_dead(pid: int | None = None, **kwargs) -> None:
    from .metrics import mark_process_dead

    mark_process_dead(pid or os.getpid())
