"""Demo billing: subscriptions with past-due invoices due now, for the dunning job.

Run the demo against the local Stripe sandbox (`python -m billing.sandbox --port 8098`,
STRIPE_API_BASE=http://127.0.0.1:8098, any STRIPE_API_KEY): it decides outcomes by the
invoice id, so ids containing "decline" or "insufficient" are declined and the others pay.
Per community: one healthy subscription, two invoices that will be recovered (one on its
second retry, for the community-level plan), one that is declined (reminder, next retry in
two days) and one on the policy's last retry that is declined (subscription unpaid, notices).
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from communities.models import Community, Member

from .dunning import idempotency_key, retry_days
from .models import Invoice, PaymentAttempt, Subscription

PLANS = [("Supporter", 500), ("Member", 1200), ("Patron", 2500), ("Founder", 9900)]


def _subscription(community: Community, n: int, member: Member | None, status: str,
                  rng: random.Random, now: datetime) -> Subscription:
    plan, amount = ("Community Pro", 4900) if member is None else rng.choice(PLANS)
    subscription, _ = Subscription.objects.get_or_create(
        stripe_subscription_id=f"sub_demo_{community.slug}_{n}",
        defaults={
            "community": community, "member": member, "status": status, "plan": plan,
            "amount_cents": amount, "currency": "usd",
            "stripe_customer_id": f"cus_demo_{community.slug}_{n}",
            "current_period_start": now - timedelta(days=10),
            "current_period_end": now + timedelta(days=20),
        },
    )
    return subscription


def _past_due_invoice(subscription: Subscription, stripe_id: str, now: datetime,
                      days: list[int], retry_number: int) -> Invoice:
    """An open invoice whose retry `retry_number` (from 1) fell due ten minutes ago."""
    first_failed = now - timedelta(days=days[retry_number - 1], minutes=10)
    invoice, created = Invoice.objects.get_or_create(
        stripe_invoice_id=stripe_id,
        defaults={
            "subscription": subscription, "amount_due": subscription.amount_cents,
            "currency": subscription.currency, "status": Invoice.Status.OPEN,
            "attempt_count": retry_number, "first_failed_at": first_failed,
            "next_retry_at": first_failed + timedelta(days=days[retry_number - 1]),
            "last_error": "card_declined: Your card was declined.",
        },
    )
    if created:
        # The earlier retries of the policy, declined.
        for number in range(1, retry_number):
            slot = first_failed + timedelta(days=days[number - 1])
            PaymentAttempt.objects.get_or_create(
                idempotency_key=idempotency_key(invoice, slot),
                defaults={"invoice": invoice, "slot": slot, "number": number,
                          "outcome": PaymentAttempt.Outcome.CARD_DECLINED,
                          "decline_code": "generic_decline", "sends": 1,
                          "message": "Your card was declined.", "finished_at": slot},
            )
    return invoice


def seed(community: Community, now: datetime, rng: random.Random) -> None:
    days = retry_days()
    members = list(community.members.filter(role=Member.Role.MEMBER, is_active=True)
                   .order_by("pk")[:4])
    members += [None] * (4 - len(members))  # fewer members: community-level plans instead
    slug = community.slug
    past_due = Subscription.Status.PAST_DUE

    healthy = _subscription(community, 1, members[0], Subscription.Status.ACTIVE, rng, now)
    Invoice.objects.get_or_create(
        stripe_invoice_id=f"in_demo_{slug}_1",
        defaults={"subscription": healthy, "amount_due": healthy.amount_cents,
                  "currency": healthy.currency, "status": Invoice.Status.PAID,
                  "attempt_count": 1, "paid_at": now - timedelta(days=10)},
    )
    recovers = _subscription(community, 2, members[1], past_due, rng, now)
    _past_due_invoice(recovers, f"in_demo_{slug}_2", now, days, retry_number=1)
    declines = _subscription(community, 3, members[2], past_due, rng, now)
    _past_due_invoice(declines, f"in_demo_{slug}_3_decline", now, days, retry_number=1)
    last_try = _subscription(community, 4, members[3], past_due, rng, now)
    _past_due_invoice(last_try, f"in_demo_{slug}_4_insufficient", now, days,
                      retry_number=len(days))
    community_plan = _subscription(community, 5, None, past_due, rng, now)
    _past_due_invoice(community_plan, f"in_demo_{slug}_5", now, days,
                      retry_number=min(2, len(days)))
