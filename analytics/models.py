"""The activity event store and what the analytics jobs derive from it.

Events are the source of truth; rollups, reports, leaderboard standings and the
warehouse sink are recomputed from them, never incremented, so any job can be re-run
for its slot and land on the same numbers.
"""

from __future__ import annotations

from django.db import models

from communities.models import Community, Member


class EventType(models.TextChoices):
    POST = "post", "Post"
    COMMENT = "comment", "Comment"
    REACTION = "reaction", "Reaction"
    LOGIN = "login", "Login"
    EVENT_RSVP = "event_rsvp", "Event RSVP"
    MEMBER_JOINED = "member_joined", "Member joined"


class ActivityEvent(models.Model):
    """One thing a member did, at the time it happened (UTC in the database)."""

    community = models.ForeignKey(
        Community, on_delete=models.CASCADE, related_name="activity_events"
    )
    member = models.ForeignKey(
        Member, null=True, blank=True, on_delete=models.SET_NULL, related_name="activity_events",
        help_text="Empty once the member was deleted; the event still counts in totals.",
    )
    type = models.CharField(max_length=32, choices=EventType.choices)
    occurred_at = models.DateTimeField()
    payload = models.JSONField(default=dict, blank=True)
    recorded_at = models.DateTimeField(
        auto_now_add=True, help_text="When the event reached the store (late events lag)."
    )

    class Meta:
        ordering = ["-occurred_at"]
        indexes = [
            # Window scans: rollups, reports, backfill chunks, leaderboard weeks.
            models.Index(fields=["community", "occurred_at"], name="event_window"),
            models.Index(fields=["community", "type", "occurred_at"], name="event_type_window"),
        ]

    def __str__(self) -> str:
        return f"{self.type} by {self.member_id or '-'} at {self.occurred_at:%Y-%m-%d %H:%M}"


class DailyRollup(models.Model):
    """Events of one type on one community-local day: recomputed from the store."""

    community = models.ForeignKey(Community, on_delete=models.CASCADE, related_name="rollups")
    date = models.DateField(help_text="The community's local date.")
    event_type = models.CharField(max_length=32, choices=EventType.choices)
    count = models.PositiveIntegerField(default=0)
    distinct_members = models.PositiveIntegerField(default=0)
    updated_at = models.DateTimeField(help_text="Slot time of the run that last recomputed it.")

    class Meta:
        ordering = ["-date", "event_type"]
        constraints = [
            models.UniqueConstraint(
                fields=["community", "date", "event_type"], name="rollup_per_day_and_type"
            )
        ]

    def __str__(self) -> str:
        return f"{self.community_id} {self.date} {self.event_type}: {self.count}"


class DailyReport(models.Model):
    """One community-local day's activity, written by analytics_daily_report."""

    community = models.ForeignKey(
        Community, on_delete=models.CASCADE, related_name="daily_reports"
    )
    date = models.DateField()
    events_total = models.PositiveIntegerField(default=0)
    active_members = models.PositiveIntegerField(default=0)
    new_members = models.PositiveIntegerField(default=0)
    by_type = models.JSONField(default=dict, blank=True)
    generated_at = models.DateTimeField()

    class Meta:
        ordering = ["-date"]
        constraints = [
            models.UniqueConstraint(fields=["community", "date"], name="daily_report_per_day")
        ]

    def __str__(self) -> str:
        return f"{self.community_id} {self.date}: {self.events_total} events"


class MonthlyUsageSummary(models.Model):
    """One community-local calendar month of usage, written by the monthly summary job."""

    community = models.ForeignKey(
        Community, on_delete=models.CASCADE, related_name="monthly_usage"
    )
    month = models.DateField(help_text="First day of the local month.")
    events_total = models.PositiveIntegerField(default=0)
    active_members = models.PositiveIntegerField(default=0)
    active_days = models.PositiveSmallIntegerField(default=0)
    new_members = models.PositiveIntegerField(default=0)
    peak_day = models.DateField(null=True, blank=True)
    peak_day_events = models.PositiveIntegerField(default=0)
    by_type = models.JSONField(default=dict, blank=True)
    generated_at = models.DateTimeField()

    class Meta:
        ordering = ["-month"]
        verbose_name_plural = "monthly usage summaries"
        constraints = [
            models.UniqueConstraint(fields=["community", "month"], name="usage_summary_per_month")
        ]

    def __str__(self) -> str:
        return f"{self.community_id} {self.month:%Y-%m}: {self.events_total} events"


class Badge(models.TextChoices):
    BRONZE = "bronze", "Bronze"
    SILVER = "silver", "Silver"
    GOLD = "gold", "Gold"


class MemberBadge(models.Model):
    """A badge a member earned in a leaderboard period (the highest tier reached)."""

    community = models.ForeignKey(
        Community, on_delete=models.CASCADE, related_name="member_badges"
    )
    member = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="badges")
    badge = models.CharField(max_length=16, choices=Badge.choices)
    period = models.CharField(max_length=10, help_text="ISO week, e.g. 2026-W48.")
    points = models.PositiveIntegerField(default=0)
    awarded_at = models.DateTimeField()

    class Meta:
        ordering = ["-period", "-points"]
        constraints = [
            models.UniqueConstraint(
                fields=["member", "badge", "period"], name="badge_once_per_member_and_period"
            )
        ]
        indexes = [models.Index(fields=["community", "period"])]

    def __str__(self) -> str:
        return f"{self.badge} for {self.member_id} in {self.period}"


