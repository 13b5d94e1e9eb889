"""The local Stripe sandbox speaks Stripe as the real SDK expects it to."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import stripe

from billing.sandbox import StripeSandbox, sign_webhook_payload
from billing.stripe_gateway import make_client, pay_invoice
from tests.servers import free_port

from .conftest import ROOT


def test_same_key_with_other_params_is_refused(stripe_sandbox) -> None:
    client = make_client(5)
    client.v1.invoices.pay("in_1", options={"idempotency_key": "k1"})
    with pytest.raises(stripe.IdempotencyError, match="same parameters"):
        client.v1.invoices.pay("in_1", params={"paid_out_of_band": True},
                               options={"idempotency_key": "k1"})
    assert stripe_sandbox.charges_for("in_1") == 1


def test_customer_configured_to_decline_gets_a_card_error(stripe_sandbox) -> None:
    stripe_sandbox.configure("in_1", customer="cus_9", amount_due=500)
    stripe_sandbox.decline_customer("cus_9", "expired_card")
    with pytest.raises(stripe.CardError) as info:
        make_client(5).v1.invoices.pay("in_1", options={"idempotency_key": "k1"})
    assert (info.value.http_status, info.value.code) == (402, "card_declined")
    assert info.value.error.decline_code == "expired_card"
    assert info.value.error.type == "card_error"


def test_wrong_key_and_unknown_endpoint_answer_like_stripe(stripe_sandbox, settings) -> None:
    with pytest.raises(stripe.InvalidRequestError, match="Unrecognized request URL"):
        make_client(5).v1.invoices.retrieve("in_1")
    settings.STRIPE_API_KEY = "sk_test_other"
    with pytest.raises(stripe.AuthenticationError):
        make_client(5).v1.invoices.pay("in_1")
    assert stripe_sandbox.charges == []


def test_webhook_signature_verifies_with_the_sdk() -> None:
    body = '{"id": "evt_1"}'
    header = sign_webhook_payload(body.encode(), "whsec_x", int(time.time()))
    assert stripe.WebhookSignature.verify_header(body, header, "whsec_x", 300)
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.WebhookSignature.verify_header(body, header, "whsec_y", 300)


def test_runs_standalone_for_the_demo(settings) -> None:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "billing.sandbox", "--port", str(port),
                             "--api-key", settings.STRIPE_API_KEY],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True)
    try:
        assert f"listening on http://127.0.0.1:{port}" in proc.stdout.readline()
        settings.STRIPE_API_BASE = f"http://127.0.0.1:{port}"
        client = make_client(5)
        assert pay_invoice(client, "in_demo_1", "k1").succeeded
        declined = pay_invoice(client, "in_demo_2_insufficient", "k2")
        assert (declined.succeeded, declined.decline_code) == (False, "insufficient_funds")
    finally:
        proc.terminate()
        proc.wait(timeout=5)


def test_bad_outcome_is_refused() -> None:
    with pytest.raises(ValueError, match="outcome must be"):
        StripeSandbox().configure("in_1", outcome="maybe")
