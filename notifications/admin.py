from django.contrib import admin, messages
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest

from automation.admin import RunPermissionMixin

from .models import DigestDelivery, EmailBounce, EmailSuppression, Notification, PushDevice


@admin.register(Notification)
class NotificationAdmin(RunPermissionMixin, admin.ModelAdmin):
    list_display = ["kind", "member", "community", "channel", "status", "attempts",
                    "created_at", "sent_at", "last_error"]
    list_filter = ["status", "channel", "kind", "community"]
    search_fields = ["kind", "subject", "dedup_key", "member__email"]
    list_select_related = ["member", "community"]
    date_hierarchy = "created_at"
    readonly_fields = ["community", "member", "channel", "kind", "dedup_key", "attempts",
                       "created_at", "sent_at", "last_error"]
    actions = ["requeue"]

    @admin.action(description="Deliver again (failed/pending → pending, queue delivery)",
                  permissions=["run"])
    def requeue(self, request: HttpRequest, queryset: QuerySet[Notification]) -> None:
        from .tasks import deliver_notification

        ids = list(queryset.filter(status__in=[Notification.Status.FAILED,
                                               Notification.Status.PENDING])
                   .values_list("pk", flat=True))
        Notification.objects.filter(pk__in=ids).update(status=Notification.Status.PENDING,
                                                       attempts=0)
        for pk in ids:
            transaction.on_commit(lambda pk=pk: deliver_notification.delay(pk))
        self.message_user(request, f"{len(ids)} notification(s) queued for delivery.",
                          messages.SUCCESS)


@admin.register(EmailBounce)
class EmailBounceAdmin(admin.ModelAdmin):
    list_display = ["email", "kind", "smtp_code", "community", "source", "occurred_at",
                    "message"]
    list_filter = ["kind", "community", "source"]
    search_fields = ["email", "message"]
    list_select_related = ["community"]
    date_hierarchy = "occurred_at"
    readonly_fields = ["community", "member", "email", "kind", "smtp_code", "message", "source",
                       "occurred_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # every field is read-only: bounces are recorded, not typed in


@admin.register(EmailSuppression)
class EmailSuppressionAdmin(admin.ModelAdmin):
    """Deleting a suppression lets email go to the address again (after the mailbox is fixed)."""

    list_display = ["email", "reason", "community", "created_at"]
    list_filter = ["reason", "community"]
    search_fields = ["email"]
    list_select_related = ["community"]
    readonly_fields = ["bounce", "created_at"]


@admin.register(PushDevice)
class PushDeviceAdmin(admin.ModelAdmin):
    list_display = ["member", "platform", "is_active", "created_at", "last_success_at",
                    "deactivated_reason"]
    list_filter = ["is_active", "platform", "member__community"]
    search_fields = ["member__email", "token"]
    list_select_related = ["member"]
    raw_id_fields = ["member"]
    readonly_fields = ["created_at", "last_success_at", "deactivated_at", "deactivated_reason"]
    actions = ["reactivate"]

    @admin.action(description="Reactivate selected devices", permissions=["change"])
    def reactivate(self, request: HttpRequest, queryset: QuerySet[PushDevice]) -> None:
        count = queryset.update(is_active=True, deactivated_at=None, deactivated_reason="")
        self.message_user(request, f"{count} device(s) reactivated.", messages.SUCCESS)


@admin.register(DigestDelivery)
class DigestDeliveryAdmin(admin.ModelAdmin):
    """The digest ledger; read-only except for giving a row back to the next run."""

    list_display = ["local_date", "community", "member", "channel", "status", "attempts",
                    "latency_ms", "sent_at", "last_error"]
    list_filter = ["status", "channel", "local_date", "community"]
    search_fields = ["member__email"]
    list_select_related = ["community", "member"]
    date_hierarchy = "local_date"
    readonly_fields = [f.name for f in DigestDelivery._meta.fields]
    actions = ["allow_retry"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    # A change of the ledger row; the send itself is made by the next run of that day.
    @admin.action(description="Allow another attempt (failed → failed with 0 attempts)",
                  permissions=["change"])
    def allow_retry(self, request: HttpRequest, queryset: QuerySet[DigestDelivery]) -> None:
        count = queryset.filter(status=DigestDelivery.Status.FAILED).update(attempts=0)
        self.message_user(request, f"{count} ledger row(s) will be retried by the next run "
                                   "of their day.", messages.SUCCESS)
