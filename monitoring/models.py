"""In-app alerts (for installations without Prometheus) and the missed-run record."""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from communities.models import Community


class Alert(models.Model):
    """One incident of one kind for one job (and community): opened, repeated, resolved.

    At most one alert per key is open; a key that fails again after it was resolved opens
    a new row, so the rows are the incident history. Times are those of the events (run
    finish times), not of the check that saw them, so re-reading a run is recognisable.
    """

    class Kind(models.TextChoices):
        FAILURE = "failure", "Failure"
        TIMEOUT = "timeout", "Timeout"
        MISSED = "missed", "Missed runs"

    kind = models.CharField(max_length=16, choices=Kind.choices)
    job_name = models.CharField(max_length=100)
    community = models.ForeignKey(
        Community, null=True, blank=True, on_delete=models.CASCADE, related_name="+",
        help_text="Empty for alerts about the whole job (missed runs) or a deleted community.",
    )
    fingerprint = models.CharField(
        max_length=200, help_text="kind:job:community id — the de-duplication key."
    )
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField()
    count = models.PositiveIntegerField(
        default=1, help_text="Occurrences while open: consecutive failed runs, missed slots."
    )
    last_message = models.TextField(blank=True)
    # A plain id, not a foreign key: run history is pruned in fast batches (see retention).
    last_run_id = models.BigIntegerField(null=True, blank=True)
    last_notified_at = models.DateTimeField(null=True, blank=True)
    notifications_sent = models.PositiveIntegerField(default=0)
    resolved_at = models.DateTimeField(
        null=True, blank=True, help_text="When the job next succeeded (or ran on schedule)."
    )
    resolved_notified_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-last_seen"]
        constraints = [
            models.UniqueConstraint(
                fields=["fingerprint"], condition=Q(resolved_at__isnull=True),
                name="one_open_alert_per_key",
            ),
        ]
        indexes = [
            models.Index(fields=["fingerprint", "-last_seen"], name="alert_key_time"),
            models.Index(fields=["-last_seen"], name="alert_time"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.job_name} @ {self.community_id or '-'} ({self.state})"

    @property
    def is_open(self) -> bool:
        return self.resolved_at is None

    @property
    def state(self) -> str:
        return "open" if self.is_open else "resolved"

    @staticmethod
    def key(kind: str, job_name: str, community_id: int | None) -> str:
        return f"{kind}:{job_name}:{community_id if community_id is not None else '-'}"


class MissedRun(models.Model):
    """A scheduled slot of an enabled setting for which no run exists (beat did not send it)."""

    class Action(models.TextChoices):
        SKIPPED = "skipped", "Recorded only (catch-up: skip)"
        CAUGHT_UP = "caught_up", "One catch-up run enqueued"
        CATCH_UP_FAILED = "catch_up_failed", "Catch-up could not be enqueued"

    setting = models.ForeignKey(
        "automation.CommunityAutomationSetting", null=True, on_delete=models.SET_NULL,
        related_name="+",
    )
    job_name = models.CharField(max_length=100)
    community = models.ForeignKey(Community, on_delete=models.CASCADE, related_name="+")
    slot = models.DateTimeField(help_text="The cron fire time that has no run.")
    detected_at = models.DateTimeField()
    action = models.CharField(max_length=16, choices=Action.choices)
    # Plain id for the same reason as Alert.last_run_id.
    catch_up_run_id = models.BigIntegerField(null=True, blank=True)
    note = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-slot"]
        constraints = [
            models.UniqueConstraint(
                fields=["job_name", "community", "slot"], name="one_missed_run_per_slot"
            ),
        ]
        indexes = [
            models.Index(fields=["slot"], name="missedrun_slot"),
            models.Index(fields=["-detected_at"], name="missedrun_detected"),
        ]

    def __str__(self) -> str:
        return f"{self.job_name} @ {self.community_id} missed {self.slot:%Y-%m-%d %H:%M}"
