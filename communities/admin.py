from django.contrib import admin

from automation.admin import CommunityAutomationSettingInline

from .models import ArchiveBatch, ArchiveRun, Community, Member


@admin.register(Community)
class CommunityAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "timezone", "is_active", "member_count", "created_at"]
    list_filter = ["is_active", "timezone"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [CommunityAutomationSettingInline]

    @admin.display(description="members")
    def member_count(self, obj: Community) -> int:
        return obj.members.count()

    def save_formset(self, request, form, formset, change) -> None:
        for instance in formset.save(commit=False):
            if hasattr(instance, "updated_by_id"):
                instance.updated_by = request.user
            instance.save()
        for obj in formset.deleted_objects:
            obj.delete()
        formset.save_m2m()


@admin.register(Member)
class MemberAdmin(admin.ModelAdmin):
    list_display = ["display_name", "email", "community", "role", "joined_at", "last_active_at",
                    "is_active"]
    list_filter = ["role", "is_active", "community"]
    search_fields = ["display_name", "email"]
    list_select_related = ["community"]


class ArchiveBatchInline(admin.TabularInline):
    model = ArchiveBatch
    extra = 0
    can_delete = False
    fields = ["kind", "seq", "key", "row_count", "bytes", "sha256", "state", "writes",
              "pruned_count", "updated_at"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(ArchiveRun)
class ArchiveRunAdmin(admin.ModelAdmin):
    """Read-only: the archiver's bookkeeping, edited by nobody but the job."""

    list_display = ["community", "run_key", "status", "members_archived", "posts_archived",
                    "comments_archived", "bytes", "object_count", "remaining", "updated_at"]
    list_filter = ["status", "community"]
    search_fields = ["community__slug", "run_key", "prefix"]
    list_select_related = ["community"]
    date_hierarchy = "slot"
    inlines = [ArchiveBatchInline]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(ArchiveBatch)
class ArchiveBatchAdmin(admin.ModelAdmin):
    list_display = ["key", "kind", "state", "row_count", "bytes", "writes", "pruned_count",
                    "updated_at"]
    list_filter = ["state", "kind"]
    search_fields = ["key", "sha256"]
    exclude = ["ids"]  # thousands of ids: shown as a range instead
    readonly_fields = ["run", "kind", "seq", "key", "min_id", "max_id", "row_count", "bytes",
                       "sha256", "state", "writes", "pruned_count", "created_at", "updated_at"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
