"""webhook_health_monitor: ping each enabled webhook, disable the ones that keep failing."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import urllib3
from django import forms
from django.core.mail import send_mail
from django.db import close_old_connections

from automation.registry import tenant_job
from communities.models import Community, Member

from ..delivery import DeliveryRefused, post_signed
from ..models import Webhook


class WebhookMonitorParams(forms.Form):
    failure_threshold = forms.IntegerField(
        min_value=1, max_value=100, initial=3, required=False,
        help_text="consecutive failed checks before the webhook is disabled",
    )
    timeout_seconds = forms.FloatField(min_value=0.5, max_value=30, initial=5.0, required=False)
    concurrency = forms.IntegerField(min_value=1, max_value=32, initial=8, required=False)


def ping(webhook: Webhook, community: Community, now: datetime, timeout: float) -> dict:
    """One signed health check; failures are returned, never raised."""
    payload = {"type": "ping", "community": community.slug, "webhook_id": webhook.pk,
               "sent_at": now.isoformat()}
    try:
        result = post_signed(webhook.url, payload, secret=webhook.signing_secret,
                             timeout=timeout)
    except DeliveryRefused as exc:
        return {"status": None, "latency_ms": None, "error": f"refused: {exc}"}
    except urllib3.exceptions.HTTPError as exc:
        return {"status": None, "latency_ms": None, "error": f"{type(exc).__name__}: {exc}"}
    error = "" if 200 <= result.status < 300 else f"HTTP {result.status}"
    return {"status": result.status, "latency_ms": round(result.latency_ms, 1), "error": error}


CHECK_FIELDS = ["last_checked_at", "last_checked_for", "last_status_code", "last_latency_ms",
                "last_error", "consecutive_failures", "enabled", "disabled_at",
                "disabled_reason", "updated_at"]


def record_check(webhook: Webhook, outcome: dict, now: datetime, threshold: int) -> bool:
    """Store the outcome on the webhook; returns True when this check disabled it."""
    webhook.last_checked_at = now
    webhook.last_checked_for = now
    webhook.last_status_code = outcome["status"]
    webhook.last_latency_ms = outcome["latency_ms"]
    webhook.last_error = outcome["error"]
    disabled = False
    if outcome["error"]:
        webhook.consecutive_failures += 1
        if webhook.consecutive_failures >= threshold:
            webhook.enabled = False
            webhook.disabled_at = now
            webhook.disabled_reason = (
                f"{webhook.consecutive_failures} consecutive failed health checks; "
                f"last: {outcome['error']}"
            )
            disabled = True
    else:
        webhook.consecutive_failures = 0
    webhook.save(update_fields=CHECK_FIELDS)
    return disabled


def tell_admins(community: Community, webhook: Webhook) -> int:
    admins = list(community.members.filter(role=Member.Role.ADMIN, is_active=True)
                  .values_list("email", flat=True))
    if not admins:
        return 0
    return send_mail(
        subject=f"[{community.name}] webhook {webhook.name!r} was disabled",
        message=(f"The webhook {webhook.name} ({webhook.url}) was disabled: "
                 f"{webhook.disabled_reason}.\nFix the endpoint, then enable it again."),
        from_email=None,
        recipient_list=admins,
        fail_silently=True,  # the disable is recorded either way; mail is best effort here
    )


@tenant_job(
    name="webhook_health_monitor",
    description="Ping each enabled webhook (signed); disable after N consecutive failures "
                "and tell the community's admins.",
    category="integrations",
    queue="automation",
    cron="*/10 * * * *",
    soft_time_limit=120,
    time_limit=180,
    max_retries=2,
    params_form=WebhookMonitorParams,
)
def webhook_health_monitor(community: Community, now: datetime, failure_threshold: int = 3,
                           timeout_seconds: float = 5.0, concurrency: int = 8) -> dict:
    webhooks = list(community.webhooks.filter(enabled=True).order_by("pk"))
    due = [w for w in webhooks if w.last_checked_for is None or w.last_checked_for < now]

    def check(webhook: Webhook) -> dict:
        try:
            return ping(webhook, community, now, timeout_seconds)
        finally:
            close_old_connections()

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        outcomes = list(pool.map(check, due))

    summary = {"checked": len(due), "healthy": 0, "failed": 0, "disabled": 0,
               "skipped_already_checked": len(webhooks) - len(due), "webhooks": []}
    for webhook, outcome in zip(due, outcomes, strict=True):
        summary["failed" if outcome["error"] else "healthy"] += 1
        if record_check(webhook, outcome, now, failure_threshold):
            summary["disabled"] += 1
            tell_admins(community, webhook)
        summary["webhooks"].append({"id": webhook.pk, **outcome})
    return summary
