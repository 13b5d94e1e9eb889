from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from automation.models import CommunityAutomationSetting

from ._options import community_option

COLUMNS = ("job", "community", "cron", "timezone", "enabled", "next_run_utc", "next_run_local")


class Command(BaseCommand):
    help = "List every community's job schedules with their next fire times."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--community", help="id or slug; default: every community")
        parser.add_argument("--now", help="ISO 8601 instant to compute from (default: now)")

    def handle(self, *args, community=None, now=None, **options) -> None:
        at = timezone.now()
        if now:
            at = parse_datetime(now)
            if at is None or timezone.is_naive(at):
                raise CommandError(f"--now must be an ISO 8601 instant with offset, not {now!r}")
        settings = CommunityAutomationSetting.objects.select_related("community").order_by(
            "community__slug", "job_name"
        )
        selected = community_option(community)
        if selected is not None:
            settings = settings.filter(community=selected)
        rows = [COLUMNS]
        for setting in settings:
            fire = setting.next_run(at)
            enabled = setting.enabled and setting.community.is_active
            rows.append((
                setting.job_name,
                setting.community.slug,
                setting.cron or "on demand",
                setting.community.timezone,
                "yes" if enabled else "no",
                fire.strftime("%Y-%m-%d %H:%M") if fire else "-",
                fire.astimezone(setting.community.tzinfo).strftime("%Y-%m-%d %H:%M %Z")
                if fire else "-",
            ))
        widths = [max(len(str(row[i])) for row in rows) for i in range(len(COLUMNS))]
        for row in rows:
            cells = zip(row, widths, strict=True)
            line = "  ".join(str(cell).ljust(width) for cell, width in cells)
            self.stdout.write(line.rstrip())
