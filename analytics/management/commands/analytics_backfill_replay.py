"""python manage.py analytics_backfill_replay --community ID|SLUG --start ISO --end ISO"""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import CommandError, CommandParser, OutputWrapper
from django.utils import timezone
from tqdm import tqdm

from analytics.backfill import run_backfill, validate_window
from analytics.jobs.analytics_backfill_replay import BackfillParams
from automation.commands import OperatorCommand, check_argument_text, check_community
from automation.errors import RetryableJobError


class _RawStream:
    """Lets tqdm redraw its bar in place on the command's stderr (no newline per write)."""

    def __init__(self, wrapper: OutputWrapper) -> None:
        self.wrapper = wrapper

    def write(self, text: str) -> None:
        self.wrapper.write(text, ending="")

    def flush(self) -> None:
        self.wrapper.flush()


class Command(OperatorCommand):
    help = ("Replay a window of a community's activity events into the warehouse sink, one "
            "object per UTC hour, then reconcile row counts. Re-running the same window "
            "resumes it (done hours are skipped unless --force).")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--community", required=True, help="community id or slug")
        parser.add_argument("--start", required=True,
                            help="window start, ISO 8601, e.g. 2026-01-05T00:00:00Z")
        parser.add_argument("--end", required=True, help="window end (exclusive), ISO 8601")
        parser.add_argument("--dry-run", action="store_true",
                            help="count what would be replayed; write nothing")
        parser.add_argument("--force", action="store_true",
                            help="replay hours already done as well")
        parser.add_argument("--no-progress", action="store_true", help="no progress bar")

    def handle(self, *args: Any, community: str, start: str, end: str, dry_run: bool = False,
               force: bool = False, no_progress: bool = False, **options: Any) -> None:
        # The job's own params form reads the window, so the command, the API and admin
        # accept the same instants: ISO 8601 within the platform's range, at most
        # MAX_WINDOW long.
        form = BackfillParams(data={"start": check_argument_text(start, "--start"),
                                    "end": check_argument_text(end, "--end")})
        if not form.is_valid():
            messages = [msg.rstrip(".") for msgs in form.errors.values() for msg in msgs]
            raise CommandError("; ".join(messages))
        # The job's form lets both ends be blank (the job then replays yesterday); the
        # command replays only the window it is given.
        blank = [option for option, name in (("--start", "start"), ("--end", "end"))
                 if form.cleaned_data[name] is None]
        if blank:
            raise CommandError(f"{' and '.join(blank)} must be given, as ISO 8601 "
                               "datetimes such as 2026-01-05T00:00:00Z")
        target = check_community(community)
        try:
            window = validate_window(form.cleaned_data["start"], form.cleaned_data["end"])
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        stream = _RawStream(self.stderr)

        def progress(description: str, total: int) -> tqdm:
            return tqdm(total=total, desc=description, unit="hour", file=stream,
                        disable=no_progress, leave=True)

        try:
            summary = run_backfill(target, window, timezone.now(), force=force,
                                   is_dry_run=dry_run, progress=progress)
        except RetryableJobError as exc:  # the warehouse store is unreachable
            raise CommandError(f"{exc}; run the same command again to resume") from exc
        self.stdout.write(
            f"{'dry run of ' if dry_run else ''}backfill {target.slug} "
            f"{window.start.isoformat()} → {window.end.isoformat()}: "
            + ", ".join(f"{key}={value}" for key, value in summary.items()
                        if key != "details" and not isinstance(value, bool)))
        details = summary["details"]
        for mismatch in details.get("mismatches", []):
            self.stdout.write(f"mismatch {mismatch['key']}: source {mismatch['source']} rows, "
                              f"sink {mismatch['sink']} rows")
        for failure in details.get("failures", []):
            self.stdout.write(f"failed {failure['hour']}: {failure['error']}")
        if summary["mismatched"] or summary["failed"]:
            raise CommandError(
                f"{summary['failed']} hour(s) failed and {summary['mismatched']} hour(s) do "
                "not match the source; run the same command again to replay them")
        if options.get("verbosity", 1) > 1:
            self.stdout.write(json.dumps(summary, default=str, indent=2))
