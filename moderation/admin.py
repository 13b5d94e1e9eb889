from django.contrib import admin, messages
from django.db.models import QuerySet
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.html import format_html

from .models import Escalation, Flag, ModerationPolicy


class EscalationStateFilter(admin.SimpleListFilter):
    title = "escalation"
    parameter_name = "escalation"

    def lookups(self, request, model_admin):
        return [("none", "Not escalated"), ("escalated", "Escalated"),
                ("failed", "Has a failed escalation"),
                ("unconfirmed", "Has an unconfirmed escalation")]

    def queryset(self, request, queryset: QuerySet) -> QuerySet:
        value = self.value()
        if value == "none":
            return queryset.filter(escalation_level=0)
        if value == "escalated":
            return queryset.filter(escalation_level__gt=0)
        if value == "failed":
            return queryset.filter(escalations__status=Escalation.Status.FAILED).distinct()
        if value == "unconfirmed":
            return queryset.filter(escalations__status=Escalation.Status.CLAIMED).distinct()
        return queryset


class EscalationInline(admin.TabularInline):
    model = Escalation
    extra = 0
    can_delete = False
    fields = ["level", "status", "destination", "claimed_at", "sent_at", "attempts",
              "slack_status", "error"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Flag)
class FlagAdmin(admin.ModelAdmin):
    list_display = ["id", "community", "severity", "status", "content_link", "reason_short",
                    "created_at", "escalation_level", "escalated_at"]
    list_filter = ["severity", "status", EscalationStateFilter, "escalation_level", "community"]
    search_fields = ["reason", "community__slug"]
    list_select_related = ["community", "post", "comment"]
    raw_id_fields = ["post", "comment", "reporter"]
    readonly_fields = ["target_type", "target_id", "content_link", "escalation_level",
                       "escalated_at"]
    date_hierarchy = "created_at"
    inlines = [EscalationInline]
    actions = ["mark_resolved", "mark_dismissed"]

    @admin.display(description="content")
    def content_link(self, obj: Flag) -> str:
        label = f"{obj.target_type} #{obj.target_id}"
        if obj.content is None:
            return f"{label} (pruned)" if obj.target_id else "-"
        try:
            url = reverse(f"admin:communities_{obj.target_type}_change", args=[obj.target_id])
        except NoReverseMatch:  # the content model has no admin page
            return label
        return format_html('<a href="{}">{}</a>', url, label)

    @admin.display(description="reason")
    def reason_short(self, obj: Flag) -> str:
        return obj.reason[:80]

    def _close(self, request, queryset: QuerySet, status: str) -> None:
        count = queryset.filter(status=Flag.Status.OPEN).update(status=status,
                                                                resolved_at=timezone.now())
        self.message_user(request, f"{count} flags marked {status}.", messages.SUCCESS)

    @admin.action(description="Mark selected open flags resolved", permissions=["change"])
    def mark_resolved(self, request, queryset: QuerySet) -> None:
        self._close(request, queryset, Flag.Status.RESOLVED)

    @admin.action(description="Dismiss selected open flags", permissions=["change"])
    def mark_dismissed(self, request, queryset: QuerySet) -> None:
        self._close(request, queryset, Flag.Status.DISMISSED)


@admin.register(ModerationPolicy)
class ModerationPolicyAdmin(admin.ModelAdmin):
    list_display = ["community", "sla_critical_minutes", "sla_high_minutes",
                    "sla_medium_minutes", "sla_low_minutes", "max_escalation_level",
                    "has_own_channel", "updated_at"]
    search_fields = ["community__slug", "community__name"]
    list_select_related = ["community"]

    @admin.display(boolean=True, description="own Slack channel")
    def has_own_channel(self, obj: ModerationPolicy) -> bool:
        return bool(obj.slack_webhook_url)


@admin.register(Escalation)
class EscalationAdmin(admin.ModelAdmin):
    list_display = ["flag", "level", "status", "destination", "claimed_at", "sent_at",
                    "attempts", "slack_status", "error"]
    list_filter = ["status", "level", "destination"]
    search_fields = ["flag__id", "error"]
    readonly_fields = ["flag", "level", "status", "destination", "claimed_at", "sent_at",
                       "attempts", "slack_status", "slack_response", "error"]
    actions = ["send_again"]

    def has_add_permission(self, request) -> bool:
        return False

    # A change of the ledger row; the post itself is made by the next scheduled run.
    @admin.action(description="Send again on the next run (after checking Slack)",
                  permissions=["change"])
    def send_again(self, request, queryset: QuerySet) -> None:
        # A claimed row's POST may or may not have reached Slack; an operator who checked
        # the channel releases it here and the next run posts it.
        count = queryset.filter(status=Escalation.Status.CLAIMED).update(
            status=Escalation.Status.FAILED, error="released by an operator for re-sending")
        self.message_user(request, f"{count} escalations will be sent on the next run.",
                          messages.SUCCESS)
