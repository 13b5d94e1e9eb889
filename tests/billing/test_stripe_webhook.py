"""The Stripe webhook endpoint: signatures, idempotency by event id and by state."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest
from django.conf import settings
from django.test import Client

from billing.jobs.subscription_delinquency_retry import subscription_delinquency_retry as job
from billing.models import Invoice, StripeEvent, Subscription
from billing.sandbox import sign_webhook_payload
from communities.models import Community

from .conftest import SLOT, past_due

URL = "/billing/stripe/webhook/"
T0 = 1_780_000_000  # event creation times (Unix), independent of the signing clock


@pytest.fixture
def subscription(community: Community) -> Subscription:
    return Subscription.objects.create(
        community=community, plan="Member", amount_cents=1200, currency="usd",
        stripe_customer_id="cus_1", stripe_subscription_id="sub_1",
        status=Subscription.Status.ACTIVE,
    )


def event(event_id: str, type_: str, obj: dict, created: int = T0) -> dict:
    return {"id": event_id, "object": "event", "type": type_, "created": created,
            "livemode": False, "data": {"object": obj}}


def invoice_obj(**fields) -> dict:
    return {"id": "in_1", "object": "invoice", "subscription": "sub_1", "customer": "cus_1",
            "amount_due": 1200, "currency": "usd", "status": "open", "attempt_count": 1,
            **fields}


def post(payload: dict | bytes, *, secret: str | None = None,
         timestamp: int | None = None, tamper: bytes | None = None):
    """POST signed as Stripe signs (tests/settings.py's secret unless told otherwise)."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    header = sign_webhook_payload(body, secret or settings.STRIPE_WEBHOOK_SECRET,
                                  timestamp or int(time.time()))
    return Client().post(URL, data=tamper or body, content_type="application/json",
                         HTTP_STRIPE_SIGNATURE=header)


def at(ts: int) -> datetime:
    return datetime.fromtimestamp(ts, tz=UTC)


def test_payment_failed_starts_dunning_and_marks_past_due(subscription) -> None:
    response = post(event("evt_1", "invoice.payment_failed", invoice_obj()))
    assert response.status_code == 200
    assert response.json()["outcome"] == "applied"
    invoice = Invoice.objects.get(stripe_invoice_id="in_1")
    assert (invoice.amount_due, invoice.status, invoice.first_failed_at,
            invoice.next_retry_at, invoice.attempt_count) == (
        1200, Invoice.Status.OPEN, at(T0), at(T0) + timedelta(days=1), 1)
    subscription.refresh_from_db()
    assert subscription.status == Subscription.Status.PAST_DUE
    assert StripeEvent.objects.get().outcome == StripeEvent.Outcome.APPLIED

    # A later failure (e.g. one our own retry caused) leaves the schedule alone.
    post(event("evt_2", "invoice.payment_failed", invoice_obj(attempt_count=2), T0 + 3600))
    invoice.refresh_from_db()
    assert invoice.next_retry_at == at(T0) + timedelta(days=1) and invoice.attempt_count == 2


def test_invoice_paid_marks_paid_and_reactivates(subscription) -> None:
    post(event("evt_1", "invoice.payment_failed", invoice_obj()))
    response = post(event("evt_2", "invoice.paid", invoice_obj(
        status="paid", status_transitions={"paid_at": T0 + 50}), T0 + 60))
    assert response.json()["detail"] == "invoice in_1 paid; subscription active"
    invoice = Invoice.objects.get()
    assert (invoice.status, invoice.paid_at, invoice.next_retry_at) == (
        Invoice.Status.PAID, at(T0 + 50), None)
    subscription.refresh_from_db()
    assert subscription.status == Subscription.Status.ACTIVE


@pytest.mark.parametrize("period_on_items", [False, True])
def test_subscription_updated_sets_status_and_period(subscription, period_on_items) -> None:
    period = {"current_period_start": T0, "current_period_end": T0 + 30 * 86400}
    obj = {"id": "sub_1", "object": "subscription", "status": "unpaid"}
    obj.update({"items": {"data": [period]}} if period_on_items else period)
    response = post(event("evt_1", "customer.subscription.updated", obj))
    assert response.json()["detail"] == "status active → unpaid"
    subscription.refresh_from_db()
    assert (subscription.status, subscription.current_period_start,
            subscription.current_period_end) == (
        Subscription.Status.UNPAID, at(T0), at(T0 + 30 * 86400))


def test_replayed_event_is_acknowledged_and_changes_nothing(subscription) -> None:
    payload = event("evt_1", "customer.subscription.updated",
                    {"id": "sub_1", "status": "past_due"})
    assert post(payload).json()["outcome"] == "applied"
    Subscription.objects.filter(pk=subscription.pk).update(status="active")
    response = post(payload)
    assert response.status_code == 200 and response.json()["outcome"] == "duplicate"
    subscription.refresh_from_db()
    assert subscription.status == Subscription.Status.ACTIVE
    assert StripeEvent.objects.count() == 1


