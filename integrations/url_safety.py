"""Tenant webhook URLs: the core's outbound-URL guard, under the name migrations record.

The rule itself lives in `automation.outbound_urls`, shared with every other configured
destination; `validate_webhook_url` stays here because the migrations of integrations and
moderation name this path.
"""

from __future__ import annotations

from automation.outbound_urls import check_url


def validate_webhook_url(url: str, *, allow_loopback: bool | None = None) -> None:
    """Model validator: `url` passes the outbound-URL guard (raises ValidationError)."""
    check_url(url, allow_loopback=allow_loopback)
