"""Stripe webhook events applied to local state, once each and never backwards.

- Idempotent by event id: the StripeEvent row is written in the same transaction as the
  change it causes, so a redelivered event finds the row and changes nothing.
- Idempotent by state: a subscription or invoice remembers the time of the newest change
  applied (`stripe_state_at`); an event created before that is recorded as stale and
  ignored, so a late delivery never overwrites newer state.
- Unknown event types, and objects we do not know, are recorded as ignored (acknowledged:
  Stripe would otherwise redeliver them for days).
- A signed body that cannot be processed (not JSON, nested too deep, NUL characters or values
  out of range, wrong types, missing fields) raises InvalidEvent before anything changes;
  the endpoint keeps it as a rejected StripeEvent (`record_rejected`) and answers 400.

Stripe's own automatic retries should be off for these subscriptions: the dunning job owns
the retry schedule (billing/dunning.py); `invoice.payment_failed` only starts it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import IntegrityError, transaction

from automation.bounded_json import JSONRefused, loads
from automation.input_limits import EARLIEST, LATEST

from .dunning import DunningPolicyError, first_retry_at, retry_days
from .models import Invoice, StripeEvent, Subscription

HANDLED_TYPES = ("invoice.paid", "invoice.payment_failed", "customer.subscription.updated")

# Stripe's events are a dozen levels deep at most; the limit keeps json.loads (recursive in C)
# and the JSON column far from their own limits.
MAX_NESTING = 64
EVENT_TYPE = re.compile(r"[a-z0-9_]+(?:\.[a-z0-9_]+)+", re.ASCII)
_ID_TAIL = r"[A-Za-z0-9_-]{1,250}"  # Stripe ids are prefix_ and letters, digits, _ (demo: -)
EVENT_ID = re.compile(rf"evt_{_ID_TAIL}")
INVOICE_ID = re.compile(rf"in_{_ID_TAIL}")
SUBSCRIPTION_ID = re.compile(rf"sub_{_ID_TAIL}")
MAX_AMOUNT = 2_147_483_647  # the amount columns' (PositiveIntegerField) upper bound

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
    """A Unix time inside the platform's range (2000 to 2099): a huge one would overflow
    datetime here or the dunning arithmetic later."""
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidEvent(f"{field} is not a Unix timestamp")
    if not EARLIEST.timestamp() <= value <= LATEST.timestamp():
        raise InvalidEvent(f"{field} {value} is out of range "
                           f"({EARLIEST:%Y-%m-%d} to {LATEST:%Y-%m-%d})")
    return datetime.fromtimestamp(value, tz=UTC)


def _check_strings(payload: Any) -> None:
    """Refuse strings PostgreSQL cannot store: NUL (U+0000) and lone surrogates (not UTF-8).

    Stripe sends neither; walked with a stack, not recursion.
    """
    stack: list[tuple[str, Any]] = [("", payload)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, dict):
            for key, item in value.items():
                _check_string(key, f"{path}{key[:50]!r} (a key)")
                stack.append((f"{path}{key[:50]}.", item))
        elif isinstance(value, list):
            stack.extend((f"{path}[{i}].", item) for i, item in enumerate(value))
        elif isinstance(value, str):
            _check_string(value, path.rstrip(".") or "payload")


def _check_string(value: str, where: str) -> None:
    if "\x00" in value:
        raise InvalidEvent(f"{where[:200]} contains a NUL character (U+0000)")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidEvent(f"{where[:200]} is not valid Unicode (lone surrogate)") from exc


def parse_payload(text: str) -> Any:
    """The JSON value of a signed body, or InvalidEvent: never a RecursionError, NaN or
    infinity. Its strings are checked by parse_event."""
    try:
        # Integers whole: the envelope and each field the handler reads check their own
        # range, so a rejected event still records its id and the field at fault.
        return loads(text, max_depth=MAX_NESTING, bound_ints=False)
    except JSONRefused as exc:
        raise InvalidEvent(f"payload is not valid JSON: {exc}") from None


def parse_event(payload: Any) -> ParsedEvent:
    """Check the envelope every event shares, and that every string can be stored;
    per-type fields are checked when applied."""
    if not isinstance(payload, dict):
        raise InvalidEvent("payload is not a JSON object")
    _check_strings(payload)
    event_id = _require(payload, "id", str, "")
    if not EVENT_ID.fullmatch(event_id):
        raise InvalidEvent("id is not a Stripe event id (evt_...)")
    event_type = _require(payload, "type", str, "")
    if len(event_type) > 100 or not EVENT_TYPE.fullmatch(event_type):
        # Unknown but well-formed types are acknowledged (ignored); this is not one.
        raise InvalidEvent(f"type {event_type[:100]!r} is not a Stripe event type")
    created = _timestamp(_require(payload, "created", int, ""), "created")
    data = _require(payload, "data", dict, "")
    obj = _require(data, "object", dict, "data.")
    return ParsedEvent(id=event_id, type=event_type, created=created,
                       livemode=payload.get("livemode") is True, object=obj, payload=payload)


def record_rejected(body: str, payload: Any, reason: str) -> StripeEvent:
    """Keep a signed event that could not be processed, with the reason, for inspection.

    Whatever the payload holds, the row can be written: what can be read of the envelope,
    cleaned and cut to the columns, and the body as received (NUL replaced).
    """
    envelope = payload if isinstance(payload, dict) else {}
    data = envelope.get("data")
    obj = data.get("object") if isinstance(data, dict) else None
    try:
        created = _timestamp(envelope.get("created"), "created")
    except InvalidEvent:
        created = None
    return StripeEvent.objects.create(
        event_id=_printable(envelope.get("id"), 255), type=_printable(envelope.get("type"), 100),
        object_id=_printable(obj.get("id") if isinstance(obj, dict) else None, 255),
        created=created, livemode=envelope.get("livemode") is True,
        outcome=StripeEvent.Outcome.REJECTED, detail=_printable(reason, 2000), payload=None,
        body=_printable(body, len(body)),
    )


def _printable(value: Any, limit: int) -> str:
    """`value` if a string, as text PostgreSQL stores: NUL → U+FFFD, lone surrogates → ?."""
    if not isinstance(value, str):
        return ""
    text = value[:limit].replace("\x00", "\ufffd")
    return text.encode("utf-8", "replace").decode("utf-8")


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
        if StripeEvent.objects.filter(event_id=event.id).exclude(
                outcome=StripeEvent.Outcome.REJECTED).exists():
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
    if not INVOICE_ID.fullmatch(stripe_id):
        raise InvalidEvent("data.object.id is not an invoice id (in_...)")
    invoice = Invoice.objects.select_for_update().filter(stripe_invoice_id=stripe_id).first()
    if invoice is not None:
        return invoice
    subscription = Subscription.objects.filter(
        stripe_subscription_id=_invoice_subscription_id(obj)).first()
    if subscription is None:
        return None
    amount = obj.get("amount_due")
    if not isinstance(amount, int) or isinstance(amount, bool) or not 0 <= amount <= MAX_AMOUNT:
        raise InvalidEvent("data.object.amount_due is missing or not a whole number of cents "
                           f"(0 to {MAX_AMOUNT})")
    currency = obj.get("currency") or subscription.currency
    if not isinstance(currency, str) or len(currency) != 3 or not currency.isascii() \
            or not currency.isalpha():
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
    if not SUBSCRIPTION_ID.fullmatch(stripe_id):
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
