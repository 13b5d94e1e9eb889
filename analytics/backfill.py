"""Backfill replays: a window of the event store into the warehouse sink, hour by hour.

A backfill is identified by (community, window), so running the same window again
resumes it: chunks (UTC hours) already done are skipped unless forced, failed and
mismatched ones are replayed. Each chunk is idempotent on its own (it replaces one
object at a deterministic key) and is also a Celery task, `analytics.replay_chunk`, for
replaying single chunks on a worker (the admin's action).

The tenant job and the management command run the chunks inline, one after another:
the job already holds the community's run lock and time limit, and a task that waits
for sub-tasks can starve the worker pool it waits on. After the chunks, every chunk's
object is read back and its rows counted against the source (reconciliation); a
disagreement marks the chunk `mismatch`, which the next run replays.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from django.core.exceptions import ValidationError
from django.core.files.storage import Storage
from django.db import transaction
from django.db.models import Count, Q, Sum
from django.db.models.functions import TruncHour

from automation.errors import RetryableJobError
from automation.input_limits import check_date
from communities.models import Community

from .models import ActivityEvent, Backfill, BackfillChunk
from .periods import ceil_hour, floor_hour
from .warehouse import count_rows, event_line, is_transient, partition_key, sink, write_partition

MAX_WINDOW = timedelta(days=92)


class Progress(Protocol):
    def update(self, n: int = 1) -> Any: ...
    def __enter__(self) -> Progress: ...
    def __exit__(self, *exc: object) -> Any: ...


ProgressFactory = Callable[[str, int], Progress]


class _NoProgress:
    def update(self, n: int = 1) -> None:
        return None

    def __enter__(self) -> _NoProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def no_progress(description: str, total: int) -> Progress:
    return _NoProgress()


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime

    @classmethod
    def covering(cls, start: datetime, end: datetime) -> Window:
        """Whole UTC hours covering [start, end): a chunk never holds part of an hour."""
        return cls(floor_hour(start), ceil_hour(end.astimezone(UTC)))

    def hours(self) -> list[datetime]:
        count = int((self.end - self.start).total_seconds() // 3600)
        return [self.start + timedelta(hours=n) for n in range(count)]


def validate_window(start: datetime, end: datetime) -> Window:
    """The window to replay, or ValueError with a message for the person who typed it.

    Both ends lie in the platform's range, so widening the window to whole UTC hours
    never leaves the calendar (9999-12-31T23:30Z rounded up has no year to go to).
    """
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("start and end must carry a timezone (e.g. 2026-01-05T00:00:00Z)")
    for label, moment in (("start", start), ("end", end)):
        try:
            check_date(moment, label=label)
        except ValidationError as exc:
            raise ValueError(exc.messages[0]) from None
    if end <= start:
        raise ValueError(f"end ({end.isoformat()}) must be after start ({start.isoformat()})")
    window = Window.covering(start, end)
    if window.end - window.start > MAX_WINDOW:
        days = (window.end - window.start) / timedelta(days=1)
        raise ValueError(f"the window spans {days:.1f} days; at most {MAX_WINDOW.days} days "
                         "per backfill — split it into several")
    return window


def _hour_events(community: Community, hour: datetime):
    return ActivityEvent.objects.filter(
        community=community, occurred_at__gte=hour, occurred_at__lt=hour + timedelta(hours=1)
    )


def hour_source_count(community: Community, hour: datetime) -> int:
    return _hour_events(community, hour).count()


def source_counts(community: Community, window: Window) -> dict[datetime, int]:
    """Events per UTC hour of the window, in one query."""
    rows = (ActivityEvent.objects.filter(community=community, occurred_at__gte=window.start,
                                         occurred_at__lt=window.end)
            .order_by().annotate(hour=TruncHour("occurred_at", tzinfo=UTC))
            .values("hour").annotate(n=Count("id")))
    return {row["hour"]: row["n"] for row in rows}


# --- one chunk -------------------------------------------------------------------------


def replay_chunk(chunk: BackfillChunk, storage: Storage, now: datetime, *,
                 force: bool = False) -> str:
    """Write one hour's events over its object; returns "replayed", "skipped" or "failed".

    A store that is unreachable raises RetryableJobError (the run is retried and resumes
    here); any other error fails this chunk only and is recorded on it.
    """
    if chunk.status == BackfillChunk.Status.DONE and not force:
        return "skipped"
    community = chunk.backfill.community
    chunk.key = partition_key(community.slug, chunk.hour)
    chunk.attempts += 1
    events = (_hour_events(community, chunk.hour).order_by("occurred_at", "id")
              .values("id", "community_id", "member_id", "type", "occurred_at",
                      "recorded_at", "payload"))
    lines = [event_line(event, community.slug) for event in events.iterator(chunk_size=2000)]
    try:
        written = write_partition(storage, chunk.key, lines)
    except Exception as exc:
        chunk.status = BackfillChunk.Status.FAILED
        chunk.error = f"{type(exc).__name__}: {exc}"[:2000]
        chunk.save(update_fields=["key", "attempts", "status", "error"])
        if is_transient(exc):
            raise RetryableJobError(f"warehouse sink unreachable: {exc}") from exc
        return "failed"
    chunk.status = BackfillChunk.Status.DONE
    chunk.source_rows = len(lines)
    chunk.sink_rows = written
    chunk.error = ""
    chunk.finished_at = now
    chunk.save(update_fields=["key", "attempts", "status", "source_rows", "sink_rows", "error",
                              "finished_at"])
    return "replayed"


def reconcile_chunk(chunk: BackfillChunk, storage: Storage, source: int) -> bool:
    """Compare the source count with the rows read back from the sink; True when equal."""
    try:
        sink_rows = count_rows(storage, chunk.key)
    except Exception as exc:
        if is_transient(exc):
            raise RetryableJobError(f"warehouse sink unreachable: {exc}") from exc
        raise
    agree = sink_rows == source
    chunk.source_rows = source
    chunk.sink_rows = sink_rows
    chunk.status = BackfillChunk.Status.DONE if agree else BackfillChunk.Status.MISMATCH
    chunk.error = "" if agree else f"source has {source} rows, sink has {sink_rows}"
    chunk.save(update_fields=["source_rows", "sink_rows", "status", "error"])
    return agree


def refresh_totals(backfill: Backfill, now: datetime) -> Backfill:
    """Backfill figures from its chunks (the chunks are the truth; totals are derived)."""
    status = BackfillChunk.Status
    chunks = backfill.chunks.all()
    totals = chunks.aggregate(
        total=Count("id"), done=Count("id", filter=Q(status=status.DONE)),
        failed=Count("id", filter=Q(status=status.FAILED)),
        mismatched=Count("id", filter=Q(status=status.MISMATCH)),
        rows_source=Sum("source_rows"), rows_sink=Sum("sink_rows"),
    )
    backfill.chunks_total = totals["total"]
    backfill.chunks_done = totals["done"]
    backfill.chunks_failed = totals["failed"]
    backfill.reconciled = totals["done"]
    backfill.mismatched = totals["mismatched"]
    backfill.rows_source = totals["rows_source"] or 0
    backfill.rows_sink = totals["rows_sink"] or 0
    backfill.mismatches = [
        {"hour": c.hour.isoformat(), "key": c.key, "source": c.source_rows, "sink": c.sink_rows}
        for c in chunks.filter(status=status.MISMATCH).order_by("hour")[:100]
    ]
    if backfill.chunks_failed:
        backfill.status = Backfill.Status.FAILED
    elif backfill.mismatched:
        backfill.status = Backfill.Status.MISMATCHED
    elif backfill.chunks_done == backfill.chunks_total:
        backfill.status = Backfill.Status.DONE
    else:
        backfill.status = Backfill.Status.RUNNING
    backfill.last_run_at = now
    backfill.save()
    return backfill


# --- a whole window ---------------------------------------------------------------------


def plan(community: Community, window: Window, now: datetime) -> Backfill:
    """The backfill of this window (created on first use) with one chunk per hour."""
    with transaction.atomic():
        backfill, _ = Backfill.objects.get_or_create(
            community=community, start=window.start, end=window.end,
            defaults={"created_at": now, "last_run_at": now},
        )
        BackfillChunk.objects.bulk_create(
            [BackfillChunk(backfill=backfill, hour=hour, key=partition_key(community.slug, hour))
             for hour in window.hours()],
            ignore_conflicts=True,
        )
    return backfill


def dry_run(community: Community, window: Window, *, force: bool = False) -> dict[str, Any]:
    """What a run would do, without writing anything anywhere."""
    counts = source_counts(community, window)
    done: set[datetime] = set()
    existing = Backfill.objects.filter(community=community, start=window.start,
                                       end=window.end).first()
    if existing and not force:
        done = set(existing.chunks.filter(status=BackfillChunk.Status.DONE)
                   .values_list("hour", flat=True))
    hours = window.hours()
    return {
        "dry_run": True,
        "chunks": len(hours),
        "replayed": 0,
        "would_replay": sum(1 for h in hours if h not in done),
        "skipped_done": len(done),
        "failed": 0,
        "rows_source": sum(counts.values()),
        "rows_to_write": sum(n for h, n in counts.items() if h not in done),
        "rows_written": 0,
        "reconciled": 0,
        "mismatched": 0,
        "details": {"backfill_id": existing.pk if existing else None,
                    "window": [window.start.isoformat(), window.end.isoformat()]},
    }


def run_backfill(community: Community, window: Window, now: datetime, *, force: bool = False,
                 is_dry_run: bool = False, progress: ProgressFactory = no_progress,
                 storage: Storage | None = None) -> dict[str, Any]:
    """Replay the window's pending chunks, reconcile every chunk, and report."""
    if is_dry_run:
        return dry_run(community, window, force=force)
    storage = storage or sink()
    backfill = plan(community, window, now)
    backfill.runs += 1
    backfill.save(update_fields=["runs"])
    chunks = list(backfill.chunks.select_related("backfill__community").order_by("hour"))
    outcomes = {"replayed": 0, "skipped": 0, "failed": 0}
    rows_written = 0
    with progress("replay", len(chunks)) as bar:
        for chunk in chunks:
            outcome = replay_chunk(chunk, storage, now, force=force)
            outcomes[outcome] += 1
            if outcome == "replayed":
                rows_written += chunk.sink_rows or 0
            bar.update(1)

    counts = source_counts(community, window)
    to_check = [c for c in chunks if c.status != BackfillChunk.Status.FAILED]
    with progress("reconcile", len(to_check)) as bar:
        for chunk in to_check:
            reconcile_chunk(chunk, storage, counts.get(chunk.hour, 0))
            bar.update(1)
    backfill = refresh_totals(backfill, now)
    failures = [{"hour": c.hour.isoformat(), "error": c.error} for c in chunks
                if c.status == BackfillChunk.Status.FAILED][:20]
    return {
        "dry_run": False,
        "chunks": backfill.chunks_total,
        "replayed": outcomes["replayed"],
        "skipped_done": outcomes["skipped"],
        "failed": outcomes["failed"],
        "rows_source": backfill.rows_source,
        "rows_written": rows_written,
        "rows_sink": backfill.rows_sink,
        "reconciled": backfill.reconciled,
        "mismatched": backfill.mismatched,
        "details": {
            "backfill_id": backfill.pk,
            "status": backfill.status,
            "window": [window.start.isoformat(), window.end.isoformat()],
            "mismatches": backfill.mismatches[:20],
            "failures": failures,
        },
    }
