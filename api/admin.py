"""API keys in admin: created with the full key shown once, revoked by an action."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from .models import KEY_TAG, ApiKey


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ["name", "community", "shown_prefix", "created_at", "created_by",
                    "last_used_at", "revoked_at"]
    list_filter = [("revoked_at", admin.EmptyFieldListFilter), "community"]
    search_fields = ["name", "prefix", "community__slug", "community__name"]
    list_select_related = ["community", "created_by"]
    readonly_fields = ["shown_prefix", "created_at", "created_by", "last_used_at", "revoked_at"]
    actions = ["revoke"]

    @admin.display(description="key", ordering="prefix")
    def shown_prefix(self, obj: ApiKey) -> str:
        return f"{KEY_TAG}{obj.prefix}_…" if obj.prefix else "-"

    def get_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> list[str]:
        if obj is None:
            return ["community", "name"]
        return ["community", "name", *self.readonly_fields]

    def get_readonly_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> list[str]:
        # A key belongs to its community for good; only its name may be changed.
        return ["community", *self.readonly_fields] if obj is not None else []

    def has_delete_permission(self, request: HttpRequest, obj: ApiKey | None = None) -> bool:
        return False  # revoke instead: the key's record stays for the audit trail

    def save_model(self, request: HttpRequest, obj: ApiKey, form, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        obj.created_by = request.user
        raw = obj.save_new(timezone.now())
        self.message_user(
            request, f"API key for {obj.community.slug}: {raw} — copy it now, it is not "
                     f"stored and will not be shown again.", messages.WARNING)

    @admin.action(description="Revoke selected API keys", permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        now = timezone.now()
        revoked = sum(key.revoke(now) for key in queryset.select_related("community"))
        self.message_user(request, f"Revoked {revoked} key(s).", messages.SUCCESS)
