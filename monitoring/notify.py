"""Delivery of alert notices: a Slack incoming webhook and/or email, both operator-configured.

Every check sends at most one message per channel: the notices of that check in one digest,
so an outage touching many jobs pages once, not once per job.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

import urllib3
from django.conf import settings
from django.core.mail import send_mail

from automation.outbound_urls import OutboundURLRefused, check_url

logger = logging.getLogger(__name__)

# Slack truncates long messages; a digest lists this many notices and counts the rest.
MAX_NOTICES_PER_MESSAGE = 25


@dataclass(frozen=True)
class Notice:
    """One line of a digest: an alert opened, still going on, or resolved."""

    event: str  # "opened", "repeated", "resolved"
    kind: str
    job_name: str
    community: str  # slug, or "" for job-wide alerts
    count: int
    text: str

    def line(self) -> str:
        where = f" @ {self.community}" if self.community else ""
        prefix = {"opened": "NEW", "repeated": "STILL", "resolved": "RESOLVED"}[self.event]
        return f"[{prefix}] {self.kind} {self.job_name}{where}: {self.text}"


@dataclass
class DeliveryResult:
    slack: bool | None = None  # None: not configured
    email: bool | None = None
    errors: list[str] = field(default_factory=list)

    @property
    def delivered(self) -> bool:
        return bool(self.slack) or bool(self.email)


def channels_configured() -> bool:
    return bool(settings.ALERT_SLACK_WEBHOOK_URL or settings.ALERT_EMAILS)


def _digest(notices: list[Notice]) -> tuple[str, str]:
    opened = sum(n.event == "opened" for n in notices)
    resolved = sum(n.event == "resolved" for n in notices)
    ongoing = len(notices) - opened - resolved
    parts = [f"{n} {label}" for n, label in
             ((opened, "new"), (ongoing, "ongoing"), (resolved, "resolved")) if n]
    subject = f"[automation] alerts: {', '.join(parts)}"
    if len(notices) == 1:
        subject = f"[automation] {notices[0].line()}"[:200]
    lines = [n.line() for n in notices[:MAX_NOTICES_PER_MESSAGE]]
    if len(notices) > MAX_NOTICES_PER_MESSAGE:
        lines.append(f"... and {len(notices) - MAX_NOTICES_PER_MESSAGE} more (see admin)")
    lines.append(f"Alerts: {settings.SITE_URL.rstrip('/')}/admin/monitoring/alert/")
    return subject, "\n".join(lines)


def post_slack(url: str, text: str, timeout: float) -> None:
    """POST a Slack message; raises on a refused URL, no answer or a non-2xx answer.

    The URL passes the outbound-URL guard like a tenant's, and the POST goes to the address
    it checked, without following redirects.
    """
    try:
        target = check_url(url)
    except OutboundURLRefused as exc:
        # The message names the host, never the URL: a Slack webhook's path is its secret.
        raise RuntimeError(f"refused: {' '.join(exc.messages)}") from exc
    with target.pool(urllib3.Timeout(connect=timeout, read=timeout)) as pool:
        response = target.post(pool, json.dumps({"text": text}).encode(),
                               {"Content-Type": "application/json"})
    if not 200 <= response.status < 300:
        raise RuntimeError(f"Slack answered {response.status}: {response.data[:200]!r}")


def deliver(notices: list[Notice]) -> DeliveryResult:
    """Send one digest to each configured channel; failures are logged and reported."""
    result = DeliveryResult()
    if not notices:
        return result
    subject, body = _digest(notices)
    if settings.ALERT_SLACK_WEBHOOK_URL:
        try:
            post_slack(settings.ALERT_SLACK_WEBHOOK_URL, f"*{subject}*\n{body}",
                       settings.ALERT_HTTP_TIMEOUT_SECONDS)
            result.slack = True
        except Exception as exc:
            result.slack = False
            result.errors.append(f"slack: {exc}")
            logger.warning("alert notice to Slack failed: %s", exc)
    if settings.ALERT_EMAILS:
        try:
            send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, list(settings.ALERT_EMAILS))
            result.email = True
        except Exception as exc:
            result.email = False
            result.errors.append(f"email: {exc}")
            logger.warning("alert notice by email failed: %s", exc)
    return result
