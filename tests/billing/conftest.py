"""Billing fixtures: the local Stripe sandbox the real SDK talks to, and past-due invoices."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from billing.dunning import idempotency_key
from billing.models import Invoice, PaymentAttempt, Subscription
from billing.sandbox import StripeSandbox
from communities.models import Community, Member

ROOT = Path(__file__).resolve().parents[2]
SLOT = datetime(2026, 7, 1, 16, 0, tzinfo=UTC)
# With the default policy (1, 3, 5, 7 days), retry 1 of an invoice that first failed here is
# due at SLOT.
FIRST_FAILED = SLOT - timedelta(days=1)


@pytest.fixture
def stripe_sandbox(settings) -> Iterator[StripeSandbox]:
    """A local Stripe sandbox on a free port; the SDK's API base points at it."""
    sandbox = StripeSandbox(api_key=settings.STRIPE_API_KEY)
    server = sandbox.serve()
    settings.STRIPE_API_BASE = server.url
    settings.BILLING_RETRY_DAYS = [1, 3, 5, 7]
    yield sandbox
    server.stop()


@pytest.fixture
def admin(community: Community) -> Member:
    return Member.objects.create(community=community, email="ada@acme.example",
                                 display_name="Ada Admin", role=Member.Role.ADMIN)


@pytest.fixture
def payer(community: Community) -> Member:
    return Member.objects.create(community=community, email="pat@acme.example",
                                 display_name="Pat Payer")


def past_due(community: Community, member: Member | None, stripe_id: str, *,
             amount: int = 1200, currency: str = "usd", retry_number: int = 1,
             sandbox: StripeSandbox | None = None) -> Invoice:
    """An open invoice whose retry `retry_number` is due at SLOT (earlier ones declined)."""
    days = [1, 3, 5, 7]
    first_failed = SLOT - timedelta(days=days[retry_number - 1])
    subscription = Subscription.objects.create(
        community=community, member=member, plan="Member", amount_cents=amount,
        currency=currency, status=Subscription.Status.PAST_DUE,
        stripe_customer_id=f"cus_{stripe_id}", stripe_subscription_id=f"sub_{stripe_id}",
    )
    invoice = Invoice.objects.create(
        subscription=subscription, stripe_invoice_id=stripe_id, amount_due=amount,
        currency=currency, attempt_count=retry_number, first_failed_at=first_failed,
        next_retry_at=SLOT,
    )
    for number in range(1, retry_number):
        slot = first_failed + timedelta(days=days[number - 1])
        PaymentAttempt.objects.create(
            invoice=invoice, slot=slot, number=number, sends=1,
            idempotency_key=idempotency_key(invoice, slot),
            outcome=PaymentAttempt.Outcome.CARD_DECLINED, decline_code="generic_decline",
            finished_at=slot,
        )
    if sandbox is not None:
        sandbox.configure(stripe_id, amount_due=amount, currency=currency,
                          customer=subscription.stripe_customer_id)
    return invoice
