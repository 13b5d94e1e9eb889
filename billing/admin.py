from django.contrib import admin, messages
from django.db import transaction
from django.utils import timezone

from automation.admin import RunPermissionMixin
from automation.models import JobRun
from automation.registry import get_job
from automation.runs import enqueue_run

from .dunning import money
from .models import Invoice, PaymentAttempt, StripeEvent, Subscription


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


class InvoiceInline(ReadOnlyInline):
    model = Invoice
    fields = ["stripe_invoice_id", "amount_due", "currency", "status", "attempt_count",
              "next_retry_at", "recovered_amount_cents", "last_error"]
    readonly_fields = fields


class PaymentAttemptInline(ReadOnlyInline):
    model = PaymentAttempt
    fields = ["number", "slot", "outcome", "decline_code", "message", "amount_cents",
              "idempotency_key", "sends", "stripe_charge_id", "created_at", "finished_at"]
    readonly_fields = fields


@admin.register(Subscription)
class SubscriptionAdmin(admin.ModelAdmin):
    list_display = ["stripe_subscription_id", "community", "member", "plan", "price",
                    "status", "current_period_end", "stripe_state_at"]
    list_filter = ["status", "community"]
    search_fields = ["stripe_subscription_id", "stripe_customer_id", "member__email",
                     "community__slug"]
    list_select_related = ["community", "member"]
    raw_id_fields = ["member"]
    readonly_fields = ["stripe_state_at", "created_at", "updated_at"]
    inlines = [InvoiceInline]

    @admin.display(description="price")
    def price(self, obj: Subscription) -> str:
        return money(obj.amount_cents, obj.currency)


@admin.register(Invoice)
class InvoiceAdmin(RunPermissionMixin, admin.ModelAdmin):
    list_display = ["stripe_invoice_id", "subscription", "amount", "status", "attempt_count",
                    "first_failed_at", "next_retry_at", "recovered_amount_cents", "gave_up_at",
                    "last_error"]
    list_filter = ["status", "subscription__community"]
    search_fields = ["stripe_invoice_id", "subscription__stripe_subscription_id",
                     "subscription__member__email"]
    list_select_related = ["subscription"]
    raw_id_fields = ["subscription"]
    readonly_fields = ["attempt_count", "paid_at", "gave_up_at", "last_error",
                       "recovered_amount_cents", "recovered_at", "stripe_state_at",
                       "created_at", "updated_at"]
    inlines = [PaymentAttemptInline]
    actions = ["retry_now"]

    @admin.display(description="amount due")
    def amount(self, obj: Invoice) -> str:
        return money(obj.amount_due, obj.currency)

    @admin.action(description="Retry payment now (queues a dunning run per invoice)",
                  permissions=["run"])
    def retry_now(self, request, queryset) -> None:
        spec = get_job("subscription_delinquency_retry")
        queued = 0
        with transaction.atomic():
            for invoice in queryset.select_related("subscription__community"):
                if invoice.status != Invoice.Status.OPEN:
                    self.message_user(request, f"{invoice.stripe_invoice_id} is "
                                      f"{invoice.status}; not retried", messages.WARNING)
                    continue
                enqueue_run(spec, invoice.subscription.community,
                            trigger=JobRun.Trigger.MANUAL, now=timezone.now(),
                            params={"invoice": invoice.stripe_invoice_id, "retry_now": True})
                queued += 1
        if queued:
            self.message_user(request, f"Queued {queued} retry run(s) on the billing queue")


@admin.register(PaymentAttempt)
class PaymentAttemptAdmin(admin.ModelAdmin):
    """The ledger of attempts is evidence of what was sent to Stripe: read only."""

    list_display = ["idempotency_key", "invoice", "number", "slot", "outcome", "decline_code",
                    "amount_cents", "sends", "finished_at"]
    list_filter = ["outcome", "decline_code"]
    search_fields = ["idempotency_key", "invoice__stripe_invoice_id", "stripe_charge_id"]
    list_select_related = ["invoice"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(StripeEvent)
class StripeEventAdmin(admin.ModelAdmin):
    list_display = ["event_id", "type", "object_id", "created", "outcome", "detail",
                    "received_at"]
    list_filter = ["type", "outcome", "livemode"]
    search_fields = ["event_id", "object_id"]
    date_hierarchy = "created"

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
