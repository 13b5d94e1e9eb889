"""Dunning: retry past-due invoices by the policy, claiming each retry slot before paying.

One retry of an invoice goes claim → pay → record:
- `claim_attempt` writes (and commits) the PaymentAttempt for the invoice's current slot
  with its idempotency key, or hands back the pending attempt an earlier run left behind;
- the caller sends that key to Stripe (billing.stripe_gateway.pay_invoice);
- `record_result` / `record_unavailable` / `record_refused` store what Stripe said.
A crash anywhere leaves either no claim (nothing was sent) or a pending claim, which the next
run resends with the same key, so Stripe replays its first answer: one charge per slot.

Policy: settings.BILLING_RETRY_DAYS are days after the first failed payment (default 1, 3,
5, 7). Retry n is due at first_failed_at + days[n-1]; after the last one is declined the
invoice gets no further retry and its subscription becomes `unpaid` (not canceled: a later
payment, e.g. the member fixing their card, can still reactivate it; canceling is a
decision for the community's admins, who are told).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import pairwise

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet

from communities.models import Community
from notifications.outbox import notify_admins, notify_member

from .models import Invoice, PaymentAttempt, Subscription
from .stripe_gateway import PaymentResult


class DunningPolicyError(ValueError):
    """settings.BILLING_RETRY_DAYS is not a usable schedule."""


def retry_days() -> list[int]:
    """The policy from settings, checked: positive whole days, strictly increasing."""
    days = list(settings.BILLING_RETRY_DAYS)
    if not days:
        raise DunningPolicyError("BILLING_RETRY_DAYS is empty; give e.g. 1,3,5,7")
    if any(not isinstance(d, int) or isinstance(d, bool) or d < 1 for d in days):
        raise DunningPolicyError(f"BILLING_RETRY_DAYS must be positive whole days, not {days}")
    if any(b <= a for a, b in pairwise(days)):
        raise DunningPolicyError(f"BILLING_RETRY_DAYS must be strictly increasing, not {days}")
    return days


def first_retry_at(first_failed_at: datetime, days: list[int]) -> datetime:
    return first_failed_at + timedelta(days=days[0])


def retry_after(origin: datetime, number: int, days: list[int]) -> datetime | None:
    """When retry number+1 is due after retry `number` was declined; None: policy exhausted."""
    if number >= len(days):
        return None
    return origin + timedelta(days=days[number])


def idempotency_key(invoice: Invoice, slot: datetime) -> str:
    return f"dunning:{invoice.stripe_invoice_id}:{slot.astimezone(UTC).isoformat()}"


def money(cents: int, currency: str) -> str:
    return f"{cents / 100:,.2f} {currency.upper()}"


# --- what is due -------------------------------------------------------------------------


def due_invoices(community: Community, now: datetime) -> QuerySet[Invoice]:
    return (
        Invoice.objects.filter(subscription__community=community, status=Invoice.Status.OPEN,
                               next_retry_at__lte=now)
        .exclude(subscription__status=Subscription.Status.CANCELED)
        .order_by("next_retry_at", "pk")
    )


def pending_invoices(community: Community) -> QuerySet[Invoice]:
    """Invoices with a claim whose result was never recorded (crash, outage): resend first."""
    return (
        Invoice.objects.filter(subscription__community=community,
                               attempts__outcome=PaymentAttempt.Outcome.PENDING)
        .distinct()
        .order_by("pk")
    )


# --- claim -------------------------------------------------------------------------------


def claim_attempt(invoice_pk: int, now: datetime, *, force: bool = False
                  ) -> PaymentAttempt | None:
    """The attempt to send now for this invoice, committed before any call to Stripe.

    An unfinished (pending) attempt is handed back as is: resending its key is what makes a
    crash harmless. Otherwise a new attempt is written for the invoice's due slot; `force`
    (a retry by hand) makes an open invoice due at `now`. None: nothing to send.
    """
    with transaction.atomic():
        invoice = (Invoice.objects.select_for_update(of=("self",))
                   .select_related("subscription").get(pk=invoice_pk))
        attempt = invoice.attempts.filter(outcome=PaymentAttempt.Outcome.PENDING) \
            .order_by("slot").first()
        if attempt is None:
            if (invoice.status != Invoice.Status.OPEN
                    or invoice.subscription.status == Subscription.Status.CANCELED):
                return None
            if force and (invoice.next_retry_at is None or invoice.next_retry_at > now):
                invoice.next_retry_at = now
                invoice.save(update_fields=["next_retry_at", "updated_at"])
            slot = invoice.next_retry_at
            if slot is None or slot > now or invoice.attempts.filter(slot=slot).exists():
                return None
            declined = invoice.attempts.filter(
                outcome=PaymentAttempt.Outcome.CARD_DECLINED).count()
            attempt = PaymentAttempt(invoice=invoice, slot=slot, number=declined + 1,
                                     idempotency_key=idempotency_key(invoice, slot))
        attempt.sends += 1
        attempt.save()
        attempt.invoice = invoice
        return attempt


# --- record ------------------------------------------------------------------------------


@dataclass
class Recorded:
    outcome: str  # succeeded | card_declined
    amount_cents: int = 0
    next_retry_at: datetime | None = None
    gave_up: bool = False
    reminders: int = 0
    notices: int = 0


def _locked(attempt_pk: int) -> tuple[PaymentAttempt, Invoice]:
    attempt = PaymentAttempt.objects.select_for_update().get(pk=attempt_pk)
    invoice = (Invoice.objects.select_for_update(of=("self",))
               .select_related("subscription__member", "subscription__community")
               .get(pk=attempt.invoice_id))
    return attempt, invoice


def _later(current: datetime | None, now: datetime) -> datetime:
    return max(current, now) if current else now


def record_result(attempt: PaymentAttempt, result: PaymentResult, now: datetime,
                  days: list[int]) -> Recorded | None:
    """Store Stripe's answer (success or decline) once; None if already recorded."""
    with transaction.atomic():
        attempt, invoice = _locked(attempt.pk)
        if attempt.outcome != PaymentAttempt.Outcome.PENDING:
            return None
        attempt.stripe_charge_id = result.charge_id
        attempt.stripe_payment_intent_id = result.payment_intent_id
        attempt.finished_at = now
        invoice.attempt_count += 1
        invoice.stripe_state_at = _later(invoice.stripe_state_at, now)
        if result.succeeded:
            recorded = _record_success(attempt, invoice, now)
        else:
            recorded = _record_decline(attempt, invoice, result, now, days)
        attempt.save()
        invoice.save()
        return recorded


