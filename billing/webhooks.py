"""Stripe webhook events applied to local state, once each and never backwards.

- Idempotent by event id: the StripeEvent row is written in the same transaction as the
  change it causes, so a redelivered event finds the row and changes nothing.
- Idempotent by state: a subscription or invoice remembers the time of the newest change
  applied (`stripe_state_at`); an event created before that is recorded as stale and
  ignored, so a late delivery never overwrites newer state.
- Unknown event types, and objects we do not know, are recorded as ignored (acknowledged:
  Stripe would otherwise redeliver them for days).

Stripe's own automatic retries should be off for these subscriptions: the dunning job owns
the retry schedule (billing/dunning.py); `invoice.payment_failed` only starts it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import IntegrityError, transaction

from .dunning import DunningPolicyError, first_retry_at, retry_days
from .models import Invoice, StripeEvent, Subscription

HANDLED_TYPES = ("invoice.paid", "invoice.payment_failed", "customer.subscription.updated")

# Stripe's subscription statuses onto ours; the rest (incomplete, paused) change nothing.
SUBSCRIPTION_STATUSES = {
    "active": Subscription.Status.ACTIVE,
    "trialing": Subscription.Status.ACTIVE,
    "past_due": Subscription.Status.PAST_DUE,
    "unpaid": Subscription.Status.UNPAID,
    "canceled": Subscription.Status.CANCELED,
    "incomplete_expired": Subscription.Status.CANCELED,
}


class InvalidEvent(ValueError):
    """The payload is signed but not a Stripe event we can read."""


@dataclass(frozen=True)
class ParsedEvent:
    id: str
    type: str
    created: datetime
    livemode: bool
    object: dict[str, Any]
    payload: dict[str, Any]

    @property
    def object_id(self) -> str:
        return str(self.object.get("id") or "")


def _require(mapping: dict, key: str, kind: type, where: str) -> Any:
    value = mapping.get(key)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise InvalidEvent(f"{where}{key} is missing or not a {kind.__name__}")
    return value


def _timestamp(value: Any, field: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidEvent(f"{field} is not a Unix timestamp")
    return datetime.fromtimestamp(value, tz=UTC)


def parse_event(payload: Any) -> ParsedEvent:
    """Check the envelope every event shares; per-type fields are checked when applied."""
    if not isinstance(payload, dict):
        raise InvalidEvent("payload is not a JSON object")
    event_id = _require(payload, "id", str, "")
    if not event_id.startswith("evt_") or len(event_id) > 255:
        raise InvalidEvent("id is not a Stripe event id (evt_...)")
    event_type = _require(payload, "type", str, "")
    created = _timestamp(_require(payload, "created", int, ""), "created")
    data = _require(payload, "data", dict, "")
    obj = _require(data, "object", dict, "data.")
    return ParsedEvent(id=event_id, type=event_type[:100], created=created,
                       livemode=bool(payload.get("livemode")), object=obj, payload=payload)


def handle_event(event: ParsedEvent) -> tuple[str, str]:
    """Apply an event once; returns (outcome, detail). outcome "duplicate": seen before."""
    try:
        with transaction.atomic():
            record = StripeEvent.objects.create(
                event_id=event.id, type=event.type, object_id=event.object_id[:255],
                created=event.created, livemode=event.livemode,
                outcome=StripeEvent.Outcome.IGNORED, payload=event.payload,
            )
            if event.type == "invoice.paid":
                outcome, detail = _invoice_paid(event)
            elif event.type == "invoice.payment_failed":
                outcome, detail = _invoice_payment_failed(event)
            elif event.type == "customer.subscription.updated":
                outcome, detail = _subscription_updated(event)
            else:
                outcome, detail = StripeEvent.Outcome.IGNORED, "event type not handled"
            record.outcome, record.detail = outcome, detail
            record.save(update_fields=["outcome", "detail"])
    except IntegrityError:
        if StripeEvent.objects.filter(event_id=event.id).exists():
            return "duplicate", "event already processed"
        raise
    return outcome, detail


def _is_stale(state_at: datetime | None, event: ParsedEvent) -> bool:
    return state_at is not None and event.created < state_at


def _invoice_subscription_id(obj: dict[str, Any]) -> str:
    """`subscription` on older API versions, `parent.subscription_details` on newer ones."""
    value = obj.get("subscription")
    if isinstance(value, dict):
        value = value.get("id")
    if not value:
        parent = obj.get("parent") or {}
        details = parent.get("subscription_details") if isinstance(parent, dict) else None
        value = details.get("subscription") if isinstance(details, dict) else None
    return value if isinstance(value, str) else ""


def _local_invoice(event: ParsedEvent) -> Invoice | None:
    """The invoice the event is about, locked; created if we know its subscription."""
    obj = event.object
    stripe_id = _require(obj, "id", str, "data.object.")
    if not stripe_id.startswith("in_"):
        raise InvalidEvent("data.object.id is not an invoice id (in_...)")
    invoice = Invoice.objects.select_for_update().filter(stripe_invoice_id=stripe_id).first()
    if invoice is not None:
        return invoice
    subscription = Subscription.objects.filter(
        stripe_subscription_id=_invoice_subscription_id(obj)).first()
    if subscription is None:
        return None
    amount = obj.get("amount_due")
    if not isinstance(amount, int) or isinstance(amount, bool) or amount < 0:
        raise InvalidEvent("data.object.amount_due is missing or not a whole number of cents")
    currency = obj.get("currency") or subscription.currency
    if not isinstance(currency, str) or len(currency) != 3:
        raise InvalidEvent("data.object.currency is not a 3-letter currency code")
    return Invoice.objects.create(subscription=subscription, stripe_invoice_id=stripe_id,
                                  amount_due=amount, currency=currency.lower())


def _invoice_paid(event: ParsedEvent) -> tuple[str, str]:
    invoice = _local_invoice(event)
    if invoice is None:
        return StripeEvent.Outcome.IGNORED, "unknown invoice and subscription"
    if _is_stale(invoice.stripe_state_at, event):
        return StripeEvent.Outcome.STALE, f"invoice state is newer ({invoice.stripe_state_at})"
    transitions = event.object.get("status_transitions") or {}
    paid_at = _timestamp(transitions.get("paid_at") if isinstance(transitions, dict) else None,
                         "data.object.status_transitions.paid_at") or event.created
    invoice.status = Invoice.Status.PAID
    invoice.paid_at = invoice.paid_at or paid_at
    invoice.next_retry_at = None
    invoice.stripe_state_at = event.created
    invoice.save()
    subscription = Subscription.objects.select_for_update().get(pk=invoice.subscription_id)
    detail = f"invoice {invoice.stripe_invoice_id} paid"
    still_open = subscription.invoices.filter(status=Invoice.Status.OPEN).exists()
    if (subscription.status in (Subscription.Status.PAST_DUE, Subscription.Status.UNPAID)
            and not still_open and not _is_stale(subscription.stripe_state_at, event)):
        subscription.status = Subscription.Status.ACTIVE
        subscription.stripe_state_at = event.created
        subscription.save(update_fields=["status", "stripe_state_at", "updated_at"])
        detail += "; subscription active"
    return StripeEvent.Outcome.APPLIED, detail


def _invoice_payment_failed(event: ParsedEvent) -> tuple[str, str]:
    invoice = _local_invoice(event)
    if invoice is None:
        return StripeEvent.Outcome.IGNORED, "unknown invoice and subscription"
    if _is_stale(invoice.stripe_state_at, event):
        return StripeEvent.Outcome.STALE, f"invoice state is newer ({invoice.stripe_state_at})"
    if invoice.status != Invoice.Status.OPEN:
        # Paid, void and uncollectible are final: a failure report cannot reopen them.
        return StripeEvent.Outcome.STALE, f"invoice is already {invoice.status}"
    count = event.object.get("attempt_count")
    if isinstance(count, int) and not isinstance(count, bool) and count >= 0:
        invoice.attempt_count = max(invoice.attempt_count, min(count, 32767))
    error = event.object.get("last_finalization_error") or {}
    invoice.last_error = str(error.get("message") if isinstance(error, dict) and
                             error.get("message") else "payment failed (reported by Stripe)")
    detail = "failure recorded"
    if invoice.first_failed_at is None:
        # The first failure starts the dunning schedule; later ones (including those our
        # own retries cause) leave it alone.
        try:
            days = retry_days()
        except DunningPolicyError as exc:
            days = None
            detail = f"failure recorded; no retry scheduled: {exc}"
        invoice.first_failed_at = event.created
        if days and invoice.next_retry_at is None and invoice.gave_up_at is None:
            invoice.next_retry_at = first_retry_at(event.created, days)
            detail = f"dunning starts; first retry at {invoice.next_retry_at.isoformat()}"
    invoice.stripe_state_at = event.created
    invoice.save()
    subscription = Subscription.objects.select_for_update().get(pk=invoice.subscription_id)
    if subscription.status == Subscription.Status.ACTIVE \
            and not _is_stale(subscription.stripe_state_at, event):
        subscription.status = Subscription.Status.PAST_DUE
        subscription.stripe_state_at = event.created
        subscription.save(update_fields=["status", "stripe_state_at", "updated_at"])
        detail += "; subscription past due"
    return StripeEvent.Outcome.APPLIED, detail


def _period(obj: dict[str, Any], name: str) -> datetime | None:
    """current_period_* sit on the subscription (older API versions) or on its items."""
    if name in obj:
        return _timestamp(obj.get(name), f"data.object.{name}")
    items = obj.get("items")
    data = items.get("data") if isinstance(items, dict) else None
    if isinstance(data, list) and data and isinstance(data[0], dict):
        return _timestamp(data[0].get(name), f"data.object.items.data[0].{name}")
    return None


def _subscription_updated(event: ParsedEvent) -> tuple[str, str]:
    obj = event.object
    stripe_id = _require(obj, "id", str, "data.object.")
    if not stripe_id.startswith("sub_"):
        raise InvalidEvent("data.object.id is not a subscription id (sub_...)")
    status = _require(obj, "status", str, "data.object.")
    start, end = _period(obj, "current_period_start"), _period(obj, "current_period_end")
    subscription = Subscription.objects.select_for_update() \
        .filter(stripe_subscription_id=stripe_id).first()
    if subscription is None:
        return StripeEvent.Outcome.IGNORED, "unknown subscription"
    if _is_stale(subscription.stripe_state_at, event):
        return StripeEvent.Outcome.STALE, \
            f"subscription state is newer ({subscription.stripe_state_at})"
    changes = []
    local = SUBSCRIPTION_STATUSES.get(status)
    if local is not None and local != subscription.status:
        changes.append(f"status {subscription.status} → {local}")
        subscription.status = local
    if start and end:
        if end <= start or end - start > timedelta(days=400):
            raise InvalidEvent("data.object current period is not a plausible billing period")
        subscription.current_period_start, subscription.current_period_end = start, end
    subscription.stripe_state_at = event.created
    subscription.save()
    if local is None:
        changes.append(f"status {status!r} not tracked")
    return StripeEvent.Outcome.APPLIED, "; ".join(changes) or "no status change"
