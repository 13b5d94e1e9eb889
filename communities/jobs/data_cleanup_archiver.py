"""data_cleanup_archiver: archive members and content past retention, verify, then prune.

It lives in communities/ (not automation/, which knows no domain) because it works on the
community's own members, posts and comments.

Order of every batch: choose rows -> record the batch (ids, checksum) -> write the object
-> read it back and compare -> anonymise/delete the rows in the transaction that marks the
batch pruned. A crash anywhere leaves a batch record the next attempt (a retry, or a re-run
for the same slot) takes from where it stopped: it writes a planned batch whose object is
missing or wrong, prunes a verified one without writing it again, and never puts rows that
are already in a batch of the run into another. A run that completed makes its slot a
no-op; a run of an earlier slot left unfinished is finished first.
"""

from __future__ import annotations

import time
from datetime import datetime

from django import forms

from automation.errors import RetryableJobError
from automation.registry import tenant_job

from ..archiving import (
    KIND_ORDER,
    ArchiveStore,
    eligible,
    plan_batch,
    prune_batch,
    rewrite_batch,
    start_run,
    verify_batch,
    write_batch,
    write_manifest,
)
from ..models import ArchiveBatch, ArchiveRun, Community


class ArchiverParams(forms.Form):
    batch_size = forms.IntegerField(
        min_value=1, max_value=10_000, initial=1000, required=False,
        help_text="rows per archive object (and per prune transaction)")
    max_rows = forms.IntegerField(
        min_value=1, max_value=5_000_000, initial=200_000, required=False,
        help_text="most rows archived by one run; the rest wait for the next run")

    def clean(self) -> dict:
        data = super().clean()
        batch_size, max_rows = data.get("batch_size"), data.get("max_rows")
        if batch_size and max_rows and batch_size > max_rows:
            # Either may be the default (clean_params validates with the defaults filled
            # in), so the message shows both.
            raise forms.ValidationError(
                f"batch_size must not exceed max_rows (got {batch_size} > {max_rows}).")
        return data


def settle_batch(store: ArchiveStore, batch: ArchiveBatch, now: datetime, stats: dict,
                 data: bytes | None = None) -> None:
    """Take a batch from wherever it stopped to pruned."""
    if batch.state == ArchiveBatch.State.PLANNED and data is not None:
        write_batch(store, batch, data)
    problem = verify_batch(store, batch)
    if problem is not None:
        # Missing, partial or never written: the rows are still in the database (nothing
        # is pruned before verification), so the object is written again from them.
        stats["rewritten_objects"] += 1
        rewrite_batch(store, batch)
        if batch.row_count == 0:
            store.delete(batch.key)
            batch.state = ArchiveBatch.State.PRUNED
            batch.save(update_fields=["state", "updated_at"])
            return
        problem = verify_batch(store, batch)
        if problem is not None:
            raise RetryableJobError(f"archive object {batch.key} failed verification after "
                                    f"it was written: {problem}")
    prune_batch(batch, now)


def complete_run(store: ArchiveStore, run: ArchiveRun, now: datetime) -> None:
    batches = list(run.batches.all())
    manifest_bytes = write_manifest(store, run, now)
    counts = {kind: sum(b.row_count for b in batches if b.kind == kind) for kind in KIND_ORDER}
    run.members_archived = counts[ArchiveBatch.Kind.MEMBERS]
    run.posts_archived = counts[ArchiveBatch.Kind.POSTS]
    run.comments_archived = counts[ArchiveBatch.Kind.COMMENTS]
    run.bytes = sum(b.bytes for b in batches) + manifest_bytes
    run.object_count = sum(1 for b in batches if b.row_count) + (1 if manifest_bytes else 0)
    run.status = ArchiveRun.Status.COMPLETED
    run.save()


def finish_unpruned(store: ArchiveStore, run: ArchiveRun, now: datetime, stats: dict) -> int:
    batches = list(run.batches.exclude(state=ArchiveBatch.State.PRUNED).order_by("pk"))
    for batch in batches:
        settle_batch(store, batch, now, stats)
    return len(batches)


def archive_new_rows(store: ArchiveStore, run: ArchiveRun, now: datetime, batch_size: int,
                     max_rows: int, stats: dict) -> None:
    planned = sum(run.batches.values_list("row_count", flat=True))
    for kind in KIND_ORDER:
        exhausted = False
        while planned < max_rows:
            chosen = plan_batch(run, kind, min(batch_size, max_rows - planned))
            if chosen is None:
                exhausted = True
                break
            batch, data = chosen
            planned += batch.row_count
            settle_batch(store, batch, now, stats, data)
        if not exhausted:
            # Later kinds wait: posts are pruned only after all their comments are archived.
            break
    run.remaining = sum(eligible(kind, run).count() for kind in KIND_ORDER)


@tenant_job(
    name="data_cleanup_archiver",
    description="Archive members inactive beyond retention and soft-deleted content past "
                "retention to object storage (gzip JSON Lines + manifest), verify, then "
                "anonymise/prune; resumable.",
    category="maintenance",
    queue="automation",
    cron="30 3 * * 0",
    soft_time_limit=3 * 3600,
    time_limit=3 * 3600 + 300,
    max_retries=3,
    backoff_base=60.0,
    backoff_cap=1800.0,
    params_form=ArchiverParams,
)
def data_cleanup_archiver(community: Community, now: datetime, batch_size: int = 1000,
                          max_rows: int = 200_000) -> dict:
    started = time.monotonic()
    store = ArchiveStore()
    stats = {"rewritten_objects": 0, "resumed_batches": 0, "resumed_runs": 0}
    finished: list[ArchiveRun] = []
    for earlier in (ArchiveRun.objects.filter(community=community,
                                              status=ArchiveRun.Status.RUNNING)
                    .exclude(slot=now).select_related("community").order_by("slot")):
        stats["resumed_batches"] += finish_unpruned(store, earlier, now, stats)
        complete_run(store, earlier, now)
        stats["resumed_runs"] += 1
        finished.append(earlier)

    run, _ = start_run(community, now)
    already_done = run.status == ArchiveRun.Status.COMPLETED
    if not already_done:
        stats["resumed_batches"] += finish_unpruned(store, run, now, stats)
        archive_new_rows(store, run, now, batch_size, max_rows, stats)
        complete_run(store, run, now)
        finished.append(run)

    # Runs completed by this invocation: their counts were never reported before (a run
    # reports only when it completes), so each row reaches the metrics once.
    return {
        "members_archived": sum(r.members_archived for r in finished),
        "posts_archived": sum(r.posts_archived for r in finished),
        "comments_archived": sum(r.comments_archived for r in finished),
        "bytes": sum(r.bytes for r in finished),
        "objects": sum(r.object_count for r in finished),
        "duration_ms": round((time.monotonic() - started) * 1000),
        "already_done": int(already_done),
        **stats,
        # Nested: a level, not an event count (top-level numbers feed a counter).
        "run": {"id": run.pk, "prefix": run.prefix, "manifest": run.manifest_key,
                "remaining": run.remaining,
                "member_cutoff": run.member_cutoff.isoformat(),
                "content_cutoff": run.content_cutoff.isoformat()},
    }
