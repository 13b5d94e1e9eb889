"""subscription_delinquency_retry through the real stripe SDK against the local sandbox."""

from __future__ import annotations

from datetime import timedelta

import pytest

from automation.errors import InvalidJobParams, PermanentJobError, RetryableJobError
from automation.models import JobRun
from automation.runs import run_inline
from billing.dunning import claim_attempt
from billing.jobs.subscription_delinquency_retry import subscription_delinquency_retry as job
from billing.models import Invoice, PaymentAttempt, Subscription
from billing.stripe_gateway import make_client, pay_invoice
from notifications.models import Notification
from tests.servers import closed_port_url

from .conftest import FIRST_FAILED, SLOT, past_due

KEY = f"dunning:in_acme_1:{SLOT.isoformat()}"


def notices(kind: str) -> list[tuple[str, str]]:
    return sorted(Notification.objects.filter(kind=kind)
                  .values_list("member__email", "dedup_key"))


def test_due_invoice_is_charged_once_and_recovered(community, payer, stripe_sandbox) -> None:
    """One charge at the sandbox, under the slot's key; invoice paid, revenue recorded."""
    invoice = past_due(community, payer, "in_acme_1", amount=1200, sandbox=stripe_sandbox)
    later = past_due(community, payer, "in_acme_later", sandbox=stripe_sandbox)
    Invoice.objects.filter(pk=later.pk).update(next_retry_at=SLOT + timedelta(minutes=1))

    summary = job(community, SLOT)

    assert {k: summary[k] for k in ("due", "attempted", "recovered", "recovered_amount_cents",
                                    "declined", "gave_up", "errors", "reminders")} == {
        "due": 1, "attempted": 1, "recovered": 1, "recovered_amount_cents": 1200,
        "declined": 0, "gave_up": 0, "errors": 0, "reminders": 0}
    assert summary["recovered_by_currency"] == {"usd": 1200}
    assert stripe_sandbox.charges_for("in_acme_1") == 1
    assert stripe_sandbox.keys_for("in_acme_1") == [KEY]
    assert stripe_sandbox.keys_for("in_acme_later") == []
    invoice.refresh_from_db()
    assert (invoice.status, invoice.paid_at, invoice.recovered_amount_cents,
            invoice.next_retry_at) == (Invoice.Status.PAID, SLOT, 1200, None)
    [attempt] = invoice.attempts.all()
    assert (attempt.outcome, attempt.amount_cents, attempt.idempotency_key, attempt.number) == (
        PaymentAttempt.Outcome.SUCCEEDED, 1200, KEY, 1)
    assert attempt.stripe_charge_id == stripe_sandbox.charges[0].charge_id
    invoice.subscription.refresh_from_db()
    assert invoice.subscription.status == Subscription.Status.ACTIVE


def test_rerun_of_the_same_slot_charges_nothing(community, payer, stripe_sandbox) -> None:
    past_due(community, payer, "in_acme_1", sandbox=stripe_sandbox)
    job(community, SLOT)
    again = job(community, SLOT)
    assert (again["due"], again["attempted"], again["recovered"]) == (0, 0, 0)
    assert len(stripe_sandbox.requests) == 1
    assert stripe_sandbox.charges_for("in_acme_1") == 1


def test_crash_after_the_claim_resends_the_same_key(community, payer, stripe_sandbox) -> None:
    """A run died after committing its claim: the next run sends that claim's key."""
    invoice = past_due(community, payer, "in_acme_1", sandbox=stripe_sandbox)
    claimed = claim_attempt(invoice.pk, SLOT)
    assert claimed.idempotency_key == KEY and stripe_sandbox.requests == []

    summary = job(community, SLOT + timedelta(minutes=30))

    assert (summary["recovered"], summary["resent"]) == (1, 1)
    assert stripe_sandbox.keys_for("in_acme_1") == [KEY]
    assert stripe_sandbox.charges_for("in_acme_1") == 1
    assert PaymentAttempt.objects.get().sends == 2


