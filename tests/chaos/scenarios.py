"""What chaos scenarios share: the data they seed, the outside counts they assert, the scale.

Scale: the normal suite runs every scenario small and fast; `scripts/chaos` sets
CHAOS_SCALE=full for the release-sized version (2,000 digest recipients, outages of two
minutes) and runs the scenarios marked `full_only` as well.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone

from automation.models import JobRun
from billing.models import Invoice, Subscription
from communities.models import Community, Member, Post
from monitoring.reaper import ReapReport, reap_stuck_runs

from .harness import wait_until

FULL = os.environ.get("CHAOS_SCALE") == "full"
full_only = pytest.mark.skipif(not FULL, reason="release-sized chaos: scripts/chaos")

# Digest recipients, and how long an outage lasts, by scale.
# CHAOS_MEMBERS / CHAOS_OUTAGE_SECONDS override them (a quick look at one scenario).
MEMBERS = int(os.environ.get("CHAOS_MEMBERS", 2000 if FULL else 200))
OUTAGE_SECONDS = float(os.environ.get("CHAOS_OUTAGE_SECONDS", 120.0 if FULL else 10.0))
# Seconds the SMTP sink takes per message: the digest runs long enough to be hit mid-send.
SMTP_DELAY = 0.004 if FULL else 0.01


def seed_digest_community(community: Community, members: int = MEMBERS) -> list[str]:
    """Members who all want the digest, and a post of the last day for it to list."""
    Member.objects.bulk_create([
        Member(community=community, email=f"m{i:05d}@{community.slug}.example",
               display_name=f"Member {i}", joined_at=timezone.now() - timedelta(days=90),
               notification_preferences={"digest_email": True, "digest_push": False})
        for i in range(members)
    ])
    Post.objects.create(community=community, title="What happened today", reaction_count=3,
                        created_at=timezone.now() - timedelta(hours=1))
    return sorted(Member.objects.filter(community=community).values_list("email", flat=True))


def mail_env(smtp_port: int) -> dict[str, str]:
    """Worker environment that sends real SMTP to the test's sink."""
    return {"TEST_EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "EMAIL_HOST": "127.0.0.1", "EMAIL_PORT": str(smtp_port), "EMAIL_TIMEOUT": "5"}


@dataclass
class Deliveries:
    """What the SMTP sink received, per recipient."""

    per_address: Counter

    @classmethod
    def of(cls, smtp_server: Any) -> Deliveries:
        with smtp_server.handler.lock:
            mails = list(smtp_server.handler.mails)
        return cls(Counter(address for mail in mails for address in mail.rcpt_tos))

    def missing(self, expected: list[str]) -> list[str]:
        return [address for address in expected if not self.per_address[address]]

    @property
    def duplicates(self) -> int:
        return sum(count - 1 for count in self.per_address.values() if count > 1)

    @property
    def total(self) -> int:
        return sum(self.per_address.values())


def wait_for_sent(smtp_server: Any, at_least: int, timeout: float = 60.0) -> int:
    return wait_until(lambda: Deliveries.of(smtp_server).total >= at_least
                      and Deliveries.of(smtp_server).total, timeout,
                      message=f"fewer than {at_least} messages reached the SMTP sink")


def settle(run: JobRun, timeout: float, *, reap_every: float = 1.0,
           log: Callable[[], str] = lambda: "") -> tuple[JobRun, list[ReapReport]]:
    """Wait for the run's final state, running the reaper as beat would meanwhile.

    Beat sends the reaper every AUTOMATION_REAPER_INTERVAL_SECONDS (60 s); the scenarios call
    it every `reap_every` seconds so their recovery times measure the lease, not the
    interval (the documented bound adds the interval).
    """
    reports: list[ReapReport] = []
    last = 0.0

    def done() -> JobRun | None:
        nonlocal last
        if time.monotonic() - last >= reap_every:
            last = time.monotonic()
            reports.append(reap_stuck_runs(timezone.now()))
        run.refresh_from_db()
        return run if run.is_finished else None

    final = wait_until(done, timeout, interval=0.2,
                       message=lambda: f"run {run.pk} still {run.status}\n{log()}")
    return final, reports


def resumed(reports: list[ReapReport]) -> int:
    return sum(len(r.resumed) + len(r.republished) for r in reports)


@contextmanager
def timed() -> Iterator[Callable[[], float]]:
    started = time.monotonic()
    yield lambda: round(time.monotonic() - started, 2)


def past_due_invoices(community: Community, count: int, slot: datetime,
                      sandbox: Any) -> list[str]:
    """`count` open invoices whose first dunning retry is due at `slot`; Stripe pays them."""
    ids = []
    for i in range(count):
        member = Member.objects.create(community=community, email=f"payer{i}@x.example",
                                       display_name=f"Payer {i}")
        stripe_id = f"in_chaos_{community.pk}_{i}"
        subscription = Subscription.objects.create(
            community=community, member=member, plan="Member", amount_cents=1200,
            currency="usd", status=Subscription.Status.PAST_DUE,
            stripe_customer_id=f"cus_{stripe_id}", stripe_subscription_id=f"sub_{stripe_id}")
        Invoice.objects.create(
            subscription=subscription, stripe_invoice_id=stripe_id, amount_due=1200,
            currency="usd", attempt_count=1, first_failed_at=slot - timedelta(days=1),
            next_retry_at=slot)
        sandbox.configure(stripe_id, amount_due=1200, currency="usd",
                          customer=subscription.stripe_customer_id)
        ids.append(stripe_id)
    return ids


def assert_paid_once(stripe_server: Any, invoice_ids: list[str]) -> dict[str, int]:
    """Every invoice paid, and Stripe executed exactly one charge for each."""
    counts = stripe_server.charge_counts()
    assert {i: counts.get(i, 0) for i in invoice_ids} == {i: 1 for i in invoice_ids}
    assert set(Invoice.objects.filter(stripe_invoice_id__in=invoice_ids)
               .values_list("status", flat=True)) == {Invoice.Status.PAID}
    return counts


def assert_each_succeeded_once(runs: list[JobRun], executions: int) -> None:
    """Every run ended `succeeded` and the job body ran once per run."""
    statuses = set(JobRun.objects.filter(pk__in=[r.pk for r in runs])
                   .values_list("status", flat=True))
    assert statuses == {JobRun.Status.SUCCEEDED}
    assert executions == len(runs)
