"""Signed webhook POSTs that connect only to addresses the SSRF check approved."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urljoin, urlsplit

import urllib3
from django.core.exceptions import ValidationError

from .url_safety import resolve_safe_addresses

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


def _pool(url: str, address: str, timeout: float) -> urllib3.HTTPConnectionPool:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    common = {"port": port, "timeout": urllib3.Timeout(total=timeout), "retries": False,
              "maxsize": 1}
    if parts.scheme == "https":
        # Connect to the checked address; verify the certificate and send SNI for the name.
        return urllib3.HTTPSConnectionPool(address, server_hostname=parts.hostname,
                                           assert_hostname=parts.hostname,
                                           cert_reqs="CERT_REQUIRED", **common)
    return urllib3.HTTPConnectionPool(address, **common)


def post_signed(url: str, payload: dict, *, secret: str, timeout: float,
                timestamp: int | None = None) -> DeliveryResult:
    """POST `payload` as signed JSON; follows up to 3 redirects, checking each hop."""
    body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    timestamp = timestamp if timestamp is not None else int(time.time())
    started = time.monotonic()
    for _ in range(MAX_REDIRECTS + 1):
        try:
            address = resolve_safe_addresses(url)[0]
        except ValidationError as exc:
            raise DeliveryRefused(f"{url}: {' '.join(exc.messages)}") from exc
        parts = urlsplit(url)
        host_header = parts.hostname + (f":{parts.port}" if parts.port else "")
        path = parts.path or "/"
        if parts.query:
            path += f"?{parts.query}"
        with _pool(url, address, timeout) as pool:
            response = pool.urlopen(
                "POST", path, body=body, redirect=False, assert_same_host=False,
                headers={"Host": host_header, "Content-Type": "application/json",
                         "User-Agent": "community-automation-webhooks/1",
                         SIGNATURE_HEADER: sign(secret, timestamp, body),
                         "X-Webhook-Timestamp": str(timestamp)},
            )
        location = response.headers.get("Location")
        if response.status in (301, 302, 303, 307, 308) and location:
            url = urljoin(url, location)
            continue
        return DeliveryResult(response.status, (time.monotonic() - started) * 1000)
    raise DeliveryRefused(f"more than {MAX_REDIRECTS} redirects")
