"""Admin for settings, runs and the tenant-derived beat rows."""

from __future__ import annotations

import zoneinfo
from typing import Any

from celery.schedules import ParseException
from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_permission_codename
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html
from django_celery_beat.admin import CrontabScheduleAdmin as StockCrontabScheduleAdmin
from django_celery_beat.admin import PeriodicTaskAdmin as StockPeriodicTaskAdmin
from django_celery_beat.admin import PeriodicTaskForm as StockPeriodicTaskForm
from django_celery_beat.models import CrontabSchedule, PeriodicTask

from .bounded_json import BoundedJSONFormField, JSONRefused, loads
from .errors import InvalidJobParams
from .models import AuditEntry, CommunityAutomationSetting, JobRun
from .operations import OperationRefused, trigger
from .registry import all_jobs
from .schedules import is_tenant_task


class RunPermissionMixin:
    """For a ModelAdmin whose actions start work (`@admin.action(permissions=["run"])`).

    Starting work (a job run, a charge, a delivery) is a right of its own: the model declares
    `run_<model>` in its Meta.permissions, and neither view nor change implies it.
    """

    opts: Any

    def has_run_permission(self, request: HttpRequest) -> bool:
        codename = get_permission_codename("run", self.opts)
        return request.user.has_perm(f"{self.opts.app_label}.{codename}")


def job_choices() -> list[tuple[str, str]]:
    return [(spec.name, spec.name) for spec in all_jobs()]


class CommunityAutomationSettingForm(forms.ModelForm):
    job_name = forms.ChoiceField(choices=job_choices)

    class Meta:
        model = CommunityAutomationSetting
        fields = ["job_name", "enabled", "cron_override", "params", "paused_until"]


class ScheduleColumns:
    """Read-only columns shared by the inline and the settings list."""

    @admin.display(description="schedule")
    def schedule(self, obj: CommunityAutomationSetting) -> str:
        if not obj.pk:
            return "-"
        cron = obj.cron
        return f"{cron} ({obj.cron_description()})" if cron else "on demand"

    @admin.display(description="next run")
    def next_run(self, obj: CommunityAutomationSetting) -> str:
        if not obj.pk:
            return "-"
        try:
            fire = obj.next_run(timezone.now())
            local = fire.astimezone(obj.community.tzinfo) if fire else None
        except zoneinfo.ZoneInfoNotFoundError:
            return "-"  # the form is being redisplayed with an invalid timezone
        if fire is None:
            return "-"
        return f"{local:%Y-%m-%d %H:%M %Z} ({fire:%H:%M} UTC)"


class CommunityAutomationSettingInline(ScheduleColumns, admin.TabularInline):
    model = CommunityAutomationSetting
    form = CommunityAutomationSettingForm
    fields = ["job_name", "enabled", "cron_override", "schedule", "next_run", "params"]
    readonly_fields = ["schedule", "next_run"]
    extra = 0


@admin.register(CommunityAutomationSetting)
class CommunityAutomationSettingAdmin(RunPermissionMixin, ScheduleColumns, admin.ModelAdmin):
    form = CommunityAutomationSettingForm
    list_display = ["job_name", "community", "enabled", "schedule", "next_run", "updated_at",
                    "updated_by"]
    list_filter = ["job_name", "enabled", "community"]
    list_editable = ["enabled"]
    search_fields = ["job_name", "community__name", "community__slug"]
    list_select_related = ["community", "updated_by"]
    readonly_fields = ["schedule", "next_run", "updated_at", "updated_by"]
    actions = ["run_now"]

    def save_model(self, request, obj, form, change) -> None:
        obj.updated_by = request.user
        super().save_model(request, obj, form, change)

    @admin.action(description="Run now (manual trigger)", permissions=["run"])
    def run_now(self, request: HttpRequest, queryset: QuerySet) -> None:
        now = timezone.now()
        queued = 0
        for setting in queryset.select_related("community"):
            try:
                trigger(setting.job_name, now=now, community=setting.community)
                queued += 1
            except (InvalidJobParams, OperationRefused) as exc:
                self.message_user(request, f"{setting}: {exc}", messages.ERROR)
        if queued:
            self.message_user(request, f"Queued {queued} run(s); see Job runs.", messages.SUCCESS)


