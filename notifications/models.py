"""The notification outbox: what any job wants a member or admin to be told.

Jobs never send mail themselves; they write a Notification (idempotently, by a
dedup key) and the outbox delivers it on the member's channel. A re-run that
notifies again with the same key finds the row and sends nothing twice.
"""

from __future__ import annotations

from django.db import models

from communities.models import Community, Member


class Channel(models.TextChoices):
    EMAIL = "email", "Email"
    PUSH = "push", "Push"


class Notification(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"
        SUPPRESSED = "suppressed", "Suppressed"

    community = models.ForeignKey(
        Community, on_delete=models.CASCADE, related_name="notifications"
    )
    member = models.ForeignKey(
        Member, null=True, blank=True, on_delete=models.SET_NULL, related_name="notifications"
    )
    channel = models.CharField(max_length=8, choices=Channel.choices, default=Channel.EMAIL)
    kind = models.CharField(max_length=64, help_text="e.g. leaderboard.top_performer")
    dedup_key = models.CharField(
        max_length=255, help_text="One notification per key, channel and community, ever."
    )
    subject = models.CharField(max_length=300)
    body = models.TextField()
    html_body = models.TextField(blank=True)
    data = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["community", "channel", "dedup_key"], name="notification_once_per_key"
            )
        ]
        indexes = [models.Index(fields=["status", "created_at"])]

    def __str__(self) -> str:
        return f"{self.kind} → {self.member_id or '-'} ({self.status})"