def _record_success(attempt: PaymentAttempt, invoice: Invoice, now: datetime) -> Recorded:
    amount = invoice.amount_due
    attempt.outcome = PaymentAttempt.Outcome.SUCCEEDED
    attempt.amount_cents = amount
    attempt.message = ""
    invoice.status = Invoice.Status.PAID
    invoice.paid_at = invoice.paid_at or now
    invoice.recovered_amount_cents = amount
    invoice.recovered_at = now
    invoice.next_retry_at = None
    invoice.last_error = ""
    subscription = invoice.subscription
    still_open = subscription.invoices.filter(status=Invoice.Status.OPEN) \
        .exclude(pk=invoice.pk).exists()
    if subscription.status in (Subscription.Status.PAST_DUE, Subscription.Status.UNPAID) \
            and not still_open:
        subscription.status = Subscription.Status.ACTIVE
        subscription.stripe_state_at = _later(subscription.stripe_state_at, now)
        subscription.save(update_fields=["status", "stripe_state_at", "updated_at"])
    return Recorded(outcome=attempt.outcome, amount_cents=amount)


def _record_decline(attempt: PaymentAttempt, invoice: Invoice, result: PaymentResult,
                    now: datetime, days: list[int]) -> Recorded:
    attempt.outcome = PaymentAttempt.Outcome.CARD_DECLINED
    attempt.decline_code = result.decline_code[:64]
    attempt.message = result.message
    invoice.last_error = f"{result.decline_code}: {result.message}"
    recorded = Recorded(outcome=attempt.outcome)
    if invoice.status != Invoice.Status.OPEN or invoice.next_retry_at != attempt.slot:
        # The invoice moved on while this claim was pending (paid, voided, rescheduled).
        return recorded
    origin = invoice.first_failed_at or attempt.slot
    invoice.first_failed_at = origin
    recorded.next_retry_at = retry_after(origin, attempt.number, days)
    invoice.next_retry_at = recorded.next_retry_at
    if recorded.next_retry_at is not None:
        recorded.reminders = _send_reminder(invoice, attempt, result)
        return recorded
    invoice.gave_up_at = now
    recorded.gave_up = True
    subscription = invoice.subscription
    if subscription.status != Subscription.Status.CANCELED:
        subscription.status = Subscription.Status.UNPAID
        subscription.stripe_state_at = _later(subscription.stripe_state_at, now)
        subscription.save(update_fields=["status", "stripe_state_at", "updated_at"])
    recorded.notices = _send_gave_up(invoice, attempt, result)
    return recorded


