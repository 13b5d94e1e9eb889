"""Posting a JSON message to a Slack incoming webhook.

Every URL, the community's and the platform's alike, goes through the outbound-URL guard
and the POST connects to the address it checked. No redirects are followed: Slack does not
redirect its webhooks, and a redirect would be a way around the address check.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import urllib3

from automation.outbound_urls import OutboundURLRefused, check_url

USER_AGENT = "community-automation-trust-safety/1"


class SlackRefused(Exception):
    """The webhook URL points somewhere this platform may not connect to."""


@dataclass(frozen=True)
class SlackResponse:
    status: int
    body: str
    latency_ms: float
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


def post_json(url: str, payload: dict, *, timeout: float) -> SlackResponse:
    """POST `payload` as JSON to `url`; raises urllib3 errors when no answer came.

    Raises SlackRefused when the outbound-URL guard refuses the URL: the operator's
    setting and a tenant's pass the same guard.
    """
    try:
        target = check_url(url)
    except OutboundURLRefused as exc:
        raise SlackRefused(" ".join(exc.messages)) from exc
    body = json.dumps(payload, separators=(",", ":")).encode()
    started = time.monotonic()
    with target.pool(urllib3.Timeout(total=timeout)) as pool:
        response = target.post(pool, body, {
            "Content-Type": "application/json; charset=utf-8", "User-Agent": USER_AGENT})
    return SlackResponse(
        status=response.status,
        body=response.data[:500].decode("utf-8", "replace"),
        latency_ms=(time.monotonic() - started) * 1000,
        retry_after=_retry_after(response.headers.get("Retry-After")),
    )