class LeaderboardStanding(models.Model):
    """A scored member's line on a period's board (points, rank, streaks)."""

    community = models.ForeignKey(
        Community, on_delete=models.CASCADE, related_name="leaderboard_standings"
    )
    period = models.CharField(max_length=10)
    member = models.ForeignKey(
        Member, on_delete=models.CASCADE, related_name="leaderboard_standings"
    )
    rank = models.PositiveIntegerField(help_text="1 + members with more points (ties share).")
    points = models.PositiveIntegerField()
    events = models.PositiveIntegerField(default=0)
    active_days = models.PositiveSmallIntegerField(default=0)
    longest_streak = models.PositiveSmallIntegerField(
        default=0, help_text="Most consecutive active local days inside the period."
    )
    current_streak = models.PositiveSmallIntegerField(
        default=0, help_text="Consecutive active local days ending on the period's last day."
    )
    badge = models.CharField(max_length=16, choices=Badge.choices, blank=True)

    class Meta:
        ordering = ["community", "-period", "rank"]
        constraints = [
            models.UniqueConstraint(
                fields=["community", "period", "member"], name="standing_per_member_and_period"
            )
        ]
        indexes = [models.Index(fields=["community", "period", "rank"])]

    def __str__(self) -> str:
        return f"#{self.rank} {self.member_id} ({self.points}) in {self.period}"


class LeaderboardSnapshot(models.Model):
    """A period's board summary plus the cached top N that pages read."""

    community = models.ForeignKey(
        Community, on_delete=models.CASCADE, related_name="leaderboard_snapshots"
    )
    period = models.CharField(max_length=10)
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    members_scored = models.PositiveIntegerField(default=0)
    events_scanned = models.PositiveIntegerField(default=0)
    top = models.JSONField(default=list, blank=True, help_text="The cached top N, in rank order.")
    top_n = models.PositiveSmallIntegerField(default=10)
    redis_key = models.CharField(max_length=200)
    computed_at = models.DateTimeField()

    class Meta:
        ordering = ["community", "-period"]
        constraints = [
            models.UniqueConstraint(fields=["community", "period"], name="snapshot_per_period")
        ]

    def __str__(self) -> str:
        return f"{self.community_id} {self.period}: {self.members_scored} scored"


class Backfill(models.Model):
    """A replay of one window of a community's events into the warehouse sink.

    The same (community, window) is always the same backfill, so running it again
    resumes: chunks already done are skipped unless forced.
    """

    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        MISMATCHED = "mismatched", "Done with mismatches"
        FAILED = "failed", "Failed"

    community = models.ForeignKey(Community, on_delete=models.CASCADE, related_name="backfills")
    start = models.DateTimeField(help_text="Inclusive, on the hour (UTC).")
    end = models.DateTimeField(help_text="Exclusive, on the hour (UTC).")
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.RUNNING)
    chunks_total = models.PositiveIntegerField(default=0)
    chunks_done = models.PositiveIntegerField(default=0)
    chunks_failed = models.PositiveIntegerField(default=0)
    rows_source = models.PositiveIntegerField(default=0)
    rows_sink = models.PositiveIntegerField(default=0)
    reconciled = models.PositiveIntegerField(default=0, help_text="Chunks whose counts agree.")
    mismatched = models.PositiveIntegerField(default=0)
    mismatches = models.JSONField(default=list, blank=True)
    runs = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField()
    last_run_at = models.DateTimeField()

    class Meta:
        ordering = ["-last_run_at"]
        constraints = [
            models.UniqueConstraint(fields=["community", "start", "end"], name="backfill_window"),
            models.CheckConstraint(condition=models.Q(end__gt=models.F("start")),
                                   name="backfill_end_after_start"),
        ]

    def __str__(self) -> str:
        return (f"backfill {self.pk} of {self.community_id}: "
                f"{self.start:%Y-%m-%d %H}h to {self.end:%Y-%m-%d %H}h")


class BackfillChunk(models.Model):
    """One UTC hour of a backfill: its own idempotent unit of work and object in the sink."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"
        MISMATCH = "mismatch", "Sink does not match the source"

    backfill = models.ForeignKey(Backfill, on_delete=models.CASCADE, related_name="chunks")
    hour = models.DateTimeField(help_text="Start of the UTC hour.")
    key = models.CharField(max_length=400, help_text="Object key in the warehouse sink.")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    source_rows = models.PositiveIntegerField(default=0)
    sink_rows = models.PositiveIntegerField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    error = models.TextField(blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["backfill", "hour"]
        constraints = [
            models.UniqueConstraint(fields=["backfill", "hour"], name="chunk_per_backfill_hour")
        ]
        # A replay runs on a worker and overwrites the hour's object in the warehouse.
        permissions = [("run_backfillchunk", "Can replay a backfill hour on a worker")]

    def __str__(self) -> str:
        return f"{self.key} ({self.status})"