def record_unavailable(attempt: PaymentAttempt, message: str) -> None:
    """Stripe could not answer: the claim stays pending, to be resent with the same key."""
    invoice = attempt.invoice
    PaymentAttempt.objects.filter(pk=attempt.pk).update(message=message[:2000])
    Invoice.objects.filter(pk=invoice.pk).update(last_error=message[:2000])


def record_refused(attempt: PaymentAttempt, message: str, now: datetime) -> None:
    """Stripe refused the request itself: no more automatic retries; a person decides."""
    with transaction.atomic():
        attempt, invoice = _locked(attempt.pk)
        if attempt.outcome != PaymentAttempt.Outcome.PENDING:
            return
        attempt.outcome = PaymentAttempt.Outcome.ERROR
        attempt.message = message
        attempt.finished_at = now
        attempt.save()
        invoice.last_error = message
        if invoice.next_retry_at == attempt.slot:
            invoice.next_retry_at = None
        invoice.save()


# --- notices -----------------------------------------------------------------------------


def _notify_payer(subscription: Subscription, **notice) -> int:
    """The paying member; a community-level plan (or a member gone) is the admins' to pay."""
    member = subscription.member
    if member is not None and member.is_active:
        return int(notify_member(member, **notice)[1])
    return notify_admins(subscription.community, **notice)


def _send_reminder(invoice: Invoice, attempt: PaymentAttempt, result: PaymentResult) -> int:
    subscription = invoice.subscription
    community = subscription.community
    when = invoice.next_retry_at.astimezone(community.tzinfo).strftime("%A %d %B %Y, %H:%M %Z")
    amount = money(invoice.amount_due, invoice.currency)
    return _notify_payer(
        subscription,
        kind="billing.dunning_reminder",
        subject=f"[{community.name}] Your payment of {amount} did not go through",
        body=(f"We could not collect {amount} for your {subscription.plan} subscription "
              f"to {community.name}: {result.message}\n"
              f"We will try again on {when}. Please update your payment method before then "
              f"to keep your membership active."),
        dedup_key=f"billing.dunning_reminder:{invoice.stripe_invoice_id}:{attempt.number}",
        data={"invoice": invoice.stripe_invoice_id, "attempt": attempt.number,
              "decline_code": result.decline_code,
              "next_retry_at": invoice.next_retry_at.isoformat()},
    )


def _send_gave_up(invoice: Invoice, attempt: PaymentAttempt, result: PaymentResult) -> int:
    subscription = invoice.subscription
    community = subscription.community
    amount = money(invoice.amount_due, invoice.currency)
    data = {"invoice": invoice.stripe_invoice_id, "attempt": attempt.number,
            "subscription": subscription.stripe_subscription_id,
            "decline_code": result.decline_code}
    sent = 0
    if subscription.member_id is not None:
        sent += _notify_payer(
            subscription,
            kind="billing.dunning_final",
            subject=f"[{community.name}] Your {subscription.plan} subscription is unpaid",
            body=(f"Our last attempt to collect {amount} for your {subscription.plan} "
                  f"subscription to {community.name} was declined ({result.message}). "
                  f"The subscription is now unpaid. Update your payment method and contact "
                  f"the community's admins to restore it."),
            dedup_key=f"billing.dunning_final:{invoice.stripe_invoice_id}:{attempt.number}",
            data=data,
        )
    payer = subscription.member.email if subscription.member else "the community plan"
    sent += notify_admins(
        community,
        kind="billing.subscription_unpaid",
        subject=f"[{community.name}] Subscription {subscription.stripe_subscription_id} "
                f"is unpaid after {attempt.number} retries",
        body=(f"Invoice {invoice.stripe_invoice_id} ({amount}) for {payer} was declined on "
              f"the dunning policy's last retry ({result.decline_code}: {result.message}). "
              f"The subscription is marked unpaid; cancel it in Stripe or retry the invoice "
              f"by hand once the payment method is fixed."),
        dedup_key=f"billing.subscription_unpaid:{invoice.stripe_invoice_id}:{attempt.number}",
        data=data,
    )
    return sent