def test_crash_after_the_charge_is_replayed_not_charged_again(community, payer,
                                                              stripe_sandbox) -> None:
    """A run died after Stripe charged but before recording: the resend is replayed."""
    invoice = past_due(community, payer, "in_acme_1", sandbox=stripe_sandbox)
    claimed = claim_attempt(invoice.pk, SLOT)
    first = pay_invoice(make_client(5), "in_acme_1", claimed.idempotency_key)
    assert first.succeeded and stripe_sandbox.charges_for("in_acme_1") == 1

    summary = job(community, SLOT)

    assert summary["recovered"] == 1 and summary["recovered_amount_cents"] == 1200
    assert stripe_sandbox.keys_for("in_acme_1") == [KEY, KEY]
    assert [r.replayed for r in stripe_sandbox.requests] == [False, True]
    assert stripe_sandbox.charges_for("in_acme_1") == 1
    attempt = PaymentAttempt.objects.get()
    assert attempt.stripe_charge_id == first.charge_id
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.PAID


@pytest.mark.django_db(transaction=True)
def test_lost_response_is_retried_with_the_same_key(community, payer, stripe_sandbox) -> None:
    """Stripe charged but the answer timed out: the run's retry gets the replay."""
    past_due(community, payer, "in_acme_1", sandbox=stripe_sandbox)
    stripe_sandbox.response_delay = 1.0  # longer than the client's timeout, once
    run = run_inline(job.spec, community, trigger="manual", now=SLOT,
                     params={"timeout_seconds": 0.3})
    assert run.status == JobRun.Status.SUCCEEDED, run.error_message
    assert run.attempts == 2
    assert run.result["recovered"] == 1
    assert stripe_sandbox.keys_for("in_acme_1") == [KEY, KEY]
    assert stripe_sandbox.charges_for("in_acme_1") == 1


def test_card_declined_reminds_and_schedules_the_next_retry(community, payer, admin,
                                                             stripe_sandbox) -> None:
    invoice = past_due(community, payer, "in_acme_1", sandbox=stripe_sandbox)
    stripe_sandbox.configure("in_acme_1", outcome="decline", decline_code="insufficient_funds")

    summary = job(community, SLOT)

    assert (summary["attempted"], summary["declined"], summary["reminders"],
            summary["recovered"], summary["gave_up"]) == (1, 1, 1, 0, 0)
    invoice.refresh_from_db()
    assert invoice.next_retry_at == FIRST_FAILED + timedelta(days=3)
    assert invoice.status == Invoice.Status.OPEN and invoice.attempt_count == 2
    assert invoice.last_error == "insufficient_funds: Your card has insufficient funds."
    attempt = invoice.attempts.get()
    assert (attempt.outcome, attempt.decline_code) == ("card_declined", "insufficient_funds")
    assert stripe_sandbox.charges_for("in_acme_1", succeeded=False) == 1
    assert stripe_sandbox.charges_for("in_acme_1") == 0
    [reminder] = Notification.objects.filter(kind="billing.dunning_reminder")
    assert reminder.member == payer
    assert "12.00 USD" in reminder.subject
    assert "Friday 03 July 2026" in reminder.body  # the next retry, community-local
    assert reminder.data["decline_code"] == "insufficient_funds"
    invoice.subscription.refresh_from_db()
    assert invoice.subscription.status == Subscription.Status.PAST_DUE

    # The same slot again: nothing is due; no second attempt, no second reminder.
    assert job(community, SLOT)["attempted"] == 0
    assert len(stripe_sandbox.requests) == 1

    # The next slot of the policy, after the member fixed their card: recovered.
    stripe_sandbox.configure("in_acme_1", outcome="pay")
    summary = job(community, invoice.next_retry_at)
    assert summary["recovered"] == 1
    keys = stripe_sandbox.keys_for("in_acme_1")
    assert len(set(keys)) == 2 and keys[1].endswith((FIRST_FAILED + timedelta(days=3))
                                                    .isoformat())
    assert Notification.objects.filter(kind="billing.dunning_reminder").count() == 1


def test_community_plan_reminder_goes_to_the_admins(community, admin, stripe_sandbox) -> None:
    past_due(community, None, "in_acme_decline_1")  # declined by the sandbox's naming rule
    summary = job(community, SLOT)
    assert summary["reminders"] == 1
    assert notices("billing.dunning_reminder") == [
        ("ada@acme.example", f"billing.dunning_reminder:in_acme_decline_1:1#member:{admin.pk}")]


