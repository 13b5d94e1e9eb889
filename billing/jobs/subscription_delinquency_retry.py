"""subscription_delinquency_retry: retry a community's past-due invoices by the dunning policy.

Every 30 minutes: resend the claims an earlier run left pending, then, for each open invoice
whose next retry is due, claim the slot, ask Stripe to pay it with the slot's idempotency
key, and record the answer (paid and recovered; declined, reminded and rescheduled; or
given up on after the policy's last retry). See billing/dunning.py and the runbook
docs/runbooks/subscription_delinquency_retry.md.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django import forms
from django.core.validators import RegexValidator

from automation.errors import PermanentJobError, RetryableJobError
from automation.registry import tenant_job
from communities.models import Community

from ..dunning import (
    DunningPolicyError,
    claim_attempt,
    due_invoices,
    pending_invoices,
    record_refused,
    record_result,
    record_unavailable,
    retry_days,
)
from ..models import Invoice, PaymentAttempt
from ..stripe_gateway import (
    StripeMisconfigured,
    StripeRefused,
    StripeUnavailable,
    make_client,
    pay_invoice,
)


class DelinquencyRetryParams(forms.Form):
    max_invoices = forms.IntegerField(
        min_value=1, max_value=5000, initial=200, required=False,
        help_text="invoices handled per run at most; the rest wait for the next run",
    )
    timeout_seconds = forms.FloatField(
        min_value=0.2, max_value=60, initial=20.0, required=False,
        help_text="HTTP timeout of each Stripe call",
    )
    invoice = forms.CharField(
        max_length=255, required=False,
        validators=[RegexValidator(r"^in_[A-Za-z0-9_-]+$",
                                   "a Stripe invoice id looks like in_...")],
        help_text="only this invoice (its Stripe id)",
    )
    retry_now = forms.BooleanField(
        required=False,
        help_text="with invoice: retry it now even if its next retry is later or the "
                  "policy gave up (a retry by hand)",
    )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if cleaned.get("retry_now") and not cleaned.get("invoice"):
            raise forms.ValidationError("retry_now needs an invoice")
        return cleaned


def _work(community: Community, now: datetime, limit: int, invoice: str,
          retry_now: bool) -> list[int]:
    """Invoice ids to handle: pending claims first (resend), then due ones by due time."""
    if invoice:
        found = Invoice.objects.filter(subscription__community=community,
                                       stripe_invoice_id=invoice).first()
        if found is None:
            raise PermanentJobError(f"invoice {invoice} is not one of {community.slug}'s")
        if retry_now and found.status != Invoice.Status.OPEN \
                and not found.attempts.filter(outcome=PaymentAttempt.Outcome.PENDING).exists():
            raise PermanentJobError(f"invoice {invoice} is {found.status}; nothing to retry")
        return [found.pk]
    ids = list(pending_invoices(community).values_list("pk", flat=True)[:limit])
    for pk in due_invoices(community, now).values_list("pk", flat=True)[:limit]:
        if len(ids) >= limit:
            break
        if pk not in ids:
            ids.append(pk)
    return ids


@tenant_job(
    name="subscription_delinquency_retry",
    description="Retry past-due Stripe invoices by the dunning policy with one idempotency "
                "key per retry slot; remind members; mark subscriptions unpaid after the "
                "last retry. Figures: attempts and recovered revenue.",
    category="billing",
    queue="billing",
    cron="*/30 * * * *",
    soft_time_limit=600,
    time_limit=660,
    max_retries=3,
    backoff_base=60.0,
    backoff_cap=600.0,
    params_form=DelinquencyRetryParams,
)
def subscription_delinquency_retry(community: Community, now: datetime,
                                   max_invoices: int = 200, timeout_seconds: float = 20.0,
                                   invoice: str = "", retry_now: bool = False) -> dict:
    try:
        days = retry_days()
    except DunningPolicyError as exc:
        raise PermanentJobError(str(exc)) from exc
    work = _work(community, now, max_invoices, invoice, retry_now)
    summary: dict[str, Any] = {
        "due": len(work), "attempted": 0, "resent": 0, "recovered": 0,
        "recovered_amount_cents": 0, "declined": 0, "gave_up": 0, "errors": 0,
        "reminders": 0, "notices": 0, "skipped": 0, "recovered_by_currency": {},
        "invoices": [],
    }
    if not work:
        return summary
    try:
        client = make_client(timeout_seconds)
    except StripeMisconfigured as exc:
        raise PermanentJobError(str(exc)) from exc

    unavailable = 0
    for invoice_pk in work:
        attempt = claim_attempt(invoice_pk, now, force=retry_now)
        if attempt is None:
            summary["skipped"] += 1  # paid or rescheduled since it was listed
            continue
        stripe_id = attempt.invoice.stripe_invoice_id
        summary["attempted"] += 1
        summary["resent"] += int(attempt.sends > 1)
        detail: dict[str, Any] = {"invoice": stripe_id, "attempt": attempt.number,
                                  "key": attempt.idempotency_key}
        summary["invoices"].append(detail)
        try:
            result = pay_invoice(client, stripe_id, attempt.idempotency_key)
        except StripeMisconfigured as exc:
            raise PermanentJobError(str(exc)) from exc
        except StripeUnavailable as exc:
            record_unavailable(attempt, str(exc))
            if exc.account_wide:
                # Every other call would fail too: stop; the run is retried and resends
                # the pending claims with the same keys.
                raise RetryableJobError(
                    f"{exc} (invoice {stripe_id}; {len(work)} due, "
                    f"{summary['recovered']} recovered before the failure)") from exc
            unavailable += 1
            summary["errors"] += 1
            detail.update(outcome="unavailable", error=str(exc))
            continue
        except StripeRefused as exc:
            record_refused(attempt, str(exc), now)
            summary["errors"] += 1
            detail.update(outcome="refused", error=str(exc))
            continue
        recorded = record_result(attempt, result, now, days)
        if recorded is None:
            summary["skipped"] += 1
            detail.update(outcome="already_recorded")
            continue
        detail["outcome"] = recorded.outcome
        if recorded.outcome == "succeeded":
            summary["recovered"] += 1
            summary["recovered_amount_cents"] += recorded.amount_cents
            currency = attempt.invoice.currency
            by_currency = summary["recovered_by_currency"]
            by_currency[currency] = by_currency.get(currency, 0) + recorded.amount_cents
            detail["amount_cents"] = recorded.amount_cents
        else:
            summary["declined"] += 1
            summary["gave_up"] += int(recorded.gave_up)
            summary["reminders"] += recorded.reminders
            summary["notices"] += recorded.notices
            detail.update(decline_code=result.decline_code, gave_up=recorded.gave_up,
                          next_retry_at=recorded.next_retry_at.isoformat()
                          if recorded.next_retry_at else None)
    if unavailable and unavailable == summary["attempted"]:
        # Nothing got through at all: Stripe is failing, not one invoice. Retry the run.
        failed = [d for d in summary["invoices"] if d.get("outcome") == "unavailable"]
        raise RetryableJobError(f"Stripe failed for all {unavailable} attempted invoices; "
                                f"last: {failed[-1]['error']}")
    return summary