@admin.register(JobRun)
class JobRunAdmin(admin.ModelAdmin):
    list_display = ["id", "job_name", "community", "trigger", "status_badge", "scheduled_for",
                    "started_at", "duration", "attempts", "resumes", "short_error"]
    list_filter = ["job_name", "status", "trigger", "community", "created_at"]
    search_fields = ["job_name", "community__slug", "celery_task_id", "error_message"]
    date_hierarchy = "created_at"
    list_select_related = ["community"]
    list_per_page = 50
    show_full_result_count = False  # COUNT(*) over a large run table on every page is slow

    STATUS_COLOURS = {
        "succeeded": "#2e7d32", "failed": "#c62828", "timed_out": "#ef6c00",
        "skipped": "#757575", "running": "#1565c0", "queued": "#6a1b9a",
    }

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj: JobRun) -> str:
        label = obj.status + (f" ({obj.skip_reason})" if obj.skip_reason else "")
        return format_html('<b style="color:{}">{}</b>', self.STATUS_COLOURS[obj.status], label)

    @admin.display(description="duration", ordering="duration_seconds")
    def duration(self, obj: JobRun) -> str:
        return f"{obj.duration_seconds:.2f}s" if obj.duration_seconds is not None else "-"

    @admin.display(description="error")
    def short_error(self, obj: JobRun) -> str:
        return (obj.error_message[:80] + "…") if len(obj.error_message) > 80 else obj.error_message


class PeriodicTaskForm(StockPeriodicTaskForm):
    """The stock form, answering hostile input with form errors: its clean() reads
    cleaned_data["task"] (a KeyError once the field has failed, e.g. too long) and its
    args/kwargs check parses with json (RecursionError on deep nesting)."""

    def clean(self) -> dict[str, Any]:
        if "task" not in self.cleaned_data and not self.cleaned_data.get("regtask"):
            return forms.ModelForm.clean(self)  # the task field's own error stands
        return super().clean()

    def _clean_json(self, field: str) -> str:
        value = self.cleaned_data[field]
        try:
            loads(value, max_depth=BoundedJSONFormField.max_depth, bound_ints=False)
        except JSONRefused as exc:
            raise forms.ValidationError("Unable to parse JSON: %(reason)s",
                                        params={"reason": str(exc)}) from None
        return value


admin.site.unregister(CrontabSchedule)


@admin.register(CrontabSchedule)
class CrontabScheduleAdmin(StockCrontabScheduleAdmin):
    @admin.display(description="human readable")
    def human_readable(self, obj: CrontabSchedule) -> str:
        # A form with errors is shown again with its invalid values on `obj`, which celery's
        # parser refuses with ParseException (not the ValueError the model catches).
        try:
            return obj.human_readable
        except (ParseException, ValueError):
            return "(invalid)"


admin.site.unregister(PeriodicTask)


@admin.register(PeriodicTask)
class PeriodicTaskAdmin(StockPeriodicTaskAdmin):
    """Beat rows; those derived from community settings are read-only here."""

    form = PeriodicTaskForm

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        if obj is not None and is_tenant_task(obj):
            return False
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        if obj is not None and is_tenant_task(obj):
            return False
        return super().has_delete_permission(request, obj)

    def _only_hand_made(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        tenant_rows = [task.pk for task in queryset if is_tenant_task(task)]
        if tenant_rows:
            self.message_user(
                request,
                f"{len(tenant_rows)} community job row(s) left unchanged: change those through "
                "the community's automation settings.",
                messages.WARNING,
            )
        return queryset.exclude(pk__in=tenant_rows)

    # The stock actions declare no permission, and overriding them drops their decorator:
    # each is declared again here. Running a hand-made row needs the right to change it, as
    # whoever may change a row can make it fire within the minute anyway.
    @admin.action(description="Enable selected tasks", permissions=["change"])
    def enable_tasks(self, request, queryset):
        return super().enable_tasks(request, self._only_hand_made(request, queryset))

    @admin.action(description="Disable selected tasks", permissions=["change"])
    def disable_tasks(self, request, queryset):
        return super().disable_tasks(request, self._only_hand_made(request, queryset))

    @admin.action(description="Toggle activity of selected tasks", permissions=["change"])
    def toggle_tasks(self, request, queryset):
        return super().toggle_tasks(request, self._only_hand_made(request, queryset))

    @admin.action(description="Run selected tasks", permissions=["change"])
    def run_tasks(self, request, queryset):
        return super().run_tasks(request, self._only_hand_made(request, queryset))

    def delete_queryset(self, request, queryset):
        return super().delete_queryset(request, self._only_hand_made(request, queryset))


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin):
    """The audit trail, read-only: entries are written by the code paths that change things."""

    list_display = ["at", "actor_label", "action", "community", "job_name", "target"]
    list_filter = ["action", "community", "at"]
    search_fields = ["actor_label", "target", "job_name"]
    date_hierarchy = "at"
    list_select_related = ["community"]
    show_full_result_count = False
    readonly_fields = ["at", "actor", "actor_label", "action", "community", "job_name", "target",
                       "before", "after"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False
