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


# --- Retention archive bookkeeping (data_cleanup_archiver) ---------------------------


class ArchiveRun(models.Model):
    """One archive pass of a community for one slot; a finished run makes re-runs no-ops.

    The cutoffs are fixed when the run starts, so a run resumed after a crash selects by the
    same dates even if the community's retention setting changed in between.
    """

    class Status(models.TextChoices):
        RUNNING = "running", "Running (or interrupted)"
        COMPLETED = "completed", "Completed"

    community = models.ForeignKey(Community, on_delete=models.CASCADE,
                                  related_name="archive_runs")
    slot = models.DateTimeField(help_text="The job run's logical time (cron fire time).")
    run_key = models.CharField(max_length=32)
    prefix = models.CharField(max_length=300, help_text="Storage prefix of the run's objects.")
    member_cutoff = models.DateTimeField()
    content_cutoff = models.DateTimeField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING)
    manifest_key = models.CharField(max_length=500, blank=True)
    manifest_sha256 = models.CharField(max_length=64, blank=True)
    members_archived = models.PositiveIntegerField(default=0)
    posts_archived = models.PositiveIntegerField(default=0)
    comments_archived = models.PositiveIntegerField(default=0)
    bytes = models.PositiveBigIntegerField(default=0)
    object_count = models.PositiveIntegerField(default=0)
    remaining = models.PositiveIntegerField(
        default=0, help_text="Rows past retention left for a later run (max_rows reached).")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-slot"]
        constraints = [
            models.UniqueConstraint(fields=["community", "slot"], name="archive_run_per_slot"),
        ]
        indexes = [models.Index(fields=["community", "status"])]

    def __str__(self) -> str:
        return f"archive {self.community_id} {self.run_key} ({self.status})"


class ArchiveBatch(models.Model):
    """One object of an archive run: which rows it holds, and how far it got.

    planned (rows chosen, checksum known) -> written (object stored) -> verified (read back,
    rows and checksum match) -> pruned (rows anonymised or deleted). Rows are pruned only
    from a verified batch, in the same transaction that marks it pruned.
    """

    class Kind(models.TextChoices):
        MEMBERS = "members", "Members"
        POSTS = "posts", "Posts"
        COMMENTS = "comments", "Comments"

    class State(models.TextChoices):
        PLANNED = "planned", "Planned"
        WRITTEN = "written", "Written"
        VERIFIED = "verified", "Verified"
        PRUNED = "pruned", "Pruned"

    run = models.ForeignKey(ArchiveRun, on_delete=models.CASCADE, related_name="batches")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    seq = models.PositiveIntegerField()
    key = models.CharField(max_length=500)
    ids = models.JSONField(default=list, help_text="Primary keys of the archived rows.")
    min_id = models.BigIntegerField(null=True, blank=True)
    max_id = models.BigIntegerField(null=True, blank=True)
    row_count = models.PositiveIntegerField(default=0)
    bytes = models.PositiveBigIntegerField(default=0)
    sha256 = models.CharField(max_length=64, blank=True)
    state = models.CharField(max_length=16, choices=State.choices, default=State.PLANNED)
    writes = models.PositiveSmallIntegerField(
        default=0, help_text="Times the object was written (more than 1: rewritten on resume).")
    pruned_count = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["run", "kind", "seq"]
        constraints = [
            models.UniqueConstraint(fields=["run", "kind", "seq"], name="archive_batch_seq"),
        ]
        indexes = [models.Index(fields=["run", "state"])]

    def __str__(self) -> str:
        return f"{self.key} ({self.state})"
