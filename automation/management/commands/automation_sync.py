from typing import Any

from django.core.management.base import CommandParser

from automation.commands import OperatorCommand, check_community
from automation.schedules import sync_schedules


class Command(OperatorCommand):
    help = "Derive django-celery-beat rows from community automation settings."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--community", help="id or slug; default: every community")
        parser.add_argument("--dry-run", action="store_true", help="show changes, write nothing")

    def handle(self, *args: Any, community: str | None = None, dry_run: bool = False,
               **options: Any) -> None:
        selected = check_community(community) if community is not None else None
        report = sync_schedules(selected, dry_run=dry_run)
        prefix = "would " if dry_run else ""
        for label, names in (
            ("create setting", report.settings_created),
            ("create", report.created),
            ("update", report.updated),
            ("remove", report.removed),
        ):
            for name in names:
                self.stdout.write(f"{prefix}{label}: {name}")
        verb = "would change" if dry_run else "changed"
        self.stdout.write(
            f"{verb}: {len(report.created)} created, {len(report.updated)} updated, "
            f"{len(report.removed)} removed, {report.unchanged} unchanged"
        )
