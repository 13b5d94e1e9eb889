"""The push channel: a provider backend over HTTP (FCM / Web Push gateway style).

One JSON POST per device token to settings.PUSH_PROVIDER_URL with
`Authorization: Bearer PUSH_PROVIDER_TOKEN`; body {token, title, body, data}. One
urllib3 pool per batch, so keep-alive reuses the connection. The URL passes the
outbound-URL guard once per batch and the pool connects to the address it checked; no
redirect is followed.

How answers are read:
- 2xx: delivered;
- 400/404/410 (and other 4xx about the token): the token is invalid → deactivate device;
- 401/403: our credentials are wrong — not the device's fault, so no device is touched;
  the send fails and the batch stops (PushUnavailable, retryable after a config fix);
- 3xx: not followed (the next hop is unchecked) and not the device's fault → PushUnavailable;
- 429/5xx: retryable for that device;
- connection error / timeout: the provider is down → PushUnavailable.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import urllib3
from django.conf import settings
from django.utils import timezone

from automation.errors import RetryableJobError, is_retryable_status
from automation.outbound_urls import OutboundURLRefused, check_url

from .models import PushDevice

DELIVERED = "delivered"
INVALID_TOKEN = "invalid_token"  # noqa: S105 - an outcome name, not a secret
RETRYABLE = "retryable"
AUTH_STATUSES = (401, 403)


class PushUnavailable(RetryableJobError):
    """The push provider cannot be reached or refuses our credentials."""


class PushNotConfigured(Exception):
    """PUSH_PROVIDER_URL is not set: push is off for this installation."""


@dataclass(frozen=True)
class PushResult:
    outcome: str  # DELIVERED, INVALID_TOKEN or RETRYABLE
    status: int | None
    latency_ms: float
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.outcome == DELIVERED


def push_configured() -> bool:
    return bool(settings.PUSH_PROVIDER_URL)


class PushClient:
    """Sends push messages for one batch over one connection pool."""

    def __init__(self, *, timeout: float = 10.0,
                 clock: Callable[[], datetime] = timezone.now) -> None:
        url = settings.PUSH_PROVIDER_URL
        if not url:
            raise PushNotConfigured("PUSH_PROVIDER_URL is not set")
        try:
            self.target = check_url(url)
        except OutboundURLRefused as exc:
            reason = " ".join(exc.messages)
            if exc.code in ("scheme", "host"):
                raise PushNotConfigured(
                    f"PUSH_PROVIDER_URL is not an http(s) URL: {reason}") from exc
            # Otherwise retryable, like refused credentials: the channel waits for a config
            # (or DNS) fix instead of failing every member's notification.
            raise PushUnavailable(f"push provider URL refused: {reason}") from exc
        self.url = url
        self.clock = clock
        self.pool = self.target.pool(
            urllib3.Timeout(connect=min(timeout, 5.0), read=timeout))
        self.headers = {"Content-Type": "application/json",
                        "User-Agent": "community-automation-push/1"}
        if settings.PUSH_PROVIDER_TOKEN:
            self.headers["Authorization"] = f"Bearer {settings.PUSH_PROVIDER_TOKEN}"

    def __enter__(self) -> PushClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.pool.close()

    def send(self, device: PushDevice, *, title: str, body: str,
             data: dict[str, Any] | None = None) -> PushResult:
        """Send to one device; deactivates it when the provider says the token is invalid."""
        payload = {"token": device.token, "title": title[:200], "body": body[:1000],
                   # FCM data values are strings; keep the contract the same for every backend.
                   "data": {str(k): str(v) for k, v in (data or {}).items()}}
        started = time.monotonic()
        try:
            response = self.target.post(self.pool, json.dumps(payload).encode(), self.headers)
        except urllib3.exceptions.HTTPError as exc:
            raise PushUnavailable(
                f"push provider {self.url} unreachable: {type(exc).__name__}: {exc}"
            ) from exc
        latency = (time.monotonic() - started) * 1000
        status = response.status
        detail = response.data[:300].decode(errors="replace")
        if 200 <= status < 300:
            PushDevice.objects.filter(pk=device.pk).update(last_success_at=self.clock())
            return PushResult(DELIVERED, status, latency)
        if 300 <= status < 400:
            # Redirects are not followed (the next hop is unchecked); the device is not at
            # fault, so none is deactivated: the channel waits for a config fix.
            raise PushUnavailable(
                f"push provider answered a redirect (HTTP {status}), which is not followed; "
                "check PUSH_PROVIDER_URL")
        if status in AUTH_STATUSES:
            raise PushUnavailable(
                f"push provider refused our credentials (HTTP {status}); "
                "check PUSH_PROVIDER_TOKEN"
            )
        if is_retryable_status(status):
            return PushResult(RETRYABLE, status, latency, f"HTTP {status} {detail}".strip())
        reason = f"provider answered HTTP {status} for the token {detail}".strip()
        deactivate(device, reason, self.clock())
        return PushResult(INVALID_TOKEN, status, latency, reason)


def deactivate(device: PushDevice, reason: str, at: datetime) -> None:
    device.is_active = False
    device.deactivated_at = at
    device.deactivated_reason = reason[:300]
    device.save(update_fields=["is_active", "deactivated_at", "deactivated_reason"])
