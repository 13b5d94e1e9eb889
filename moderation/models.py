"""Flags on content, the per-community SLA policy, and the record of every escalation."""

from __future__ import annotations

from datetime import timedelta

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone

from communities.models import Comment, Community, Member, Post
from integrations.url_safety import validate_webhook_url


class Severity(models.TextChoices):
    LOW = "low", "Low"
    MEDIUM = "medium", "Medium"
    HIGH = "high", "High"
    CRITICAL = "critical", "Critical"


# Minutes a flag of each severity may stay open before it breaches its SLA, when the
# community has no policy of its own.
DEFAULT_SLA_MINUTES = {
    Severity.CRITICAL: 60,
    Severity.HIGH: 240,
    Severity.MEDIUM: 1440,
    Severity.LOW: 4320,
}
# Level n is due at n x SLA; the policy caps how far a flag is escalated.
DEFAULT_MAX_ESCALATION_LEVEL = 2
MAX_ESCALATION_LEVEL = 5

_sla_validators = [MinValueValidator(1), MaxValueValidator(60 * 24 * 90)]
SLA_FIELDS = ("sla_critical_minutes", "sla_high_minutes", "sla_medium_minutes",
              "sla_low_minutes", "max_escalation_level")


class ModerationPolicy(models.Model):
    """A community's SLA per severity and, optionally, its own Trust & Safety channel."""

    community = models.OneToOneField(Community, on_delete=models.CASCADE,
                                     related_name="moderation_policy")
    sla_critical_minutes = models.PositiveIntegerField(
        default=DEFAULT_SLA_MINUTES[Severity.CRITICAL], validators=_sla_validators)
    sla_high_minutes = models.PositiveIntegerField(
        default=DEFAULT_SLA_MINUTES[Severity.HIGH], validators=_sla_validators)
    sla_medium_minutes = models.PositiveIntegerField(
        default=DEFAULT_SLA_MINUTES[Severity.MEDIUM], validators=_sla_validators)
    sla_low_minutes = models.PositiveIntegerField(
        default=DEFAULT_SLA_MINUTES[Severity.LOW], validators=_sla_validators)
    max_escalation_level = models.PositiveSmallIntegerField(
        default=DEFAULT_MAX_ESCALATION_LEVEL,
        validators=[MinValueValidator(1), MaxValueValidator(MAX_ESCALATION_LEVEL)],
        help_text="Level n is sent when a flag has been open n times its SLA.",
    )
    slack_webhook_url = models.URLField(
        max_length=500, blank=True, validators=[validate_webhook_url],
        help_text="Slack incoming webhook of this community's Trust & Safety channel; "
                  "empty: the platform's TRUST_SAFETY_SLACK_WEBHOOK_URL.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "moderation policies"
        constraints = [
            models.CheckConstraint(
                condition=models.Q(sla_critical_minutes__gt=0, sla_high_minutes__gt=0,
                                   sla_medium_minutes__gt=0, sla_low_minutes__gt=0),
                name="moderation_policy_sla_positive",
            ),
            models.CheckConstraint(
                condition=models.Q(max_escalation_level__gte=1,
                                   max_escalation_level__lte=MAX_ESCALATION_LEVEL),
                name="moderation_policy_level_range",
            ),
        ]

    def __str__(self) -> str:
        return f"moderation policy of {self.community_id}"

    def sla_for(self, severity: str) -> timedelta:
        return timedelta(minutes=getattr(self, f"sla_{severity}_minutes"))

    def validate_values(self) -> None:
        """The numeric fields' validators; model validation does not run on save()."""
        self.clean_fields(exclude=[f.name for f in self._meta.fields
                                   if f.name not in SLA_FIELDS])

    def save(self, *args, **kwargs) -> None:
        # Tenant input: checked on every write path, not only in admin forms. The URL is
        # checked and resolved again when called (DNS may change), see moderation.slack.
        self.validate_values()
        update_fields = kwargs.get("update_fields")
        if self.slack_webhook_url and (update_fields is None
                                       or "slack_webhook_url" in update_fields):
            validate_webhook_url(self.slack_webhook_url)
        super().save(*args, **kwargs)

    @classmethod
    def for_community(cls, community: Community) -> ModerationPolicy:
        """The community's policy, or an unsaved one holding the defaults."""
        return cls.objects.filter(community=community).first() or cls(community=community)


class Flag(models.Model):
    """A report that a post or comment breaks the rules, waiting for a moderator."""

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        RESOLVED = "resolved", "Resolved"
        DISMISSED = "dismissed", "Dismissed"

    class TargetType(models.TextChoices):
        POST = "post", "Post"
        COMMENT = "comment", "Comment"

    community = models.ForeignKey(Community, on_delete=models.CASCADE, related_name="flags")
    # The content while it exists; target_type/target_id keep the reference after the
    # content is pruned (the cleanup job hard-deletes old soft-deleted content).
    post = models.ForeignKey(Post, null=True, blank=True, on_delete=models.SET_NULL,
                             related_name="flags")
    comment = models.ForeignKey(Comment, null=True, blank=True, on_delete=models.SET_NULL,
                                related_name="flags")
    target_type = models.CharField(max_length=16, choices=TargetType.choices, editable=False)
    target_id = models.BigIntegerField(editable=False)
    reporter = models.ForeignKey(Member, null=True, blank=True, on_delete=models.SET_NULL,
                                 related_name="flags_reported")
    reason = models.TextField()
    severity = models.CharField(max_length=16, choices=Severity.choices,
                                default=Severity.MEDIUM)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    created_at = models.DateTimeField(default=timezone.now)
    resolved_at = models.DateTimeField(null=True, blank=True)
    escalation_level = models.PositiveSmallIntegerField(
        default=0, help_text="Highest SLA escalation level delivered to Trust & Safety.")
    escalated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["community", "status", "created_at"])]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(target_type__in=["post", "comment"]),
                name="flag_target_type_known",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_severity_display()} flag on {self.target_type} {self.target_id}"

    @property
    def content(self) -> Post | Comment | None:
        return self.post if self.target_type == self.TargetType.POST else self.comment

    def clean(self) -> None:
        if self.post_id and self.comment_id:
            raise ValidationError("Flag one post or one comment, not both.")
        if not (self.post_id or self.comment_id or self.target_id):
            raise ValidationError("Flag a post or a comment.")
        content = self.post if self.post_id else self.comment if self.comment_id else None
        if content is not None and content.community_id != self.community_id:
            raise ValidationError("The flagged content belongs to another community.")
        if self.reporter_id and self.reporter.community_id != self.community_id:
            raise ValidationError("The reporter is a member of another community.")

    def save(self, *args, **kwargs) -> None:
        update_fields = kwargs.get("update_fields")
        if update_fields is None or {"post", "comment", "community", "reporter"} & set(
                update_fields):
            self.clean()
            if self.post_id or self.comment_id:
                self.target_type = (self.TargetType.POST if self.post_id
                                    else self.TargetType.COMMENT)
                self.target_id = self.post_id or self.comment_id
        super().save(*args, **kwargs)


