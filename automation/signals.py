"""Keep beat rows in step with settings, stamp publish times, tidy metrics files."""

from __future__ import annotations

import os

from celery.signals import before_task_publish, worker_process_shutdown
from django.db import transaction
from django.db.models.signals import post_delete, post_save, pre_save
from django.dispatch import receiver
from django.utils import timezone

from communities.models import Community

from . import audit
from .models import CommunityAutomationSetting
from .registry import is_registered


def schedule_sync(community_id: int) -> None:
    """Sync this community's beat rows once the current transaction commits.

    Many setting saves in one transaction (a new community gets one per job) share a
    single sync: a callback already waiting on this transaction is reused. The waiting
    callbacks live on the connection, so a rollback discards them with the transaction.
    """
    connection = transaction.get_connection()
    if connection.in_atomic_block and any(
        getattr(entry[1], "sync_community_id", None) == community_id
        for entry in connection.run_on_commit
    ):
        return

    def run() -> None:
        from .schedules import sync_schedules

        community = Community.objects.filter(pk=community_id).first()
        if community is None:
            remove_community_rows(community_id)
        else:
            sync_schedules(community)

    run.sync_community_id = community_id
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


@receiver(pre_save, sender=CommunityAutomationSetting, dispatch_uid="automation.setting_before")
def remember_setting_state(sender, instance: CommunityAutomationSetting, **kwargs) -> None:
    if kwargs.get("raw") or instance.pk is None:
        return
    old = CommunityAutomationSetting.objects.filter(pk=instance.pk).first()
    instance._audit_before = audit.setting_state(old) if old else None


@receiver(post_save, sender=CommunityAutomationSetting, dispatch_uid="automation.setting_audit")
def audit_setting_saved(sender, instance: CommunityAutomationSetting, created: bool,
                        **kwargs) -> None:
    if kwargs.get("raw"):
        return
    before = None if created else getattr(instance, "_audit_before", None)
    after = audit.setting_state(instance)
    if created and audit.current_actor() == audit.SYSTEM:
        return  # the defaults every new community gets are not anyone's change
    changed = {k for k in after if before is None or before.get(k) != after[k]}
    if not changed:
        return
    audit.record(
        "setting.create" if created else "setting.update",
        community=instance.community, job_name=instance.job_name,
        target=f"{instance.job_name} @ {instance.community.slug}",
        before=None if before is None else {k: before[k] for k in sorted(changed)},
        after={k: after[k] for k in sorted(changed)},
    )


@receiver(post_delete, sender=CommunityAutomationSetting, dispatch_uid="automation.setting_gone")
def audit_setting_deleted(sender, instance: CommunityAutomationSetting, **kwargs) -> None:
    origin = kwargs.get("origin")
    origin_model = getattr(origin, "model", type(origin))
    if origin is not None and origin_model is not CommunityAutomationSetting:
        return  # deleted with its community: not a change of the setting itself
    audit.record("setting.delete", community=instance.community, job_name=instance.job_name,
                 target=f"{instance.job_name} @ {instance.community.slug}",
                 before=audit.setting_state(instance))


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