def test_older_events_do_not_overwrite_newer_state(subscription) -> None:
    post(event("evt_new", "customer.subscription.updated",
               {"id": "sub_1", "status": "canceled"}, T0 + 100))
    response = post(event("evt_old", "customer.subscription.updated",
                          {"id": "sub_1", "status": "active"}, T0))
    assert response.json()["outcome"] == "stale"
    subscription.refresh_from_db()
    assert subscription.status == Subscription.Status.CANCELED

    post(event("evt_paid", "invoice.paid", invoice_obj(status="paid"), T0 + 100))
    response = post(event("evt_failed", "invoice.payment_failed", invoice_obj(), T0 + 50))
    assert response.json()["outcome"] == "stale"
    invoice = Invoice.objects.get()
    assert invoice.status == Invoice.Status.PAID and invoice.next_retry_at is None
    assert sorted(StripeEvent.objects.values_list("event_id", "outcome")) == [
        ("evt_failed", "stale"), ("evt_new", "applied"), ("evt_old", "stale"),
        ("evt_paid", "applied")]


def test_failure_reported_after_payment_cannot_reopen_the_invoice(subscription) -> None:
    post(event("evt_paid", "invoice.paid", invoice_obj(status="paid"), T0))
    response = post(event("evt_failed", "invoice.payment_failed", invoice_obj(), T0 + 5))
    assert (response.json()["outcome"], response.json()["detail"]) == (
        "stale", "invoice is already paid")
    assert Invoice.objects.get().status == Invoice.Status.PAID


def test_unknown_types_and_objects_are_acknowledged(subscription) -> None:
    response = post(event("evt_1", "charge.refunded", {"id": "ch_1"}))
    assert (response.status_code, response.json()["outcome"]) == (200, "ignored")
    response = post(event("evt_2", "invoice.paid", invoice_obj(id="in_9", subscription="sub_9")))
    assert response.json()["detail"] == "unknown invoice and subscription"
    assert not Invoice.objects.exists()


@pytest.mark.parametrize("case", ["wrong_secret", "tampered", "too_old", "no_header",
                                  "garbage_header"])
def test_bad_signatures_are_refused(subscription, case) -> None:
    payload = event("evt_1", "customer.subscription.updated",
                    {"id": "sub_1", "status": "canceled"})
    if case == "wrong_secret":
        response = post(payload, secret="whsec_someone_else")
    elif case == "tampered":
        forged = json.dumps({**payload, "type": "invoice.paid"}).encode()
        response = post(payload, tamper=forged)
    elif case == "too_old":
        response = post(payload, timestamp=int(time.time()) - 3600)
    else:
        header = {} if case == "no_header" else {"HTTP_STRIPE_SIGNATURE": "v1=abc"}
        response = Client().post(URL, data=json.dumps(payload),
                                 content_type="application/json", **header)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error.startswith("missing Stripe-Signature" if case == "no_header"
                            else "invalid signature")
    subscription.refresh_from_db()
    assert subscription.status == Subscription.Status.ACTIVE
    assert not StripeEvent.objects.exists()


@pytest.mark.parametrize(("body", "message"), [
    (b"{not json", "payload is not valid JSON"),
    (b"[1, 2]", "invalid event: payload is not a JSON object"),
    (json.dumps({"id": "x_1", "type": "invoice.paid", "created": T0,
                 "data": {"object": {}}}).encode(), "invalid event: id is not a Stripe event"),
    (json.dumps({"id": "evt_1", "type": "invoice.paid", "created": "yesterday",
                 "data": {"object": {}}}).encode(), "invalid event: created is missing"),
    (json.dumps(event("evt_1", "invoice.paid", {"id": "ch_1"})).encode(),
     "invalid event: data.object.id is not an invoice id"),
    (json.dumps(event("evt_1", "invoice.paid", invoice_obj(id="in_2", amount_due=-5))).encode(),
     "invalid event: data.object.amount_due"),
])
def test_signed_but_malformed_payloads_are_refused(subscription, body, message) -> None:
    response = post(body)
    assert response.status_code == 400
    assert response.json()["error"].startswith(message)
    assert not StripeEvent.objects.exists() and not Invoice.objects.exists()


def test_only_post_and_only_when_configured(settings, db) -> None:
    assert Client().get(URL).status_code == 405
    settings.STRIPE_WEBHOOK_SECRET = ""
    response = post(event("evt_1", "invoice.paid", invoice_obj()))
    assert response.status_code == 503
    assert response.json() == {"error": "STRIPE_WEBHOOK_SECRET is not configured"}


def test_late_failure_report_after_our_own_retry_is_stale(community, stripe_sandbox) -> None:
    """The job declined at SLOT; Stripe's report of an earlier failure arrives afterwards."""
    invoice = past_due(community, None, "in_acme_decline", sandbox=stripe_sandbox)
    stripe_sandbox.configure("in_acme_decline", outcome="decline")
    job(community, SLOT)
    invoice.refresh_from_db()
    scheduled = invoice.next_retry_at
    earlier = int(SLOT.timestamp()) - 600
    response = post(event("evt_late", "invoice.payment_failed",
                          invoice_obj(id="in_acme_decline", attempt_count=9), earlier))
    assert response.json()["outcome"] == "stale"
    invoice.refresh_from_db()
    assert (invoice.next_retry_at, invoice.attempt_count) == (scheduled, 2)
