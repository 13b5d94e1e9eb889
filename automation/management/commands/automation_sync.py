from django.core.management.base import BaseCommand

from automation.schedules import sync_schedules

from ._options import community_option


class Command(BaseCommand):
    help = "Derive django-celery-beat rows from community automation settings."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--community", help="id or slug; default: every community")
        parser.add_argument("--dry-run", action="store_true", help="show changes, write nothing")

    def handle(self, *args, community=None, dry_run=False, **options) -> None:
        report = sync_schedules(community_option(community), dry_run=dry_run)
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
