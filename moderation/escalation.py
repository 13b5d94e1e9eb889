"""SLA arithmetic, the Slack Block Kit message, and the claim/record steps of an escalation."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.urls import reverse

from communities.models import Community

from .models import Escalation, Flag, ModerationPolicy, Severity

# Block Kit limits (https://api.slack.com/reference/block-kit/blocks).
HEADER_MAX = 150
FIELD_MAX = 2000
REASON_MAX = 500


def due_level(flag: Flag, policy: ModerationPolicy, now: datetime) -> int:
    """The escalation level a flag has reached at `now`: n once open n x its SLA (capped)."""
    sla = policy.sla_for(flag.severity)
    age = now - flag.created_at
    if age < sla:
        return 0
    return min(int(age / sla), policy.max_escalation_level)


@dataclass(frozen=True)
class Destination:
    url: str
    label: str  # "community" or "platform", recorded on the escalation


def destination_for(policy: ModerationPolicy) -> Destination | None:
    """The community's own channel if set (tenant input), else the platform's."""
    if policy.slack_webhook_url:
        return Destination(policy.slack_webhook_url, "community")
    if settings.TRUST_SAFETY_SLACK_WEBHOOK_URL:
        return Destination(settings.TRUST_SAFETY_SLACK_WEBHOOK_URL, "platform")
    return None


def admin_url(flag: Flag) -> str:
    return settings.SITE_URL.rstrip("/") + reverse("admin:moderation_flag_change",
                                                   args=[flag.pk])


def format_duration(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    days, rest = divmod(minutes, 1440)
    hours, mins = divmod(rest, 60)
    parts = [f"{days}d" if days else "", f"{hours}h" if hours else "", f"{mins}m" if mins else ""]
    return " ".join(p for p in parts if p) or "0m"


def _escape(text: str, limit: int) -> str:
    """Slack mrkdwn treats &, < and > as control characters; user text must not inject."""
    text = " ".join(text.split())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _content_summary(flag: Flag) -> str:
    content = flag.content
    if content is None:
        return f"{flag.target_type} {flag.target_id} (no longer stored)"
    text = getattr(content, "title", None) or content.body
    return f"{flag.target_type} {flag.target_id}: {_escape(text, 200)}"


def build_message(flag: Flag, level: int, community: Community, policy: ModerationPolicy,
                  now: datetime) -> dict:
    """The Block Kit payload for one escalation (with a plain-text fallback)."""
    sla = policy.sla_for(flag.severity)
    age = now - flag.created_at
    ratio = age / sla
    severity = Severity(flag.severity).label
    header = f"SLA breach, level {level}: {severity.lower()} flag in {community.name}"
    if len(header) > HEADER_MAX:
        header = header[: HEADER_MAX - 1] + "…"
    link = admin_url(flag)
    age_text = f"open {format_duration(age)}, SLA {format_duration(sla)} ({ratio:.1f}x)"
    return {
        "text": f"{header} ({age_text}): {link}",
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": header, "emoji": True}},
            {
                "type": "section",
                "fields": [
                    {"type": "mrkdwn",
                     "text": f"*Community*\n{_escape(community.name, 200)} (`{community.slug}`)"},
                    {"type": "mrkdwn", "text": f"*Severity*\n{severity}"},
                    {"type": "mrkdwn", "text": f"*Age vs SLA*\n{age_text}"},
                    {"type": "mrkdwn",
                     "text": f"*Escalation*\nlevel {level} of {policy.max_escalation_level}"},
                    {"type": "mrkdwn", "text": f"*Reason*\n{_escape(flag.reason, REASON_MAX)}"},
                    {"type": "mrkdwn", "text": f"*Content*\n{_content_summary(flag)}"},
                ],
            },
            {
                "type": "actions",
                "elements": [{
                    "type": "button",
                    "action_id": "open_flag_admin",
                    "text": {"type": "plain_text", "text": "Open flag in admin"},
                    "url": link,
                    "style": "danger" if level > 1 else "primary",
                }],
            },
            {
                "type": "context",
                "elements": [{"type": "mrkdwn",
                              "text": f"Flag #{flag.pk} · flagged "
                                      f"{flag.created_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
                                      f" · checked for {now.astimezone(UTC):%Y-%m-%d %H:%M} UTC"}],
            },
        ],
    }


def claim(flag: Flag, level: int, now: datetime, destination: str) -> tuple[Escalation | None,
                                                                              str]:
    """Take the escalation of (flag, level) for sending, before anything is posted.

    Returns (row, "new" | "retry") when this run should post, or (None, "already") when it
    was sent, or (None, "unconfirmed") when a run died during its POST.
    """
    row, created = Escalation.objects.get_or_create(
        flag=flag, level=level,
        defaults={"status": Escalation.Status.CLAIMED, "claimed_at": now,
                  "destination": destination},
    )
    if created:
        return row, "new"
    if row.status == Escalation.Status.SENT:
        return None, "already"
    if row.status == Escalation.Status.CLAIMED:
        return None, "unconfirmed"
    # failed (or superseded, if a lower level is due again after a policy change): retake
    # it with a conditional update so only one taker wins.
    taken = Escalation.objects.filter(pk=row.pk, status=row.status).update(
        status=Escalation.Status.CLAIMED, claimed_at=now, destination=destination)
    if not taken:
        return None, "already"
    row.refresh_from_db()
    return row, "retry"


def record_sent(row: Escalation, flag: Flag, status: int, response: str, now: datetime) -> None:
    with transaction.atomic():
        row.status = Escalation.Status.SENT
        row.sent_at = now
        row.attempts += 1
        row.slack_status = status
        row.slack_response = response[:500]
        row.error = ""
        row.save()
        flag.escalation_level = row.level
        flag.escalated_at = now
        flag.save(update_fields=["escalation_level", "escalated_at"])
        # A lower level that never got through is moot now that a higher one did.
        Escalation.objects.filter(flag=flag, level__lt=row.level,
                                  status=Escalation.Status.FAILED).update(
            status=Escalation.Status.SUPERSEDED)


def record_failed(row: Escalation, error: str, status: int | None, response: str) -> None:
    row.status = Escalation.Status.FAILED
    row.attempts += 1
    row.slack_status = status
    row.slack_response = response[:500]
    row.error = error[:2000]
    row.save()
