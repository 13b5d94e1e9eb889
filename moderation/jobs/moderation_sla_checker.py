"""moderation_sla_checker: escalate open flags past their SLA to Trust & Safety on Slack.

Once per flag and level: level n is due when a flag has been open n times the SLA of its
severity (the community's ModerationPolicy, or the defaults). Only the highest due level is
sent, so a flag found late is one message, not a burst.

Failure handling, chosen so that nothing is lost and nothing is sent twice:
- the Escalation row is claimed (created) before the POST; a 2xx marks it sent;
- a refused POST (4xx/5xx, timeout, connection error) marks it failed; the next attempt of
  this run (when the whole service looks down) or the next run posts it again;
- the service looks down when nothing got through and every failure was transient
  (connection error, timeout, 5xx, 429), or on a 429: the rest of the flags are deferred
  (not claimed) and the run raises RetryableJobError, so the platform retries it with
  backoff; a retry finds the sent ones recorded and posts only the rest;
- when nothing got through and the failures were permanent (4xx, a URL refused by the SSRF
  check) the run fails with PermanentJobError, so a misconfigured channel shows as a failed
  run; the rows stay failed and the next run tries them again;
- a timeout counts as not delivered (retried): if Slack took the message but answered late,
  it arrives twice; losing an escalation is the worse outcome;
- a row still `claimed` at the start of a run means a run died during its POST: whether
  Slack got it is unknown, so it is reported as `unconfirmed` and not re-sent (an operator
  can send it again from the admin).
"""

from __future__ import annotations

from datetime import datetime

import urllib3
from django import forms

from automation.errors import PermanentJobError, RetryableJobError, is_retryable_status
from automation.registry import tenant_job
from communities.models import Community

from ..escalation import (
    Destination,
    build_message,
    claim,
    destination_for,
    due_level,
    record_failed,
    record_sent,
)
from ..models import Flag, ModerationPolicy
from ..slack import SlackRefused, post_json

# Transient failures in a row, with nothing delivered, after which Slack is taken as down.
OUTAGE_THRESHOLD = 3
DETAILS_MAX = 100


class SlaCheckerParams(forms.Form):
    timeout_seconds = forms.FloatField(
        min_value=0.5, max_value=30, initial=5.0, required=False,
        help_text="timeout of one Slack POST")
    max_messages = forms.IntegerField(
        min_value=1, max_value=1000, initial=100, required=False,
        help_text="most escalations posted in one run; the rest wait for the next run")


def _post(destination: Destination, payload: dict, timeout: float) -> tuple[int | None, str, str,
                                                                            float | None]:
    """(status, response body, error, retry_after) of one POST; failures are returned."""
    try:
        response = post_json(destination.url, payload, timeout=timeout)
    except SlackRefused as exc:
        return None, "", f"refused: {exc}", None
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        return None, "", f"{type(exc).__name__}: {exc}", None
    error = "" if response.ok else f"HTTP {response.status} {response.body[:200]}".strip()
    return response.status, response.body, error, response.retry_after


def _transient(status: int | None, error: str) -> bool:
    if status is None:
        return not error.startswith("refused:")
    return is_retryable_status(status)


@tenant_job(
    name="moderation_sla_checker",
    description="Escalate open flags past their SLA to Trust & Safety (Slack), once per flag "
                "and level; breach count.",
    category="moderation",
    queue="automation",
    cron="*/15 * * * *",
    soft_time_limit=240,
    time_limit=300,
    max_retries=3,
    backoff_base=30.0,
    backoff_cap=300.0,
    params_form=SlaCheckerParams,
)
def moderation_sla_checker(community: Community, now: datetime, timeout_seconds: float = 5.0,
                           max_messages: int = 100) -> dict:
    policy = ModerationPolicy.for_community(community)
    flags = (Flag.objects.filter(community=community, status=Flag.Status.OPEN,
                                 created_at__lte=now)
             .select_related("post", "comment").order_by("created_at", "pk"))
    summary: dict = {"open": 0, "breached": 0, "escalated": 0, "already_escalated": 0,
                     "failed": 0, "unconfirmed": 0, "deferred": 0, "escalations": []}
    due: list[tuple[Flag, int]] = []
    for flag in flags:
        summary["open"] += 1
        level = due_level(flag, policy, now)
        if level == 0:
            continue
        summary["breached"] += 1
        if flag.escalation_level >= level:
            summary["already_escalated"] += 1
        else:
            due.append((flag, level))
    if not due:
        return summary

    destination = destination_for(policy)
    if destination is None:
        raise PermanentJobError(
            f"{len(due)} flags are past their SLA but no Trust & Safety Slack webhook is "
            "configured: set TRUST_SAFETY_SLACK_WEBHOOK_URL or the community's policy URL")

    transient_streak = 0
    outage: str | None = None
    retry_after: float | None = None
    last_error = ""
    posted = 0
    for flag, level in due:
        if outage or posted >= max_messages:
            summary["deferred"] += 1
            continue
        row, how = claim(flag, level, now, destination.label)
        if row is None:
            summary["already_escalated" if how == "already" else "unconfirmed"] += 1
            continue
        posted += 1
        payload = build_message(flag, level, community, policy, now)
        status, body, error, retry_after_header = _post(destination, payload, timeout_seconds)
        detail = {"flag": flag.pk, "level": level, "attempt": how, "status": status}
        if not error:
            record_sent(row, flag, status, body, now)
            summary["escalated"] += 1
            transient_streak = 0
        else:
            record_failed(row, error, status, body)
            summary["failed"] += 1
            detail["error"] = last_error = error[:300]
            if _transient(status, error):
                transient_streak += 1
            if status == 429:
                outage, retry_after = f"rate limited by Slack ({error})", retry_after_header
            elif transient_streak >= OUTAGE_THRESHOLD and not summary["escalated"]:
                outage = f"Slack webhook unavailable: {error}"
        if len(summary["escalations"]) < DETAILS_MAX:
            summary["escalations"].append(detail)

    nothing_delivered = summary["failed"] and not summary["escalated"]
    if outage is None and nothing_delivered and transient_streak == summary["failed"]:
        outage = f"Slack webhook unavailable: {last_error}"
    if outage:
        # Recorded so far stays recorded; the retry posts only the failed and deferred.
        raise RetryableJobError(
            f"{outage} ({destination.label} webhook); {summary['escalated']} escalated, "
            f"{summary['failed']} failed, {summary['deferred']} deferred",
            retry_after=retry_after,
        )
    if nothing_delivered:
        # Every POST refused for a reason another attempt cannot fix (bad URL, 4xx): fail
        # the run so it shows; the rows stay failed and the next run tries them again.
        raise PermanentJobError(
            f"Slack refused every escalation ({destination.label} webhook): {last_error}; "
            f"{summary['failed']} failed")
    return summary
