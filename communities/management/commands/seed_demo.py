"""Demo data: communities in several timezones, members, content, and work for every job."""

import importlib
import random
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management.base import CommandError, CommandParser
from django.db import transaction
from django.utils import timezone

from automation.commands import OperatorCommand, check_argument_text
from automation.models import JobRun
from automation.registry import all_jobs
from automation.runs import enqueue_run
from communities.models import Community, Member
from integrations.models import Webhook
from integrations.url_safety import validate_webhook_url

DEMO_COMMUNITIES = [
    ("Acme Makers", "acme-makers", "America/New_York"),
    ("Berlin Bikes", "berlin-bikes", "Europe/Berlin"),
    ("Kolkata Coders", "kolkata-coders", "Asia/Kolkata"),
    ("Sydney Sailors", "sydney-sailors", "Australia/Sydney"),
]
# Paths the demo receiver answers: healthy 200, slow 200 after a pause, broken 500.
DEMO_HOOKS = [("Chat bridge", "healthy"), ("CRM sync", "slow"), ("Legacy forum", "broken")]
# Each app's `seed(community, now, rng)`: idempotent demo data that gives its jobs work.
DEMO_SEEDERS = [
    "communities.demo",
    "communities.demo_archive",
    "analytics.demo",
    "notifications.demo",
    "billing.demo",
    "moderation.demo",
]


def demo_params(job_name: str, now) -> dict:
    """Params for the first demo run of on-demand jobs that need them."""
    if job_name == "analytics_backfill_replay":
        start = (now - timedelta(days=2)).replace(minute=0, second=0, microsecond=0)
        return {"start": start.isoformat(), "end": (start + timedelta(hours=24)).isoformat()}
    return {}


def _is_valid(url: str, *, allow_loopback: bool) -> bool:
    try:
        validate_webhook_url(url, allow_loopback=allow_loopback)
    except ValidationError:
        return False
    return True


def check_receiver_url(url: str) -> str:
    """The receiver's base URL (no trailing slash) if the demo webhooks may point at it.

    The webhooks are checked by the outbound-URL guard when they are called, so a URL the
    guard refuses would seed webhooks that can never deliver: refused here, by name.
    """
    base = check_argument_text(url, "--receiver-url").rstrip("/")
    longest = max((f"{base}/hooks/{path}" for _, path in DEMO_HOOKS), key=len)
    limit = Webhook._meta.get_field("url").max_length
    if len(longest) > limit:
        raise CommandError(f"--receiver-url is too long: webhook URLs hold at most {limit} "
                           "characters")
    hook = f"{base}/hooks/healthy"
    try:
        validate_webhook_url(hook)
    except ValidationError as exc:
        hint = ""
        if not settings.WEBHOOKS_ALLOW_LOOPBACK and _is_valid(hook, allow_loopback=True):
            hint = " (a receiver on this machine needs WEBHOOKS_ALLOW_LOOPBACK=true)"
        raise CommandError(f"--receiver-url {url!r} is refused: "
                           f"{' '.join(exc.messages)}{hint}") from None
    return base


class Command(OperatorCommand):
    help = "Create demo communities and their data (idempotent); queue a first run of each job."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--receiver-url", default="http://127.0.0.1:8099",
                            help="base URL of `manage.py demo_webhook_receiver`")
        parser.add_argument("--no-runs", action="store_true", help="do not queue first runs")

    def handle(self, *args: Any, receiver_url: str, no_runs: bool = False,
               **options: Any) -> None:
        base = check_receiver_url(receiver_url)
        now = timezone.now()
        with transaction.atomic():
            communities = [self.seed_community(name, slug, tz, base, now)
                           for name, slug, tz in DEMO_COMMUNITIES]
        if no_runs:
            return
        # Weekly and daily jobs would otherwise show nothing until their first slot.
        jobs = [spec for spec in all_jobs() if spec.category != "testing"]
        with transaction.atomic():
            for community in communities:
                for spec in jobs:
                    enqueue_run(spec, community, trigger=JobRun.Trigger.MANUAL, now=now,
                                params=demo_params(spec.name, now) or None)
        self.stdout.write(f"queued a first run of {len(jobs)} jobs for "
                          f"{len(communities)} communities")

    def seed_community(self, name: str, slug: str, tz: str, base: str, now) -> Community:
        community, created = Community.objects.get_or_create(
            slug=slug, defaults={"name": name, "timezone": tz}
        )
        for i, (display, role) in enumerate(
            [("Ada Admin", Member.Role.ADMIN), ("Mo Moderator", Member.Role.MODERATOR)]
            + [(f"Member {n}", Member.Role.MEMBER) for n in range(1, 9)]
        ):
            Member.objects.get_or_create(
                community=community,
                email=f"{display.lower().replace(' ', '.')}@{slug}.example",
                defaults={
                    "display_name": display,
                    "role": role,
                    "joined_at": now - timedelta(days=30 * (i + 1)),
                    "last_active_at": now - timedelta(days=i * 20),
                },
            )
        for hook_name, path in DEMO_HOOKS:
            Webhook.objects.get_or_create(
                community=community, name=hook_name,
                defaults={"url": f"{base}/hooks/{path}"},
            )
        rng = random.Random(slug)
        for module in DEMO_SEEDERS:
            importlib.import_module(module).seed(community, now, rng)
        self.stdout.write(f"{'created' if created else 'kept'} community {slug} ({tz})")
        return community
