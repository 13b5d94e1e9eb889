"""The Stripe webhook endpoint: verify the signature, then apply the event once."""

from __future__ import annotations

import json
import logging

import stripe
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from .webhooks import InvalidEvent, handle_event, parse_event

logger = logging.getLogger(__name__)


def _refuse(status: int, message: str) -> JsonResponse:
    return JsonResponse({"error": message}, status=status)


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
    try:
        payload = json.loads(text)
    except ValueError as exc:
        return _refuse(400, f"payload is not valid JSON: {exc}")
    try:
        event = parse_event(payload)
        outcome, detail = handle_event(event)
    except InvalidEvent as exc:
        return _refuse(400, f"invalid event: {exc}")
    logger.info("stripe event %s %s: %s (%s)", event.id, event.type, outcome, detail)
    return JsonResponse({"received": True, "id": event.id, "type": event.type,
                         "outcome": outcome, "detail": detail})
