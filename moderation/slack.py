"""Posting a JSON message to a Slack incoming webhook.

Tenant-supplied webhook URLs connect only to the address the SSRF check approved (the
address checked is the address called); the platform's own URL from settings is trusted.
No redirects are followed: Slack does not redirect its webhooks, and a redirect would be a
way around the address check.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import urllib3
from django.core.exceptions import ValidationError

from integrations.url_safety import resolve_safe_addresses

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


def post_json(url: str, payload: dict, *, timeout: float, trusted: bool = False) -> SlackResponse:
    """POST `payload` as JSON to `url`; raises urllib3 errors when no answer came.

    `trusted=False` (a tenant's URL) resolves the host through the SSRF check and connects
    to that address; `trusted=True` (the operator's setting) connects as usual.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SlackRefused(f"{url!r} is not an http(s) URL")
    host = parts.hostname
    if not trusted:
        try:
            host = resolve_safe_addresses(url)[0]
        except ValidationError as exc:
            raise SlackRefused(" ".join(exc.messages)) from exc
    port = parts.port or (443 if parts.scheme == "https" else 80)
    common = {"port": port, "timeout": urllib3.Timeout(total=timeout), "retries": False,
              "maxsize": 1}
    if parts.scheme == "https":
        # Connect to the checked address; verify the certificate and send SNI for the name.
        pool = urllib3.HTTPSConnectionPool(host, server_hostname=parts.hostname,
                                           assert_hostname=parts.hostname,
                                           cert_reqs="CERT_REQUIRED", **common)
    else:
        pool = urllib3.HTTPConnectionPool(host, **common)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    body = json.dumps(payload, separators=(",", ":")).encode()
    started = time.monotonic()
    with pool:
        response = pool.urlopen(
            "POST", path, body=body, redirect=False, assert_same_host=False,
            headers={"Host": parts.netloc.rsplit("@", 1)[-1],
                     "Content-Type": "application/json; charset=utf-8",
                     "User-Agent": USER_AGENT},
        )
    return SlackResponse(
        status=response.status,
        body=response.data[:500].decode("utf-8", "replace"),
        latency_ms=(time.monotonic() - started) * 1000,
        retry_after=_retry_after(response.headers.get("Retry-After")),
    )
