"""The tenant (a community) and its members."""

import zoneinfo

from django.db import models
from django.utils import timezone

from .timezones import validate_timezone


class Community(models.Model):
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=100, unique=True)
    timezone = models.CharField(
        max_length=64,
        default="UTC",
        validators=[validate_timezone],
        help_text="IANA timezone; every schedule of this community runs in its local time.",
    )
    is_active = models.BooleanField(
        default=True, help_text="Inactive communities run no jobs and have no beat rows."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "communities"

    def __str__(self) -> str:
        return self.name

    @property
    def tzinfo(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.timezone)

    def save(self, *args, **kwargs) -> None:
        # Model validation does not run on save(); the timezone reaches beat rows, so it
        # is checked on every write path, not only in forms.
        validate_timezone(self.timezone)
        super().save(*args, **kwargs)


def default_notification_preferences() -> dict:
    return {"digest_email": True, "digest_push": False}


class Member(models.Model):
    class Role(models.TextChoices):
        MEMBER = "member", "Member"
        MODERATOR = "moderator", "Moderator"
        ADMIN = "admin", "Admin"

    community = models.ForeignKey(Community, on_delete=models.CASCADE, related_name="members")
    email = models.EmailField()
    display_name = models.CharField(max_length=150)
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.MEMBER)
    joined_at = models.DateTimeField(default=timezone.now)
    last_active_at = models.DateTimeField(null=True, blank=True)
    notification_preferences = models.JSONField(default=default_notification_preferences)
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["community", "display_name"]
        constraints = [
            models.UniqueConstraint(
                fields=["community", "email"], name="member_email_per_community"
            )
        ]
        indexes = [models.Index(fields=["community", "last_active_at"])]

    def __str__(self) -> str:
        return f"{self.display_name} <{self.email}>"

    def wants(self, preference: str) -> bool:
        defaults = default_notification_preferences()
        return bool(self.notification_preferences.get(preference, defaults.get(preference)))
