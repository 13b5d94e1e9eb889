"""Billing admin pages render, and an invoice can be retried by hand from its list."""

from __future__ import annotations

import pytest
from django.urls import reverse

from automation.models import JobRun
from billing.models import Invoice, PaymentAttempt, StripeEvent, Subscription

from .conftest import past_due


@pytest.mark.parametrize("model", [Subscription, Invoice, PaymentAttempt, StripeEvent])
def test_changelists_render(admin_client, community, payer, model) -> None:
    past_due(community, payer, "in_acme_1", retry_number=2)
    url = reverse(f"admin:billing_{model._meta.model_name}_changelist")
    assert admin_client.get(url).status_code == 200


def test_invoice_page_shows_attempts_and_retry_action_queues_a_run(admin_client, community,
                                                                    payer) -> None:
    invoice = past_due(community, payer, "in_acme_1", retry_number=2)
    page = admin_client.get(reverse("admin:billing_invoice_change", args=[invoice.pk]))
    assert page.status_code == 200
    assert invoice.attempts.get().idempotency_key in page.content.decode()

    response = admin_client.post(reverse("admin:billing_invoice_changelist"), {
        "action": "retry_now", "_selected_action": [invoice.pk]}, follow=True)
    assert "Queued 1 retry run(s)" in response.content.decode()
    run = JobRun.objects.get()
    assert (run.job_name, run.community, run.params, run.queue) == (
        "subscription_delinquency_retry", community,
        {"invoice": "in_acme_1", "retry_now": True}, "billing")
