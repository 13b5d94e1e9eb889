"""Celery tasks of the analytics app that are not tenant jobs.

They run on the automation queue: the project's default queue (CELERY_TASK_DEFAULT_QUEUE),
and callers also name it explicitly.
"""

from __future__ import annotations

from celery import shared_task
from django.utils import timezone

from automation.errors import RetryableJobError

from .backfill import hour_source_count, reconcile_chunk, refresh_totals, replay_chunk
from .models import BackfillChunk
from .warehouse import sink


@shared_task(
    name="analytics.replay_chunk",
    acks_late=True,
    ignore_result=True,
    autoretry_for=(RetryableJobError,),
    retry_backoff=30,
    retry_backoff_max=600,
    retry_jitter=True,
    max_retries=3,
)
def replay_chunk_task(chunk_id: int, force: bool = True) -> str:
    """Replay one hour of a backfill on a worker, read it back, and refresh the totals.

    Idempotent: the hour's object is replaced, never appended to; a chunk already done is
    skipped unless forced (the admin's "replay" action forces).
    """
    chunk = (BackfillChunk.objects.select_related("backfill__community")
             .filter(pk=chunk_id).first())
    if chunk is None:
        return "missing"
    now = timezone.now()  # a task is the boundary where the clock is read
    storage = sink()
    outcome = replay_chunk(chunk, storage, now, force=force)
    if outcome != "failed":
        source = hour_source_count(chunk.backfill.community, chunk.hour)
        reconcile_chunk(chunk, storage, source)
    refresh_totals(chunk.backfill, now)
    return outcome
