"""The demo seed gives the dunning job visible work, and seeding twice adds nothing."""

from __future__ import annotations

import random

from billing.demo import seed
from billing.jobs.subscription_delinquency_retry import subscription_delinquency_retry as job
from billing.models import Invoice, PaymentAttempt, Subscription
from communities.models import Member

from .conftest import SLOT


def test_seed_is_idempotent_and_the_job_has_work(community, admin, stripe_sandbox) -> None:
    for n in range(1, 5):
        Member.objects.create(community=community, email=f"m{n}@acme.example",
                              display_name=f"Member {n}")
    seed(community, SLOT, random.Random("acme"))
    counts = (Subscription.objects.count(), Invoice.objects.count(),
              PaymentAttempt.objects.count())
    seed(community, SLOT, random.Random("acme"))
    assert (Subscription.objects.count(), Invoice.objects.count(),
            PaymentAttempt.objects.count()) == counts == (5, 5, 4)

    # The sandbox is not configured: it decides by the invoice ids, as in the demo.
    summary = job(community, SLOT)
    assert (summary["due"], summary["recovered"], summary["declined"], summary["gave_up"],
            summary["reminders"]) == (4, 2, 2, 1, 1)
    assert Subscription.objects.get(stripe_subscription_id="sub_demo_acme_4").status == \
        Subscription.Status.UNPAID
