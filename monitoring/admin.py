"""Admin for in-app alerts and missed runs: read-only records, with a resolve action."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from automation import audit

from .models import Alert, MissedRun


def _run_link(run_id: int | None) -> str:
    if not run_id:
        return "—"
    url = reverse("admin:automation_jobrun_change", args=[run_id])
    return format_html('<a href="{}">run {}</a>', url, run_id)


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Alert)
class AlertAdmin(ReadOnlyAdmin):
    list_display = ["kind", "job_name", "community", "state", "count", "first_seen",
                    "last_seen", "last_notified_at", "resolved_at", "last_run"]
    list_filter = ["kind", ("resolved_at", admin.EmptyFieldListFilter), "job_name"]
    search_fields = ["job_name", "community__slug", "last_message"]
    date_hierarchy = "last_seen"
    list_select_related = ["community"]
    readonly_fields = ["last_run"]
    actions = ["mark_resolved"]

    @admin.display(description="state")
    def state(self, obj: Alert) -> str:
        return obj.state

    @admin.display(description="last run")
    def last_run(self, obj: Alert) -> str:
        return _run_link(obj.last_run_id)

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_resolve_permission(self, request: HttpRequest) -> bool:
        # The change form stays read-only (the monitor writes alerts), so has_change_permission
        # is False for everyone; resolving is the one change, granted by change_alert.
        return request.user.has_perm("monitoring.change_alert")

    @admin.action(description="Mark selected open alerts resolved (no notice)",
                  permissions=["resolve"])
    def mark_resolved(self, request: HttpRequest, queryset: QuerySet[Alert]) -> None:
        now = timezone.now()
        ids = list(queryset.filter(resolved_at__isnull=True).values_list("pk", flat=True))
        # Resolved by hand: no "resolved" notice (resolved_notified_at set too).
        queryset.filter(pk__in=ids).update(resolved_at=now, resolved_notified_at=now)
        if ids:
            audit.record("alert.resolve", target=f"alerts {', '.join(map(str, ids))}"[:200],
                         after={"alert_ids": ids})
        messages.success(request, f"{len(ids)} alert(s) resolved.")


@admin.register(MissedRun)
class MissedRunAdmin(ReadOnlyAdmin):
    list_display = ["job_name", "community", "slot", "detected_at", "action", "catch_up_run",
                    "note"]
    list_filter = ["action", "job_name"]
    search_fields = ["job_name", "community__slug"]
    date_hierarchy = "slot"
    list_select_related = ["community"]

    @admin.display(description="catch-up run")
    def catch_up_run(self, obj: MissedRun) -> str:
        return _run_link(obj.catch_up_run_id)
