"""Notification outbox, delivery channels' state, bounces and the digest ledger.

Jobs never send mail themselves; they write a Notification (idempotently, by a
dedup key) and the outbox delivers it on the member's channel. A re-run that
notifies again with the same key finds the row and sends nothing twice.

The digest has its own ledger (DigestDelivery): one row per community, member, local
date and channel, claimed before sending, so a re-run of a slot sends nothing twice and
a crash between claim and send leaves a `pending` row that the next attempt picks up.
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from communities.models import Community, Member


class Channel(models.TextChoices):
    EMAIL = "email", "Email"
    PUSH = "push", "Push"


class Notification(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"
        BOUNCED = "bounced", "Bounced (hard)"
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
        # Delivering again sends the member a message: not implied by editing the row.
        permissions = [("run_notification", "Can deliver a notification again")]

    def __str__(self) -> str:
        return f"{self.kind} → {self.member_id or '-'} ({self.status})"


class PushDevice(models.Model):
    """A member's registration at the push provider (FCM token or Web Push endpoint)."""

    class Platform(models.TextChoices):
        WEB = "web", "Web"
        ANDROID = "android", "Android"
        IOS = "ios", "iOS"

    member = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="push_devices")
    token = models.CharField(
        max_length=1024, unique=True,
        help_text="The provider's registration token; one device belongs to one member.",
    )
    platform = models.CharField(max_length=16, choices=Platform.choices, default=Platform.WEB)
    is_active = models.BooleanField(
        default=True, help_text="Turned off when the provider says the token is invalid."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_success_at = models.DateTimeField(null=True, blank=True)
    deactivated_at = models.DateTimeField(null=True, blank=True)
    deactivated_reason = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["member", "-created_at"]
        indexes = [models.Index(fields=["member", "is_active"])]

    def __str__(self) -> str:
        return f"{self.platform} device of {self.member_id} ({'on' if self.is_active else 'off'})"


class EmailBounce(models.Model):
    """An SMTP refusal of a recipient at send time (5xx hard, 4xx soft)."""

    class Kind(models.TextChoices):
        HARD = "hard", "Hard (5xx)"
        SOFT = "soft", "Soft (4xx)"

    community = models.ForeignKey(
        Community, on_delete=models.CASCADE, related_name="email_bounces"
    )
    member = models.ForeignKey(
        Member, null=True, blank=True, on_delete=models.SET_NULL, related_name="email_bounces"
    )
    email = models.EmailField()
    kind = models.CharField(max_length=8, choices=Kind.choices)
    smtp_code = models.PositiveSmallIntegerField(null=True, blank=True)
    message = models.TextField(blank=True)
    source = models.CharField(
        max_length=64, blank=True, help_text="What was being sent: digest or a notification kind."
    )
    occurred_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-occurred_at"]
        indexes = [
            models.Index(fields=["email"]),
            models.Index(fields=["community", "occurred_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.kind} bounce {self.email} ({self.smtp_code})"


class EmailSuppression(models.Model):
    """An address no email goes to any more (platform-wide: a dead mailbox is dead for all)."""

    class Reason(models.TextChoices):
        HARD_BOUNCE = "hard_bounce", "Hard bounce"
        MANUAL = "manual", "Added by an operator"

    email = models.EmailField(unique=True, help_text="Stored lower-case.")
    reason = models.CharField(max_length=16, choices=Reason.choices,
                              default=Reason.HARD_BOUNCE)
    community = models.ForeignKey(
        Community, null=True, blank=True, on_delete=models.SET_NULL,
        related_name="email_suppressions", help_text="Where the address bounced.",
    )
    bounce = models.ForeignKey(EmailBounce, null=True, blank=True, on_delete=models.SET_NULL)
    detail = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.email} ({self.reason})"

    def save(self, *args, **kwargs) -> None:
        # Every write path normalises, so lookups can compare lower-case strings.
        self.email = self.email.strip().lower()
        super().save(*args, **kwargs)


class DigestDelivery(models.Model):
    """The digest ledger: who got the digest of which local day on which channel."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending (claimed, not yet confirmed)"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed (retried by a later attempt)"
        BOUNCED = "bounced", "Bounced (hard; never retried)"

    community = models.ForeignKey(
        Community, on_delete=models.CASCADE, related_name="digest_deliveries"
    )
    member = models.ForeignKey(Member, on_delete=models.CASCADE,
                               related_name="digest_deliveries")
    local_date = models.DateField(help_text="The digest's day in the community's timezone.")
    channel = models.CharField(max_length=8, choices=Channel.choices)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    slot = models.DateTimeField(help_text="The run's logical time (its cron slot).")
    last_error = models.TextField(blank=True)
    smtp_code = models.PositiveSmallIntegerField(null=True, blank=True)
    latency_ms = models.FloatField(null=True, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-local_date", "community", "member"]
        verbose_name_plural = "digest deliveries"
        constraints = [
            models.UniqueConstraint(
                fields=["community", "member", "local_date", "channel"],
                name="digest_once_per_member_day_channel",
            )
        ]
        indexes = [models.Index(fields=["community", "local_date", "status"])]

    def __str__(self) -> str:
        return f"digest {self.local_date} {self.channel} → {self.member_id} ({self.status})"
