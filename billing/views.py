"""The Stripe webhook endpoint: verify the signature, then apply the event once.

Answers: 200 processed (applied, stale, ignored or duplicate); 400 unsigned, or signed but
not processable (kept as a rejected StripeEvent with the reason, logged); 503 when the
database is unavailable for the moment or a concurrent event created the same invoice first
(nothing recorded: Stripe's redelivery goes through). Never 500 for anything a payload holds.
"""

from __future__ import annotations

import logging
from typing import Any

import stripe
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import IntegrityError, InterfaceError, OperationalError
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from .webhooks import InvalidEvent, handle_event, parse_event, parse_payload, record_rejected

logger = logging.getLogger(__name__)

# Connection lost, lock or statement timeout, deadlock, serialization failure: the same
# event succeeds later. Other database errors (DataError, a check constraint, ...) come from
# the payload and would fail the same way on every redelivery.
TRANSIENT_DB_ERRORS = (OperationalError, InterfaceError)
UNIQUE_VIOLATION = "23505"


def is_transient(exc: BaseException) -> bool:
    """Whether the same event would go through if Stripe delivered it again."""
    if isinstance(exc, TRANSIENT_DB_ERRORS):
        return True
    # The checks leave one way to break a unique index: a concurrent event creating the same
    # invoice first. Once that commits, the redelivery finds the row.
    return isinstance(exc, IntegrityError) and \
        getattr(exc.__cause__, "sqlstate", None) == UNIQUE_VIOLATION


def _refuse(status: int, message: str) -> JsonResponse:
    return JsonResponse({"error": message}, status=status)


def _unavailable() -> JsonResponse:
    logger.warning("stripe webhook: database unavailable; the event is left to Stripe's "
                   "redelivery", exc_info=True)
    return _refuse(503, "temporarily unavailable, retry later")


def _reject(body: str, payload: Any, reason: str) -> JsonResponse:
    """400 for a signed event we cannot process, kept as a rejected StripeEvent."""
    try:
        record = record_rejected(body, payload, reason)
    except TRANSIENT_DB_ERRORS:
        return _unavailable()
    except Exception:
        # Cleaned to fit its columns, the row should always be writable; if not, still
        # answer what the event deserves and leave the trace in the log.
        logger.exception("stripe webhook: could not record a rejected event: %s", reason)
        return _refuse(400, f"invalid event: {reason[:2000]}")
    logger.warning("stripe event rejected (record %s, id %r): %s", record.pk, record.event_id,
                   record.detail)
    return JsonResponse({"error": f"invalid event: {record.detail}", "rejected": record.pk},
                        status=400)


@csrf_exempt  # Stripe cannot send a CSRF token; the signature authenticates the request
@require_POST
def stripe_webhook(request: HttpRequest) -> JsonResponse:
    secret = settings.STRIPE_WEBHOOK_SECRET
    if not secret:
        # Never accept unsigned events; Stripe retries until this is configured.
        return _refuse(503, "STRIPE_WEBHOOK_SECRET is not configured")
    signature = request.headers.get("Stripe-Signature", "")
    if not signature:
        return _refuse(400, "missing Stripe-Signature header")
    try:
        body = request.body
    except RequestDataTooBig:
        return _refuse(413, "payload too large")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return _refuse(400, "payload is not UTF-8")
    try:
        # What stripe.Webhook.construct_event checks (HMAC over "t.body", constant-time
        # compare, 5-minute tolerance) without building an Event from a payload not yet
        # known to be an object; parse_event validates the shape next.
        stripe.WebhookSignature.verify_header(text, signature, secret,
                                              stripe.Webhook.DEFAULT_TOLERANCE)
    except stripe.SignatureVerificationError as exc:
        return _refuse(400, f"invalid signature: {exc.user_message or exc}")
    # Signed from here on: whatever goes wrong is recorded, only unsigned bodies are not.
    payload: Any = None
    try:
        payload = parse_payload(text)
        event = parse_event(payload)
        outcome, detail = handle_event(event)
    except InvalidEvent as exc:
        return _reject(text, payload, str(exc))
    except Exception as exc:
        if is_transient(exc):
            return _unavailable()
        # A case the checks above do not foresee (or a bug): the same body would fail on
        # every redelivery, so it is kept and refused like an invalid one, loudly.
        logger.exception("stripe webhook: unexpected error processing a signed event")
        return _reject(text, payload, f"{type(exc).__name__}: {exc}")
    logger.info("stripe event %s %s: %s (%s)", event.id, event.type, outcome, detail)
    return JsonResponse({"received": True, "id": event.id, "type": event.type,
                         "outcome": outcome, "detail": detail})
