"""The one place that calls Stripe's API, and how its answers are classified.

Every Stripe error is turned into one of three outcomes the dunning code understands:
a card decline (a result, not an error), `StripeUnavailable` (transient: send the same
idempotency key again later), `StripeRefused` (this invoice cannot be paid as asked: needs
a person), or `StripeMisconfigured` (our key is wrong: nothing will work until fixed).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import stripe
from django.conf import settings


class StripeUnavailable(Exception):
    """Transient: connection failure, timeout, 5xx, 409, rate limit. Safe to resend the key.

    `account_wide` means every other call would fail the same way (unreachable, rate
    limited), so the run should stop rather than try the next invoice.
    """

    def __init__(self, message: str, *, account_wide: bool) -> None:
        super().__init__(message)
        self.account_wide = account_wide


class StripeRefused(Exception):
    """Stripe refused this request (invalid request, idempotency conflict): needs a person."""


class StripeMisconfigured(Exception):
    """Authentication or permission failure, or no API key: no call can succeed."""


@dataclass(frozen=True)
class PaymentResult:
    succeeded: bool
    invoice_status: str = ""
    charge_id: str = ""
    payment_intent_id: str = ""
    decline_code: str = ""
    message: str = ""


def make_client(timeout: float) -> stripe.StripeClient:
    """A client for settings.STRIPE_API_KEY, pointed at STRIPE_API_BASE when set.

    The SDK's own network retries are off: the job's run retries (with backoff) resend
    the same idempotency keys, and a run must not stall on one invoice.
    """
    if not settings.STRIPE_API_KEY:
        raise StripeMisconfigured("STRIPE_API_KEY is not set")
    base = {"api": settings.STRIPE_API_BASE.rstrip("/")} if settings.STRIPE_API_BASE else None
    return stripe.StripeClient(
        settings.STRIPE_API_KEY,
        base_addresses=base,
        max_network_retries=0,
        http_client=stripe.RequestsClient(timeout=timeout),
    )


def _id_of(value: Any) -> str:
    """Stripe fields that may be an id or an expanded object."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return str(value.get("id") or "")
    return ""


def pay_invoice(client: stripe.StripeClient, stripe_invoice_id: str,
                idempotency_key: str) -> PaymentResult:
    """Ask Stripe to collect an invoice now; the key makes a resend replay the first result."""
    try:
        invoice = client.v1.invoices.pay(stripe_invoice_id,
                                         options={"idempotency_key": idempotency_key})
    except stripe.CardError as exc:
        error = (exc.json_body or {}).get("error") or {}
        return PaymentResult(
            succeeded=False,
            charge_id=_id_of(error.get("charge")),
            payment_intent_id=_id_of(error.get("payment_intent")),
            decline_code=str(error.get("decline_code") or exc.code or "card_declined"),
            message=str(error.get("message") or exc.user_message or "card declined"),
        )
    except stripe.APIConnectionError as exc:
        raise StripeUnavailable(f"Stripe API unreachable: {exc.user_message or exc}",
                                account_wide=True) from exc
    except stripe.RateLimitError as exc:
        raise StripeUnavailable(f"Stripe rate limit: {exc.user_message or exc}",
                                account_wide=True) from exc
    except (stripe.AuthenticationError, stripe.PermissionError) as exc:
        raise StripeMisconfigured(
            f"Stripe refused our API key (HTTP {exc.http_status}): {exc.user_message or exc}"
        ) from exc
    except stripe.APIError as exc:
        raise StripeUnavailable(f"Stripe error (HTTP {exc.http_status}): "
                                f"{exc.user_message or exc}", account_wide=False) from exc
    except stripe.StripeError as exc:
        raise StripeRefused(f"Stripe refused (HTTP {exc.http_status}, "
                            f"{type(exc).__name__}): {exc.user_message or exc}") from exc
    status = str(invoice.get("status") or "")
    if status != "paid":
        # Stripe answers an unpaid invoice with an error; anything else is unexpected.
        raise StripeRefused(f"Stripe answered invoice status {status!r}, not 'paid'")
    return PaymentResult(
        succeeded=True,
        invoice_status=status,
        charge_id=_id_of(invoice.get("charge")),
        payment_intent_id=_id_of(invoice.get("payment_intent")),
    )