def test_last_retry_declined_marks_unpaid_and_tells_member_and_admins(
        community, payer, admin, stripe_sandbox) -> None:
    invoice = past_due(community, payer, "in_acme_1", retry_number=4, sandbox=stripe_sandbox)
    stripe_sandbox.configure("in_acme_1", outcome="decline")

    summary = job(community, SLOT)

    assert (summary["declined"], summary["gave_up"], summary["notices"],
            summary["reminders"]) == (1, 1, 2, 0)
    invoice.refresh_from_db()
    assert (invoice.next_retry_at, invoice.gave_up_at, invoice.status) == (
        None, SLOT, Invoice.Status.OPEN)
    assert invoice.attempts.get(slot=SLOT).number == 4
    invoice.subscription.refresh_from_db()
    assert invoice.subscription.status == Subscription.Status.UNPAID
    assert [m for m, _ in notices("billing.dunning_final")] == ["pat@acme.example"]
    assert [m for m, _ in notices("billing.subscription_unpaid")] == ["ada@acme.example"]

    assert job(community, SLOT + timedelta(days=1))["attempted"] == 0
    assert Notification.objects.count() == 2
    assert len(stripe_sandbox.requests) == 1


def test_partial_failure_the_others_go_through(community, payer, stripe_sandbox) -> None:
    """One invoice declines, one gets a 500; the third recovers and the run says so."""
    past_due(community, payer, "in_acme_ok", sandbox=stripe_sandbox)
    past_due(community, payer, "in_acme_no", sandbox=stripe_sandbox)
    broken = past_due(community, payer, "in_acme_500", sandbox=stripe_sandbox)
    stripe_sandbox.configure("in_acme_no", outcome="decline")
    stripe_sandbox.configure("in_acme_500", outcome="error")

    summary = job(community, SLOT)

    assert (summary["attempted"], summary["recovered"], summary["declined"],
            summary["errors"]) == (3, 1, 1, 1)
    by_invoice = {d["invoice"]: d for d in summary["invoices"]}
    assert by_invoice["in_acme_500"]["outcome"] == "unavailable"
    assert "HTTP 500" in by_invoice["in_acme_500"]["error"]
    broken.refresh_from_db()
    assert "HTTP 500" in broken.last_error and broken.status == Invoice.Status.OPEN
    assert broken.attempts.get().outcome == PaymentAttempt.Outcome.PENDING

    # Stripe recovers; the next run resends the pending claim with the same key.
    stripe_sandbox.configure("in_acme_500", outcome="pay")
    summary = job(community, SLOT + timedelta(minutes=30))
    assert (summary["attempted"], summary["recovered"], summary["resent"]) == (1, 1, 1)
    assert stripe_sandbox.keys_for("in_acme_500") == [
        f"dunning:in_acme_500:{SLOT.isoformat()}"] * 2
    assert stripe_sandbox.charges_for("in_acme_500") == 1
    assert stripe_sandbox.charges_for("in_acme_ok") == 1


def test_stripe_failing_for_every_invoice_retries_the_run(community, payer,
                                                          stripe_sandbox) -> None:
    past_due(community, payer, "in_acme_1", sandbox=stripe_sandbox)
    past_due(community, payer, "in_acme_2", sandbox=stripe_sandbox)
    stripe_sandbox.outage_status = 503
    with pytest.raises(RetryableJobError, match="Stripe failed for all 2 attempted invoices"):
        job(community, SLOT)
    assert stripe_sandbox.charges == []


@pytest.mark.django_db(transaction=True)
def test_stripe_down_is_retried_then_fails_clearly(community, payer, settings) -> None:
    """Nothing listens at the API base: the run is retried, then fails; nothing is lost."""
    invoice = past_due(community, payer, "in_acme_1")
    settings.STRIPE_API_BASE = closed_port_url()
    run = run_inline(job.spec, community, trigger="manual", now=SLOT)
    assert run.status == JobRun.Status.FAILED
    assert run.attempts == job.spec.max_retries + 1
    assert run.error_message.startswith(
        f"gave up after {run.attempts} attempts: Stripe API unreachable")
    attempt = invoice.attempts.get()
    assert (attempt.outcome, attempt.sends, attempt.idempotency_key) == (
        PaymentAttempt.Outcome.PENDING, run.attempts, KEY)


