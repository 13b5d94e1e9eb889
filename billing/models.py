"""Subscriptions, their Stripe invoices, our dunning attempts, and processed Stripe events.

State comes from two directions: Stripe webhooks (billing/webhooks.py) and our own dunning
job (billing/dunning.py). `stripe_state_at` on a subscription or invoice is the time of the
newest change applied to it, so an older webhook delivered late never overwrites it.
"""

from __future__ import annotations

from django.db import models

from communities.models import Community, Member


class Subscription(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        PAST_DUE = "past_due", "Past due"
        UNPAID = "unpaid", "Unpaid"
        CANCELED = "canceled", "Canceled"

    community = models.ForeignKey(
        Community, on_delete=models.CASCADE, related_name="subscriptions"
    )
    member = models.ForeignKey(
        Member, null=True, blank=True, on_delete=models.SET_NULL, related_name="subscriptions",
        help_text="The paying member; empty for a community-level plan (admins are billed).",
    )
    stripe_customer_id = models.CharField(max_length=255)
    stripe_subscription_id = models.CharField(max_length=255, unique=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    plan = models.CharField(max_length=100)
    amount_cents = models.PositiveIntegerField(help_text="Price per period, in cents.")
    currency = models.CharField(max_length=3, default="usd")
    current_period_start = models.DateTimeField(null=True, blank=True)
    current_period_end = models.DateTimeField(null=True, blank=True)
    stripe_state_at = models.DateTimeField(
        null=True, blank=True,
        help_text="Time of the newest change applied; older Stripe events are ignored.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["community", "stripe_subscription_id"]
        indexes = [models.Index(fields=["community", "status"])]

    def __str__(self) -> str:
        return f"{self.plan} {self.stripe_subscription_id} ({self.status})"

    @property
    def is_community_level(self) -> bool:
        return self.member_id is None


class Invoice(models.Model):
    class Status(models.TextChoices):
        OPEN = "open", "Open"
        PAID = "paid", "Paid"
        UNCOLLECTIBLE = "uncollectible", "Uncollectible"
        VOID = "void", "Void"

    subscription = models.ForeignKey(
        Subscription, on_delete=models.CASCADE, related_name="invoices"
    )
    stripe_invoice_id = models.CharField(max_length=255, unique=True)
    amount_due = models.PositiveIntegerField(help_text="In cents.")
    currency = models.CharField(max_length=3, default="usd")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    attempt_count = models.PositiveSmallIntegerField(
        default=0, help_text="Payment attempts so far (Stripe's own and our dunning retries)."
    )
    first_failed_at = models.DateTimeField(
        null=True, blank=True, help_text="First failed payment: the dunning schedule's origin."
    )
    next_retry_at = models.DateTimeField(
        null=True, blank=True, help_text="When dunning retries next; empty: no retry planned."
    )
    paid_at = models.DateTimeField(null=True, blank=True)
    gave_up_at = models.DateTimeField(
        null=True, blank=True, help_text="When the policy's last retry was declined."
    )
    last_error = models.TextField(blank=True)
    recovered_amount_cents = models.PositiveIntegerField(
        default=0, help_text="Collected by a dunning retry (recovered revenue)."
    )
    recovered_at = models.DateTimeField(null=True, blank=True)
    stripe_state_at = models.DateTimeField(
        null=True, blank=True,
        help_text="Time of the newest change applied; older Stripe events are ignored.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status", "next_retry_at"])]
        # A retry charges the customer's card: not implied by editing the invoice.
        permissions = [("run_invoice", "Can retry an invoice's payment now (charges the card)")]

    def __str__(self) -> str:
        return f"{self.stripe_invoice_id} {self.amount_due / 100:.2f} {self.currency} " \
               f"({self.status})"


class PaymentAttempt(models.Model):
    """One dunning retry of an invoice at one slot; the row is the claim on that slot.

    It is written before Stripe is called, so a crash or re-run finds it and sends the same
    idempotency key again: Stripe replays the first result instead of charging twice.
    """

    class Outcome(models.TextChoices):
        PENDING = "pending", "Pending (sent or about to be sent; result not recorded)"
        SUCCEEDED = "succeeded", "Succeeded"
        CARD_DECLINED = "card_declined", "Card declined"
        ERROR = "error", "Error (refused by Stripe; needs attention)"

    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="attempts")
    slot = models.DateTimeField(help_text="The retry slot (the invoice's next_retry_at).")
    number = models.PositiveSmallIntegerField(help_text="Dunning retry number, from 1.")
    idempotency_key = models.CharField(max_length=255, unique=True)
    outcome = models.CharField(max_length=16, choices=Outcome.choices, default=Outcome.PENDING)
    decline_code = models.CharField(max_length=64, blank=True)
    message = models.TextField(blank=True)
    stripe_charge_id = models.CharField(max_length=255, blank=True)
    stripe_payment_intent_id = models.CharField(max_length=255, blank=True)
    amount_cents = models.PositiveIntegerField(
        default=0, help_text="Collected by this attempt (recovered revenue)."
    )
    sends = models.PositiveSmallIntegerField(
        default=0, help_text="Times the claim was handed out to call Stripe; more than one "
                             "means a resend of the same key (after a crash or an error).",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["invoice", "slot"]
        constraints = [
            models.UniqueConstraint(fields=["invoice", "slot"],
                                    name="payment_attempt_once_per_slot")
        ]
        indexes = [models.Index(fields=["outcome"])]

    def __str__(self) -> str:
        return f"{self.idempotency_key} ({self.outcome})"


class StripeEvent(models.Model):
    """A signed webhook event we received: processed ones make a redelivery a no-op; rejected
    ones (signed but unreadable) are kept with the reason, for inspection."""

    class Outcome(models.TextChoices):
        APPLIED = "applied", "Applied"
        STALE = "stale", "Stale (older than the state held)"
        IGNORED = "ignored", "Ignored"
        REJECTED = "rejected", "Rejected (signed, but could not be processed)"

    event_id = models.CharField(
        max_length=255, blank=True,
        help_text="Stripe's evt_ id; for a rejected event as read, or empty if unreadable.")
    type = models.CharField(max_length=100, blank=True)
    object_id = models.CharField(max_length=255, blank=True)
    created = models.DateTimeField(
        null=True, blank=True,
        help_text="When Stripe created the event; empty for a rejected event without a "
                  "usable time.")
    livemode = models.BooleanField(default=False)
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    detail = models.TextField(blank=True, help_text="What was done, or why it was rejected.")
    payload = models.JSONField(null=True, blank=True, help_text="The event, once processed.")
    body = models.TextField(
        blank=True, help_text="A rejected event's body as received (NUL shown as U+FFFD).")
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-received_at"]
        indexes = [models.Index(fields=["type", "created"])]
        constraints = [
            # Rejected deliveries do not count: the same event, redelivered readable (or
            # after a fix), is still applied once.
            models.UniqueConstraint(fields=["event_id"], condition=~models.Q(outcome="rejected"),
                                    name="stripe_event_processed_once"),
        ]

    def __str__(self) -> str:
        return f"{self.event_id or '(no id)'} {self.type} ({self.outcome})"
