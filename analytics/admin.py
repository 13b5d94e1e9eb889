from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from automation.admin import RunPermissionMixin

from .models import (
    ActivityEvent,
    Backfill,
    BackfillChunk,
    DailyReport,
    DailyRollup,
    LeaderboardSnapshot,
    LeaderboardStanding,
    MemberBadge,
    MonthlyUsageSummary,
)


@admin.register(ActivityEvent)
class ActivityEventAdmin(admin.ModelAdmin):
    list_display = ["occurred_at", "community", "type", "member", "recorded_at"]
    list_filter = ["type", "community"]
    search_fields = ["member__email", "member__display_name", "community__slug"]
    list_select_related = ["community", "member"]
    date_hierarchy = "occurred_at"
    raw_id_fields = ["member"]
    readonly_fields = ["recorded_at"]


@admin.register(DailyRollup)
class DailyRollupAdmin(admin.ModelAdmin):
    list_display = ["date", "community", "event_type", "count", "distinct_members", "updated_at"]
    list_filter = ["event_type", "community"]
    list_select_related = ["community"]
    date_hierarchy = "date"
    readonly_fields = ["community", "date", "event_type", "count", "distinct_members",
                       "updated_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # every field is read-only: a row can only be computed, not typed in


@admin.register(DailyReport)
class DailyReportAdmin(admin.ModelAdmin):
    list_display = ["date", "community", "events_total", "active_members", "new_members",
                    "generated_at"]
    list_filter = ["community"]
    list_select_related = ["community"]
    date_hierarchy = "date"
    readonly_fields = ["community", "date", "events_total", "active_members", "new_members",
                       "by_type", "generated_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # every field is read-only: a row can only be computed, not typed in


@admin.register(MonthlyUsageSummary)
class MonthlyUsageSummaryAdmin(admin.ModelAdmin):
    list_display = ["month", "community", "events_total", "active_members", "active_days",
                    "new_members", "peak_day", "peak_day_events"]
    list_filter = ["community"]
    list_select_related = ["community"]
    readonly_fields = ["community", "month", "events_total", "active_members", "active_days",
                       "new_members", "peak_day", "peak_day_events", "by_type", "generated_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # every field is read-only: a row can only be computed, not typed in


@admin.register(MemberBadge)
class MemberBadgeAdmin(admin.ModelAdmin):
    list_display = ["period", "member", "badge", "points", "community", "awarded_at"]
    list_filter = ["badge", "period", "community"]
    search_fields = ["member__email", "member__display_name"]
    list_select_related = ["member", "community"]
    raw_id_fields = ["member"]


@admin.register(LeaderboardStanding)
class LeaderboardStandingAdmin(admin.ModelAdmin):
    list_display = ["period", "rank", "member", "points", "events", "active_days",
                    "longest_streak", "current_streak", "badge", "community"]
    list_filter = ["period", "community", "badge"]
    search_fields = ["member__email", "member__display_name"]
    list_select_related = ["member", "community"]
    raw_id_fields = ["member"]
    ordering = ["community", "-period", "rank"]


@admin.register(LeaderboardSnapshot)
class LeaderboardSnapshotAdmin(admin.ModelAdmin):
    list_display = ["period", "community", "members_scored", "events_scanned", "top_n",
                    "redis_key", "computed_at"]
    list_filter = ["community"]
    list_select_related = ["community"]
    readonly_fields = ["period_start", "period_end", "members_scored", "events_scanned", "top",
                       "top_n", "redis_key", "computed_at"]


class BackfillChunkInline(admin.TabularInline):
    model = BackfillChunk
    fields = ["hour", "status", "source_rows", "sink_rows", "attempts", "error", "key"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        # Long windows have thousands of hours; the ones needing attention come first.
        return super().get_queryset(request).exclude(status=BackfillChunk.Status.DONE)

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(Backfill)
class BackfillAdmin(admin.ModelAdmin):
    list_display = ["pk", "community", "start", "end", "status", "chunks_total", "chunks_done",
                    "chunks_failed", "rows_source", "rows_sink", "mismatched", "runs",
                    "last_run_at"]
    list_filter = ["status", "community"]
    list_select_related = ["community"]
    readonly_fields = ["chunks_total", "chunks_done", "chunks_failed", "rows_source",
                       "rows_sink", "reconciled", "mismatched", "mismatches", "runs",
                       "created_at", "last_run_at"]
    inlines = [BackfillChunkInline]


@admin.register(BackfillChunk)
class BackfillChunkAdmin(RunPermissionMixin, admin.ModelAdmin):
    list_display = ["hour", "backfill", "status", "source_rows", "sink_rows", "attempts",
                    "finished_at", "key"]
    list_filter = ["status"]
    search_fields = ["key"]
    list_select_related = ["backfill__community"]
    readonly_fields = ["backfill", "hour", "key", "source_rows", "sink_rows", "attempts",
                       "error", "finished_at"]
    actions = ["replay_on_worker"]

    @admin.action(description="Replay the selected hours on a worker (overwrites their objects)",
                  permissions=["run"])
    def replay_on_worker(self, request: HttpRequest, queryset: QuerySet) -> None:
        from .tasks import replay_chunk_task

        ids = list(queryset.values_list("pk", flat=True))
        for chunk_id in ids:
            replay_chunk_task.apply_async((chunk_id,), {"force": True}, queue="automation")
        self.message_user(request, f"queued {len(ids)} chunk replay(s) on the automation queue",
                          messages.SUCCESS)
