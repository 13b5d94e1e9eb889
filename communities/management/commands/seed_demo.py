"""Demo data: communities in several timezones, members, and webhooks to a local receiver."""

from datetime import timedelta

from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone

from automation.models import JobRun
from automation.registry import get_job
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


class Command(BaseCommand):
    help = "Create demo communities (idempotent) and queue a first health check for each."

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
        spec = get_job("webhook_health_monitor")
        for community in communities:
            run = enqueue_run(spec, community, trigger=JobRun.Trigger.MANUAL, now=now)
            self.stdout.write(f"queued {spec.name} for {community.slug} (run {run.pk})")

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
        self.stdout.write(f"{'created' if created else 'kept'} community {slug} ({tz})")
        return community
