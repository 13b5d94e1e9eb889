"""daily_community_digest: the day's top posts, new members and upcoming events, by email
and push, to the members who opted in — at most once per member, local day and channel.

Idempotency: the DigestDelivery ledger, keyed (community, member, local date, channel).
Each batch first claims its rows (`pending`), then sends, then records `sent`, `failed`
(retried by a later attempt, up to MAX_SEND_ATTEMPTS) or `bounced` (hard; never again).
Only one attempt per community holds the platform's run lock at a time (a lease its process
keeps renewing), so a `pending` row found at the start of a run was left by an attempt that
died between claim and send: it is sent now (at least once, never lost; the window is the one
message sent but not yet recorded).
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from django import forms
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from automation.errors import RetryableJobError
from automation.registry import tenant_job
from communities.models import Community, Member

from ..digest import DigestContent, build_digest, render_email, render_push
from ..mail import (
    HARD_BOUNCE,
    EmailBatch,
    SendResult,
    SmtpUnavailable,
    normalise,
    record_bounce,
    suppressed_among,
)
from ..models import Channel, DigestDelivery, PushDevice
from ..preferences import DIGEST_EMAIL, DIGEST_PUSH
from ..push import INVALID_TOKEN, PushClient, PushUnavailable, push_configured

MAX_SEND_ATTEMPTS = 3
MAX_LISTED_FAILURES = 20
SKIP_KEYS = ("skipped_opted_out", "skipped_suppressed", "skipped_no_device",
             "skipped_push_unconfigured", "skipped_already_sent", "skipped_gave_up",
             "skipped_nothing_to_say")


class DigestParams(forms.Form):
    batch_size = forms.IntegerField(
        min_value=1, max_value=1000, initial=100, required=False,
        help_text="members per batch; each batch claims its ledger rows and reuses one "
                  "SMTP connection",
    )
    top_posts = forms.IntegerField(min_value=1, max_value=20, initial=5, required=False,
                                   help_text="how many top posts the digest lists")
    dry_run = forms.BooleanField(
        initial=False, required=False,
        help_text="count who would get the digest; send nothing, write no ledger rows",
    )


@dataclass
class Tally:
    """The run's figures, overall and per channel."""

    channels: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    latencies: list[float] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    batches: int = 0

    def add(self, channel: str, key: str, n: int = 1) -> None:
        if n:
            self.channels[channel][key] += n

    def total(self, key: str) -> int:
        return sum(counter[key] for counter in self.channels.values())

    def failure(self, channel: str, member: Member, error: str) -> None:
        if len(self.failures) < MAX_LISTED_FAILURES:
            self.failures.append({"channel": channel, "member_id": member.pk,
                                  "error": error[:300]})

    def summary(self, content: DigestContent, **extra: Any) -> dict[str, Any]:
        email = self.channels[Channel.EMAIL]
        attempted_email = email["sent"] + email["failed"]
        latencies = sorted(self.latencies)
        figures: dict[str, Any] = {
            "sent": self.total("sent"),
            "skipped": sum(self.total(key) for key in SKIP_KEYS),
            "failed": self.total("failed"),
            "bounced": email["bounced_hard"] + email["bounced_soft"],
            "bounce_rate": round((email["bounced_hard"] + email["bounced_soft"])
                                 / attempted_email, 4) if attempted_email else 0.0,
            "latency_ms_p50": round(statistics.median(latencies), 1) if latencies else 0.0,
            "latency_ms_max": round(latencies[-1], 1) if latencies else 0.0,
        }
        figures.update({key: self.total(key) for key in SKIP_KEYS})
        figures.update({
            "bounced_hard": email["bounced_hard"],
            "bounced_soft": email["bounced_soft"],
            "devices_deactivated": self.channels[Channel.PUSH]["devices_deactivated"],
            "batches": self.batches,
        })
        figures.update(extra)
        figures["channels"] = {channel: dict(self.channels[channel])
                               for channel in (Channel.EMAIL, Channel.PUSH)}
        figures["content"] = content.figures()
        figures["failures"] = self.failures
        return figures


# --- who gets what ------------------------------------------------------------------


def recipients(community: Community) -> list[Member]:
    return list(community.members.filter(is_active=True, anonymized_at__isnull=True)
                .exclude(email="").order_by("pk"))


