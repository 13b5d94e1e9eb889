from django.contrib import admin

from .models import Webhook


@admin.register(Webhook)
class WebhookAdmin(admin.ModelAdmin):
    list_display = ["name", "community", "url", "enabled", "consecutive_failures",
                    "last_status_code", "last_latency_ms", "last_checked_at", "disabled_reason"]
    list_filter = ["enabled", "community"]
    search_fields = ["name", "url", "community__slug"]
    list_select_related = ["community"]
    readonly_fields = ["consecutive_failures", "last_status_code", "last_latency_ms",
                       "last_checked_at", "last_checked_for", "last_error", "disabled_at",
                       "created_at", "updated_at"]
