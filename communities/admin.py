from django.contrib import admin

from automation.admin import CommunityAutomationSettingInline

from .models import Community, Member


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
