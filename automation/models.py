"""Per-community automation settings (the schedule's source of truth) and run records."""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models

from communities.models import Community

from .cron import describe_cron, next_fire_time, validate_cron
from .registry import JobSpec, get_job, is_registered


class CommunityAutomationSetting(models.Model):
    """One job for one community: on/off, schedule override and params.

    The django-celery-beat rows of tenant jobs are derived from these rows by
    `automation.schedules.sync_schedules`; they are never edited by hand.
    """

    community = models.ForeignKey(
        Community, on_delete=models.CASCADE, related_name="automation_settings"
    )
    job_name = models.CharField(max_length=100, db_index=True)
    enabled = models.BooleanField(default=True)
    cron_override = models.CharField(
        max_length=100,
        blank=True,
        default="",
        help_text="Five-field cron in the community's timezone; empty uses the job's default.",
    )
    params = models.JSONField(default=dict, blank=True)
    paused_until = models.DateTimeField(
        null=True, blank=True,
        help_text="Scheduled runs are skipped until then; the schedule resumes by itself.",
    )
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        db_table = "community_automation_settings"
        ordering = ["community", "job_name"]
        # Starting work is its own right, apart from editing the setting (admin, dashboard).
        permissions = [("run_communityautomationsetting", "Can run a job now for a community")]
        constraints = [
            models.UniqueConstraint(fields=["community", "job_name"], name="one_setting_per_job")
        ]

    def __str__(self) -> str:
        return f"{self.job_name} @ {self.community}"

    @property
    def spec(self) -> JobSpec:
        return get_job(self.job_name)

    @property
    def cron(self) -> str | None:
        """The effective cron expression, or None for an on-demand job."""
        if self.cron_override:
            return self.cron_override
        return self.spec.default_cron if is_registered(self.job_name) else None

    def cron_description(self) -> str:
        return describe_cron(self.cron) if self.cron else "on demand"

    def is_paused(self, now: datetime) -> bool:
        return self.paused_until is not None and self.paused_until > now

    def next_run(self, now: datetime) -> datetime | None:
        if not (self.enabled and self.community.is_active and self.cron):
            return None
        after = self.paused_until if self.is_paused(now) else now
        return next_fire_time(self.cron, self.community.timezone, after)

    def clean(self) -> None:
        errors: dict[str, list] = {}
        if not is_registered(self.job_name):
            errors["job_name"] = [f"{self.job_name!r} is not a registered job."]
        else:
            if self.cron_override:
                if not self.spec.scheduled:
                    errors["cron_override"] = ["This job runs on demand and takes no schedule."]
                else:
                    try:
                        self.cron_override = validate_cron(self.cron_override)
                    except ValidationError as exc:
                        errors["cron_override"] = exc.messages
            from .errors import InvalidJobParams

            try:
                # Stored as cleaned (only the params given, in their JSON form), so what
                # the API, admin and runs read back is what the form accepted.
                self.params = self.spec.clean_params(self.params, partial=True,
                                                     defaults=False)
            except InvalidJobParams as exc:
                errors["params"] = [f"{k}: {' '.join(v)}" for k, v in exc.errors.items()]
        if errors:
            raise ValidationError(errors)

    def save(self, *args, **kwargs) -> None:
        # Every write path is validated, so beat never receives an invalid expression.
        self.clean()
        super().save(*args, **kwargs)


class JobRun(models.Model):
    class Trigger(models.TextChoices):
        SCHEDULE = "schedule", "Schedule"
        MANUAL = "manual", "Manual"
        API = "api", "API"
        BACKFILL = "backfill", "Backfill"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        TIMED_OUT = "timed_out", "Timed out"
        SKIPPED = "skipped", "Skipped"

    FINISHED = (Status.SUCCEEDED, Status.FAILED, Status.TIMED_OUT, Status.SKIPPED)

    job_name = models.CharField(max_length=100)
    community = models.ForeignKey(
        Community, null=True, on_delete=models.SET_NULL, related_name="job_runs"
    )
    trigger = models.CharField(max_length=16, choices=Trigger.choices)
    scheduled_for = models.DateTimeField(
        help_text="The slot this run is for: the cron fire time, or the trigger time."
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    queue = models.CharField(max_length=32, blank=True)
    params = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_seconds = models.FloatField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    queued_at = models.DateTimeField(
        null=True, blank=True,
        help_text="When the run's current message was published or falls due (a retry's "
                  "countdown); a queued run long past it has lost its message.",
    )
    resumes = models.PositiveSmallIntegerField(
        default=0, db_default=0,
        help_text="Times the run was resumed after losing its worker or its message.",
    )
    skip_reason = models.CharField(max_length=64, blank=True)
    error_type = models.CharField(max_length=200, blank=True)
    error_message = models.TextField(blank=True)
    result = models.JSONField(default=dict, blank=True)
    celery_task_id = models.CharField(max_length=64, blank=True, db_index=True)
    worker_hostname = models.CharField(max_length=200, blank=True)
    progress_done = models.PositiveIntegerField(null=True, blank=True)
    progress_total = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["job_name", "-created_at"], name="jobrun_job_time"),
            models.Index(fields=["community", "-created_at"], name="jobrun_community_time"),
            models.Index(fields=["-created_at"], name="jobrun_time"),
            models.Index(fields=["status", "-created_at"], name="jobrun_status_time"),
            models.Index(
                fields=["job_name", "community", "scheduled_for"], name="jobrun_slot"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.job_name} #{self.pk} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED


class AuditEntry(models.Model):
    """Who changed what, when: settings, schedules, toggles, API keys, manual triggers."""

    at = models.DateTimeField(db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
        related_name="+",
    )
    actor_label = models.CharField(
        max_length=150, help_text="user name, 'api-key:<prefix>', 'operator-token' or 'system'"
    )
    action = models.CharField(max_length=64, db_index=True)
    community = models.ForeignKey(
        Community, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    job_name = models.CharField(max_length=100, blank=True)
    target = models.CharField(max_length=200, blank=True)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)

    class Meta:
        ordering = ["-at", "-pk"]
        verbose_name_plural = "audit entries"
        indexes = [models.Index(fields=["community", "-at"], name="audit_community_time")]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M} {self.actor_label} {self.action} {self.target}"
