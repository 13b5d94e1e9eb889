"""The push channel: a provider backend over HTTP (FCM / Web Push gateway style).

One JSON POST per device token to settings.PUSH_PROVIDER_URL with
`Authorization: Bearer PUSH_PROVIDER_TOKEN`; body {token, title, body, data}. One
urllib3 pool per batch, so keep-alive reuses the connection.

How answers are read:
- 2xx: delivered;
- 400/404/410 (and other 4xx about the token): the token is invalid → deactivate device;
- 401/403: our credentials are wrong — not the device's fault, so no device is touched;
  the send fails and the batch stops (PushUnavailable, retryable after a config fix);
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
from urllib.parse import urlsplit

import urllib3
from django.conf import settings
from django.utils import timezone

from automation.errors import RetryableJobError, is_retryable_status

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
        if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).hostname:
            raise PushNotConfigured(f"PUSH_PROVIDER_URL {url!r} is not an http(s) URL")
        self.url = url
        self.clock = clock
        self.pool = urllib3.PoolManager(
            num_pools=1, maxsize=1, retries=False,
            timeout=urllib3.Timeout(connect=min(timeout, 5.0), read=timeout),
        )
        self.headers = {"Content-Type": "application/json",
                        "User-Agent": "community-automation-push/1"}
        if settings.PUSH_PROVIDER_TOKEN:
            self.headers["Authorization"] = f"Bearer {settings.PUSH_PROVIDER_TOKEN}"

    def __enter__(self) -> PushClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.pool.clear()

    def send(self, device: PushDevice, *, title: str, body: str,
             data: dict[str, Any] | None = None) -> PushResult:
        """Send to one device; deactivates it when the provider says the token is invalid."""
        payload = {"token": device.token, "title": title[:200], "body": body[:1000],
                   # FCM data values are strings; keep the contract the same for every backend.
                   "data": {str(k): str(v) for k, v in (data or {}).items()}}
        started = time.monotonic()
        try:
            response = self.pool.request("POST", self.url, body=json.dumps(payload).encode(),
                                         headers=self.headers)
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