def test_stripe_back_after_an_outage_charges_once(community, payer, settings,
                                                  stripe_sandbox) -> None:
    invoice = past_due(community, payer, "in_acme_1", sandbox=stripe_sandbox)
    sandbox_url = settings.STRIPE_API_BASE
    settings.STRIPE_API_BASE = closed_port_url()
    with pytest.raises(RetryableJobError, match="Stripe API unreachable"):
        job(community, SLOT)
    settings.STRIPE_API_BASE = sandbox_url
    assert job(community, SLOT + timedelta(hours=1))["recovered"] == 1
    assert stripe_sandbox.keys_for("in_acme_1") == [KEY]
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.PAID


def test_invalid_params_are_refused(community) -> None:
    with pytest.raises(InvalidJobParams) as info:
        job.spec.clean_params({"max_invoices": 0, "invoice": "ch_123", "timeout_seconds": 99,
                               "colour": 1})
    errors = info.value.errors
    assert "max_invoices" in errors and "timeout_seconds" in errors
    assert errors["invoice"] == ["a Stripe invoice id looks like in_..."]
    assert "unknown params: colour" in errors["__all__"]
    with pytest.raises(InvalidJobParams, match="retry_now needs an invoice"):
        job.spec.clean_params({"retry_now": True})
    with pytest.raises(InvalidJobParams):
        run_inline(job.spec, community, trigger="manual", now=SLOT, params={"max_invoices": -1})
    assert not JobRun.objects.exists()


def test_retry_by_hand_after_the_policy_gave_up(community, payer, stripe_sandbox) -> None:
    invoice = past_due(community, payer, "in_acme_1", retry_number=4, sandbox=stripe_sandbox)
    stripe_sandbox.configure("in_acme_1", outcome="decline")
    assert job(community, SLOT)["gave_up"] == 1
    stripe_sandbox.configure("in_acme_1", outcome="pay")
    later = SLOT + timedelta(days=2)
    assert job(community, later)["attempted"] == 0  # nothing scheduled any more

    summary = job(community, later, invoice="in_acme_1", retry_now=True)

    assert summary["recovered"] == 1
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.PAID
    assert invoice.attempts.get(slot=later).number == 5
    invoice.subscription.refresh_from_db()
    assert invoice.subscription.status == Subscription.Status.ACTIVE
    with pytest.raises(PermanentJobError, match="in_acme_1 is paid; nothing to retry"):
        job(community, later, invoice="in_acme_1", retry_now=True)
    with pytest.raises(PermanentJobError, match="in_nope is not one of acme's"):
        job(community, later, invoice="in_nope")


def test_invoice_refused_by_stripe_waits_for_a_person(community, payer,
                                                      stripe_sandbox) -> None:
    invoice = past_due(community, payer, "in_acme_1", sandbox=stripe_sandbox)
    stripe_sandbox.configure("in_acme_1", status="paid")  # paid outside our knowledge
    summary = job(community, SLOT)
    assert summary["errors"] == 1 and summary["invoices"][0]["outcome"] == "refused"
    invoice.refresh_from_db()
    assert invoice.next_retry_at is None
    assert "Invoice is already paid" in invoice.last_error
    assert invoice.attempts.get().outcome == PaymentAttempt.Outcome.ERROR
    assert job(community, SLOT + timedelta(hours=1))["attempted"] == 0


def test_other_communities_invoices_are_not_touched(community, other_community,
                                                   stripe_sandbox) -> None:
    past_due(other_community, None, "in_kolkata_1", sandbox=stripe_sandbox)
    assert job(community, SLOT)["due"] == 0
    assert stripe_sandbox.requests == []


def test_a_wrong_api_key_fails_the_run_at_once(community, payer, settings,
                                               stripe_sandbox) -> None:
    past_due(community, payer, "in_acme_1", sandbox=stripe_sandbox)
    settings.STRIPE_API_KEY = "sk_test_wrong"
    with pytest.raises(PermanentJobError, match=r"Stripe refused our API key \(HTTP 401\)"):
        job(community, SLOT)
    settings.STRIPE_API_KEY = ""
    with pytest.raises(PermanentJobError, match="STRIPE_API_KEY is not set"):
        job(community, SLOT)


def test_a_broken_policy_setting_fails_with_a_clear_message(community, settings) -> None:
    settings.BILLING_RETRY_DAYS = [3, 1]
    with pytest.raises(PermanentJobError, match="strictly increasing"):
        job(community, SLOT)
