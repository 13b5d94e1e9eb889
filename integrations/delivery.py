"""Signed webhook POSTs that connect only to addresses the outbound-URL guard approved."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urljoin

import urllib3

from automation.outbound_urls import OutboundURLRefused, check_url

MAX_REDIRECTS = 3
SIGNATURE_HEADER = "X-Webhook-Signature"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def verify_signature(secret: str, header: str, body: bytes, *, now: datetime,
                     tolerance: int = 300) -> bool:
    """True when `header` signs `body` with `secret` within `tolerance` seconds of `now`."""
    try:
        fields = dict(part.split("=", 1) for part in header.split(","))
        timestamp = int(fields["t"])
    except (ValueError, KeyError):
        return False
    if abs(now.timestamp() - timestamp) > tolerance:
        return False
    expected = sign(secret, timestamp, body).split("v1=", 1)[1]
    return hmac.compare_digest(expected, fields.get("v1", ""))


class DeliveryRefused(Exception):
    """The URL (or a redirect) points somewhere webhooks may not go."""


@dataclass
class DeliveryResult:
    status: int
    latency_ms: float


def post_signed(url: str, payload: dict, *, secret: str, timeout: float,
                timestamp: int | None = None) -> DeliveryResult:
    """POST `payload` as signed JSON; follows up to 3 redirects, checking each hop."""
    body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    timestamp = timestamp if timestamp is not None else int(time.time())
    started = time.monotonic()
    for _ in range(MAX_REDIRECTS + 1):
        # Each hop is checked and pinned like the first: a redirect is just another URL.
        try:
            target = check_url(url)
        except OutboundURLRefused as exc:
            raise DeliveryRefused(f"{url}: {' '.join(exc.messages)}") from exc
        with target.pool(urllib3.Timeout(total=timeout)) as pool:
            response = target.post(pool, body, {
                "Content-Type": "application/json",
                "User-Agent": "community-automation-webhooks/1",
                SIGNATURE_HEADER: sign(secret, timestamp, body),
                "X-Webhook-Timestamp": str(timestamp)})
        location = response.headers.get("Location")
        if response.status in (301, 302, 303, 307, 308) and location:
            try:
                url = urljoin(url, location)
            except ValueError as exc:  # e.g. a malformed bracketed host in Location
                raise DeliveryRefused(f"redirect to {location!r}: {exc}") from exc
            continue
        return DeliveryResult(response.status, (time.monotonic() - started) * 1000)
    raise DeliveryRefused(f"more than {MAX_REDIRECTS} redirects")
