"""The tenant (a community), its members and their content (posts, comments, events)."""

import zoneinfo

from django.core.validators import MinValueValidator
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
    member_retention_days = models.PositiveIntegerField(
        default=730,
        validators=[MinValueValidator(30)],
        help_text="Members inactive for longer are archived and anonymised by the cleanup job.",
    )
    content_retention_days = models.PositiveIntegerField(
        default=30,
        validators=[MinValueValidator(1)],
        help_text="Soft-deleted posts and comments older than this are archived, then pruned.",
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
    anonymized_at = models.DateTimeField(
        null=True, blank=True, help_text="Set when retention replaced the member's personal data."
    )
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


class ContentQuerySet(models.QuerySet):
    def visible(self) -> "ContentQuerySet":
        return self.filter(deleted_at__isnull=True)


class Post(models.Model):
    community = models.ForeignKey(Community, on_delete=models.CASCADE, related_name="posts")
    author = models.ForeignKey(
        Member, null=True, blank=True, on_delete=models.SET_NULL, related_name="posts"
    )
    title = models.CharField(max_length=300)
    body = models.TextField(blank=True)
    reaction_count = models.PositiveIntegerField(default=0)
    comment_count = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    deleted_at = models.DateTimeField(null=True, blank=True, help_text="Soft delete.")

    objects = ContentQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["community", "created_at"]),
            models.Index(fields=["community", "deleted_at"]),
        ]

    def __str__(self) -> str:
        return self.title


class Comment(models.Model):
    community = models.ForeignKey(Community, on_delete=models.CASCADE, related_name="comments")
    post = models.ForeignKey(Post, on_delete=models.CASCADE, related_name="comments")
    author = models.ForeignKey(
        Member, null=True, blank=True, on_delete=models.SET_NULL, related_name="comments"
    )
    body = models.TextField()
    created_at = models.DateTimeField(default=timezone.now)
    deleted_at = models.DateTimeField(null=True, blank=True, help_text="Soft delete.")

    objects = ContentQuerySet.as_manager()

    class Meta:
        ordering = ["created_at"]
        indexes = [models.Index(fields=["community", "deleted_at"])]

    def __str__(self) -> str:
        return self.body[:60]


class Event(models.Model):
    community = models.ForeignKey(Community, on_delete=models.CASCADE, related_name="events")
    title = models.CharField(max_length=300)
    description = models.TextField(blank=True)
    location = models.CharField(max_length=300, blank=True)
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["starts_at"]
        indexes = [models.Index(fields=["community", "starts_at"])]

    def __str__(self) -> str:
        return self.title
