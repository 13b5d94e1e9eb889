"""Derive django-celery-beat rows from communities' automation settings.

The setting is the one source of truth. Each enabled scheduled job of an active
community has one PeriodicTask named `tenant:<community id>:<job>` with a crontab in
the community's own timezone, so DST is the timezone's business, not shifted UTC hours.
Disabled settings and inactive communities keep a disabled row; rows whose community
or job no longer exists are removed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from django.db import transaction
from django.db.models import QuerySet
from django_celery_beat.models import CrontabSchedule, PeriodicTask

from communities.models import Community

from .cron import split_cron
from .models import CommunityAutomationSetting
from .registry import all_jobs, is_registered

TENANT_TASK_PREFIX = "tenant:"


def periodic_task_name(community_id: int, job_name: str) -> str:
    return f"{TENANT_TASK_PREFIX}{community_id}:{job_name}"


def is_tenant_task(task: PeriodicTask) -> bool:
    return task.name.startswith(TENANT_TASK_PREFIX)


@dataclass
class SyncReport:
    settings_created: list[str] = field(default_factory=list)
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: int = 0

    @property
    def changed(self) -> bool:
        return bool(self.settings_created or self.created or self.updated or self.removed)


def ensure_settings(communities: QuerySet[Community]) -> list[CommunityAutomationSetting]:
    """Create the missing setting of every registered job, with the job's defaults."""
    existing = set(
        CommunityAutomationSetting.objects.filter(community__in=communities).values_list(
            "community_id", "job_name"
        )
    )
    missing = [
        CommunityAutomationSetting(community_id=community_id, job_name=spec.name)
        for community_id in communities.values_list("pk", flat=True)
        for spec in all_jobs()
        if (community_id, spec.name) not in existing
    ]
    CommunityAutomationSetting.objects.bulk_create(missing, ignore_conflicts=True)
    return missing


def _crontab_for(cron: str, tz: str, cache: dict) -> CrontabSchedule:
    key = (cron, tz)
    if key not in cache:
        fields = split_cron(cron)
        crontab = CrontabSchedule.objects.filter(timezone=tz, **fields).order_by("pk").first()
        cache[key] = crontab or CrontabSchedule.objects.create(timezone=tz, **fields)
    return cache[key]


def sync_schedules(community: Community | None = None, *, dry_run: bool = False) -> SyncReport:
    """Bring the beat rows in line with the settings; idempotent.

    With `community`, only that community's rows are touched. With `dry_run`, the
    changes are computed inside a transaction that is rolled back.
    """
    report = SyncReport()
    communities = Community.objects.all()
    existing_rows = PeriodicTask.objects.filter(name__startswith=TENANT_TASK_PREFIX)
    if community is not None:
        communities = communities.filter(pk=community.pk)
        existing_rows = existing_rows.filter(
            name__startswith=periodic_task_name(community.pk, "")
        )

    with transaction.atomic():
        report.settings_created = [
            f"{s.job_name} @ community {s.community_id}" for s in ensure_settings(communities)
        ]
        existing = {row.name: row for row in existing_rows.select_related("crontab")}
        crontabs: dict = {}
        wanted: set[str] = set()
        settings = CommunityAutomationSetting.objects.filter(
            community__in=communities
        ).select_related("community")
        for setting in settings:
            if not is_registered(setting.job_name) or not setting.spec.scheduled:
                continue
            name = periodic_task_name(setting.community_id, setting.job_name)
            wanted.add(name)
            desired = {
                "task": setting.job_name,
                "crontab": _crontab_for(setting.cron, setting.community.timezone, crontabs),
                "kwargs": json.dumps({"community_id": setting.community_id}),
                "queue": setting.spec.queue,
                "enabled": setting.enabled and setting.community.is_active,
                "description": (
                    f"{setting.spec.description} (derived from the automation setting of "
                    f"{setting.community.slug}; edit that setting, not this row)"
                ),
            }
            row = existing.get(name)
            if row is None:
                PeriodicTask.objects.create(name=name, **desired)
                report.created.append(name)
                continue
            if row.interval_id or row.solar_id or row.clocked_id:
                row.interval = row.solar = row.clocked = None
                changed = True
            else:
                changed = False
            for attr, value in desired.items():
                if getattr(row, attr) != value:
                    setattr(row, attr, value)
                    changed = True
            if changed:
                row.save()
                report.updated.append(name)
            else:
                report.unchanged += 1
        for name, row in existing.items():
            if name not in wanted:
                row.delete()
                report.removed.append(name)
        if dry_run:
            transaction.set_rollback(True)
    return report
