"""What operators and community admins do to jobs: toggle, pause, resume, run now.

The dashboard, the REST API and admin actions all call these, so the rules (a run already
in progress, a trigger repeated too fast, the audit record) hold the same everywhere.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet

from communities.models import Community

from .connections import get_redis
from .locks import release_token
from .models import CommunityAutomationSetting, JobRun
from .registry import JobSpec, get_job
from .runs import enqueue_run, run_params


class OperationRefused(Exception):
    """A request that is understood but cannot be done now; `status` is its HTTP answer."""

    status = 400


class RunInProgress(OperationRefused):
    status = 409


class JobDisabled(OperationRefused):
    status = 409


class TriggerTooSoon(OperationRefused):
    status = 429

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass
class TriggerResult:
    runs: list[JobRun] = field(default_factory=list)
    in_progress: list[str] = field(default_factory=list)  # community slugs
    too_soon: list[str] = field(default_factory=list)
    disabled: list[str] = field(default_factory=list)


def settings_of(job_name: str, community: Community | None = None
                ) -> QuerySet[CommunityAutomationSetting]:
    rows = CommunityAutomationSetting.objects.filter(job_name=job_name).select_related(
        "community")
    return rows.filter(community=community) if community is not None else rows


def set_enabled(job_name: str, enabled: bool, *, community: Community | None = None) -> int:
    """Turn a job on or off for one community or all; returns how many settings changed."""
    get_job(job_name)
    changed = 0
    with transaction.atomic():
        for setting in settings_of(job_name, community).filter(enabled=not enabled):
            setting.enabled = enabled
            setting.save()  # one by one: each change is audited and synced to beat
            changed += 1
    return changed


def pause(setting: CommunityAutomationSetting, until: datetime, now: datetime) -> None:
    if until <= now:
        raise OperationRefused("pause until must be in the future")
    setting.paused_until = until
    setting.save()


def resume(setting: CommunityAutomationSetting) -> None:
    if setting.paused_until is not None:
        setting.paused_until = None
        setting.save()


def in_progress(spec: JobSpec, community: Community, now: datetime) -> JobRun | None:
    """A queued or running run younger than the job could possibly live (older ones are
    stuck and left to the reaper, not allowed to block triggers forever)."""
    horizon = now - timedelta(seconds=spec.in_progress_horizon)
    return (JobRun.objects.filter(job_name=spec.name, community=community,
                                  status__in=[JobRun.Status.QUEUED, JobRun.Status.RUNNING],
                                  created_at__gte=horizon)
            .order_by("-created_at").first())


def _cooldown_key(spec: JobSpec, community: Community) -> str:
    return f"automation:trigger:{spec.name}:{community.pk}"


def _claim_cooldown(spec: JobSpec, community: Community, token: str) -> int:
    """0 when this trigger may go ahead (the cooldown is now held with `token`), else the
    seconds to wait."""
    seconds = settings.AUTOMATION_TRIGGER_COOLDOWN_SECONDS
    if seconds <= 0:
        return 0
    key = _cooldown_key(spec, community)
    redis = get_redis()
    if redis.set(key, token, nx=True, ex=seconds):
        return 0
    return max(1, int(redis.ttl(key)))


def trigger(job_name: str, *, now: datetime, community: Community | None = None,
            params: dict[str, Any] | None = None,
            trigger: str = JobRun.Trigger.MANUAL) -> TriggerResult:
    """Queue a run now, for one community or every active community that has it enabled.

    For one community, a run in progress raises RunInProgress and a repeat within the
    cooldown raises TriggerTooSoon; for all, such communities are listed and left out.

    The cooldown is spent only by runs that are created: everything that can refuse the
    request (the job, each target's state, the params merged over each target's stored
    ones) is checked before any cooldown is claimed, and if queueing then fails, the runs
    of this call are rolled back together and the cooldowns it claimed are released. (Called
    inside an outer transaction, a rollback there after this returns is the caller's.)
    """
    spec = get_job(job_name)
    spec.clean_params(params or {}, partial=True)  # refused even with no target at all
    targets = list(settings_of(job_name, community).filter(community__is_active=True)
                   .order_by("community__slug"))
    result = TriggerResult()
    single = community is not None
    if single and not targets:
        raise OperationRefused(f"{community.slug} is inactive or has no setting for {job_name}")
    ready = []
    for setting in targets:
        target = setting.community
        if not setting.enabled:
            if single:
                raise JobDisabled(f"{job_name} is disabled for {target.slug}; enable it first")
            result.disabled.append(target.slug)
            continue
        running = in_progress(spec, target, now)
        if running is not None:
            if single:
                raise RunInProgress(f"run {running.pk} of {job_name} for {target.slug} is "
                                    f"{running.status}")
            result.in_progress.append(target.slug)
            continue
        run_params(spec, target, params)  # InvalidJobParams, before any claim
        ready.append(target)

    token = uuid.uuid4().hex
    claimed: list[str] = []
    committed = False

    def mark_committed() -> None:
        nonlocal committed
        committed = True

    try:
        with transaction.atomic():
            # Runs before the runs' own publish callbacks: if one of those raises, the
            # runs exist and keep their cooldowns.
            transaction.on_commit(mark_committed)
            for target in ready:
                wait = _claim_cooldown(spec, target, token)
                if wait:
                    if single:
                        raise TriggerTooSoon(f"{job_name} was triggered for {target.slug} "
                                             f"moments ago; try again in {wait}s",
                                             retry_after=wait)
                    result.too_soon.append(target.slug)
                    continue
                claimed.append(_cooldown_key(spec, target))
                result.runs.append(enqueue_run(spec, target, trigger=trigger, now=now,
                                               params=params))
    except BaseException:
        if not committed:
            redis = get_redis()
            for key in claimed:
                release_token(redis, key, token)
        raise
    return result