class Escalation(models.Model):
    """One SLA escalation of a flag at one level; the row is the claim that it was sent.

    The row is created (claimed) before the Slack POST, so no run posts the same flag and
    level twice. A POST that fails marks it failed and the next run posts it again; a row
    left `claimed` means a run died during the POST (the message may or may not be in
    Slack): it is reported as unconfirmed and not re-sent until an operator says so
    (admin action "send again").
    """

    class Status(models.TextChoices):
        CLAIMED = "claimed", "Claimed (sending)"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed (retried next run)"
        SUPERSEDED = "superseded", "Superseded by a higher level"

    flag = models.ForeignKey(Flag, on_delete=models.CASCADE, related_name="escalations")
    level = models.PositiveSmallIntegerField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.CLAIMED)
    claimed_at = models.DateTimeField(help_text="Slot of the run that claimed (or retook) it.")
    sent_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    destination = models.CharField(
        max_length=16, blank=True, help_text="platform or community webhook")
    slack_status = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="HTTP status Slack answered the last POST with.")
    slack_response = models.CharField(max_length=500, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["flag", "level"]
        constraints = [
            models.UniqueConstraint(fields=["flag", "level"], name="escalation_once_per_level"),
        ]
        indexes = [models.Index(fields=["status"])]

    def __str__(self) -> str:
        return f"flag {self.flag_id} level {self.level}: {self.status}"