def plan_email(members: Sequence[Member], tally: Tally) -> list[Member]:
    wanted = [m for m in members if m.wants(DIGEST_EMAIL)]
    tally.add(Channel.EMAIL, "skipped_opted_out", len(members) - len(wanted))
    suppressed = suppressed_among(m.email for m in wanted)
    planned = [m for m in wanted if normalise(m.email) not in suppressed]
    tally.add(Channel.EMAIL, "skipped_suppressed", len(wanted) - len(planned))
    return planned


def plan_push(members: Sequence[Member], tally: Tally) -> list[Member]:
    wanted = [m for m in members if m.wants(DIGEST_PUSH)]
    tally.add(Channel.PUSH, "skipped_opted_out", len(members) - len(wanted))
    with_device = set(PushDevice.objects.filter(member__in=wanted, is_active=True)
                      .values_list("member_id", flat=True))
    planned = [m for m in wanted if m.pk in with_device]
    tally.add(Channel.PUSH, "skipped_no_device", len(wanted) - len(planned))
    if planned and not push_configured():
        tally.add(Channel.PUSH, "skipped_push_unconfigured", len(planned))
        return []
    return planned


def chunks(items: Sequence[Member], size: int) -> Iterator[Sequence[Member]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


# --- the ledger -----------------------------------------------------------------------


def claim(community: Community, members: Sequence[Member], local_date: date, channel: str,
          slot: datetime, tally: Tally,
          clock: Callable[[], datetime]) -> list[tuple[Member, DigestDelivery]]:
    """Claim the ledger rows of a batch; returns the (member, row) pairs to send now."""
    with transaction.atomic():
        DigestDelivery.objects.bulk_create(
            [DigestDelivery(community=community, member=m, local_date=local_date,
                            channel=channel, slot=slot) for m in members],
            ignore_conflicts=True,
        )
        rows = {row.member_id: row for row in DigestDelivery.objects.filter(
            community=community, local_date=local_date, channel=channel,
            member_id__in=[m.pk for m in members])}
        claimed = []
        for member in members:
            row = rows[member.pk]
            if row.status in (DigestDelivery.Status.SENT, DigestDelivery.Status.BOUNCED):
                tally.add(channel, "skipped_already_sent")
            elif row.attempts >= MAX_SEND_ATTEMPTS:
                tally.add(channel, "skipped_gave_up")
            else:
                claimed.append((member, row))
        DigestDelivery.objects.filter(pk__in=[row.pk for _, row in claimed]).update(
            status=DigestDelivery.Status.PENDING, claimed_at=clock())
    return claimed


def settle(row: DigestDelivery, status: str, *, latency_ms: float | None, error: str = "",
           smtp_code: int | None = None, sent_at: datetime | None = None) -> None:
    DigestDelivery.objects.filter(pk=row.pk).update(
        status=status, attempts=F("attempts") + 1, latency_ms=latency_ms,
        last_error=error[:2000], smtp_code=smtp_code, sent_at=sent_at)


# --- sending --------------------------------------------------------------------------


def send_email(community: Community, content: DigestContent, members: Sequence[Member],
               batch_size: int, tally: Tally, clock: Callable[[], datetime]) -> None:
    for chunk in chunks(members, batch_size):
        claimed = claim(community, chunk, content.local_date, Channel.EMAIL, content.now,
                        tally, clock)
        if not claimed:
            continue
        tally.batches += 1
        # Claimed rows are `pending` until settled: if the server is down (raised here) or
        # drops us, they wait for the retry.
        with EmailBatch() as batch:
            for member, row in claimed:
                result = batch.send(render_email(content, member))
                record_email(community, member, row, result, tally, clock)


def record_email(community: Community, member: Member, row: DigestDelivery,
                 result: SendResult, tally: Tally, clock: Callable[[], datetime]) -> None:
    tally.latencies.append(result.latency_ms)
    if result.ok:
        tally.add(Channel.EMAIL, "sent")
        settle(row, DigestDelivery.Status.SENT, latency_ms=result.latency_ms, sent_at=clock())
        return
    tally.add(Channel.EMAIL, "failed")
    tally.failure(Channel.EMAIL, member, result.error)
    status = DigestDelivery.Status.FAILED
    if result.bounced:
        record_bounce(community, member, member.email, result, source="daily_digest",
                      clock=clock)
        hard = result.outcome == HARD_BOUNCE
        tally.add(Channel.EMAIL, "bounced_hard" if hard else "bounced_soft")
        if hard:
            status = DigestDelivery.Status.BOUNCED
    settle(row, status, latency_ms=result.latency_ms, error=result.error,
           smtp_code=result.smtp_code)


def send_push(community: Community, content: DigestContent, members: Sequence[Member],
              batch_size: int, tally: Tally, clock: Callable[[], datetime]) -> None:
    for chunk in chunks(members, batch_size):
        claimed = claim(community, chunk, content.local_date, Channel.PUSH, content.now,
                        tally, clock)
        if not claimed:
            continue
        tally.batches += 1
        devices: dict[int, list[PushDevice]] = defaultdict(list)
        for device in PushDevice.objects.filter(
                member__in=[m for m, _ in claimed], is_active=True).order_by("pk"):
            devices[device.member_id].append(device)
        with PushClient(clock=clock) as client:
            for member, row in claimed:
                title, body, data = render_push(content, member)
                results = [client.send(d, title=title, body=body, data=data)
                           for d in devices[member.pk]]
                latency = max((r.latency_ms for r in results), default=0.0)
                tally.latencies.extend(r.latency_ms for r in results)
                invalid = sum(r.outcome == INVALID_TOKEN for r in results)
                tally.add(Channel.PUSH, "devices_deactivated", invalid)
                if any(r.ok for r in results):
                    tally.add(Channel.PUSH, "sent")
                    settle(row, DigestDelivery.Status.SENT, latency_ms=latency, sent_at=clock())
                    continue
                error = "; ".join(r.error for r in results) or "no active device"
                tally.add(Channel.PUSH, "failed")
                tally.failure(Channel.PUSH, member, error)
                settle(row, DigestDelivery.Status.FAILED, latency_ms=latency, error=error)


def count_already_sent(community: Community, local_date: date, channel: str,
                       members: Sequence[Member]) -> int:
    return DigestDelivery.objects.filter(
        community=community, local_date=local_date, channel=channel,
        member_id__in=[m.pk for m in members],
        status__in=[DigestDelivery.Status.SENT, DigestDelivery.Status.BOUNCED],
    ).count()


# --- the job --------------------------------------------------------------------------


def run_digest(community: Community, now: datetime, *, batch_size: int = 100,
               top_posts: int = 5, dry_run: bool = False,
               clock: Callable[[], datetime] = timezone.now) -> dict[str, Any]:
    """The digest for the local day ending at `now`; `clock` only stamps audit times."""
    content = build_digest(community, now, top_posts=top_posts)
    members = recipients(community)
    tally = Tally()
    plans = {Channel.EMAIL: plan_email(members, tally), Channel.PUSH: plan_push(members, tally)}

    if content.is_empty:
        for channel, planned in plans.items():
            tally.add(channel, "skipped_nothing_to_say", len(planned))
        return tally.summary(content, skip_reason="nothing_to_say")

    if dry_run:
        would = 0
        for channel, planned in plans.items():
            done = count_already_sent(community, content.local_date, channel, planned)
            tally.add(channel, "skipped_already_sent", done)
            would += len(planned) - done
        sample = render_email(content, plans[Channel.EMAIL][0]).subject \
            if plans[Channel.EMAIL] else ""
        return tally.summary(content, dry_run=True, would_send=would, sample_subject=sample)

    down: list[str] = []
    for channel, sender in ((Channel.EMAIL, send_email), (Channel.PUSH, send_push)):
        try:
            sender(community, content, plans[channel], batch_size, tally, clock)
        except (SmtpUnavailable, PushUnavailable) as exc:
            # One channel being down does not hold back the other; the run is retried
            # below and the ledger makes the retry send only what is still pending.
            down.append(str(exc))
    if down:
        raise RetryableJobError(
            f"{'; '.join(down)} (this attempt sent {tally.total('sent')}, "
            f"failed {tally.total('failed')}; unsent members stay pending for the retry)"
        )
    return tally.summary(content)


@tenant_job(
    name="daily_community_digest",
    description="Top posts, new members and upcoming events of the last local day, by email "
                "and push to members who opted in; once per member, day and channel.",
    category="notifications",
    queue="notifications",
    cron="0 12 * * *",
    soft_time_limit=1500,
    time_limit=1800,
    max_retries=3,
    backoff_base=60.0,
    backoff_cap=900.0,
    params_form=DigestParams,
)
def daily_community_digest(community: Community, now: datetime, batch_size: int = 100,
                           top_posts: int = 5, dry_run: bool = False) -> dict[str, Any]:
    return run_digest(community, now, batch_size=batch_size, top_posts=top_posts,
                      dry_run=dry_run)
