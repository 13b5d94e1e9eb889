from typing import Any

from django.core.management.base import CommandParser
from django.utils import timezone

from automation.commands import OperatorCommand, check_community, check_instant
from automation.models import CommunityAutomationSetting

COLUMNS = ("job", "community", "cron", "timezone", "enabled", "next_run_utc", "next_run_local")


class Command(OperatorCommand):
    help = "List every community's job schedules with their next fire times."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--community", help="id or slug; default: every community")
        parser.add_argument("--now", help="ISO 8601 instant with offset to compute from "
                                          "(default: now)")

    def handle(self, *args: Any, community: str | None = None, now: str | None = None,
               **options: Any) -> None:
        # Bounded to the platform's range: next fire times are computed from it, and near
        # year 9999 the next one does not exist.
        at = check_instant(now, "--now") if now is not None else timezone.now()
        settings = CommunityAutomationSetting.objects.select_related("community").order_by(
            "community__slug", "job_name"
        )
        if community is not None:
            settings = settings.filter(community=check_community(community))
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
