"""Demo data: communities in several timezones, members, content, and work for every job."""

import importlib
import random
from datetime import timedelta

from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone

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


class Command(BaseCommand):
    help = "Create demo communities and their data (idempotent); queue a first run of each job."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--receiver-url", default="http://127.0.0.1:8099",
                            help="base URL of `manage.py demo_webhook_receiver`")
        parser.add_argument("--no-runs", action="store_true", help="do not queue first runs")

    def handle(self, *args, receiver_url: str, no_runs: bool = False, **options) -> None:
        base = receiver_url.rstrip("/")
        validate_webhook_url(f"{base}/hooks/healthy")
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
