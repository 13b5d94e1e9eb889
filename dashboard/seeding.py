"""Synthetic run history at scale, to see and measure the dashboard with 100k+ runs.

Seeded runs are marked with worker_hostname="seeded", so they can be told apart and
removed (`dashboard_seed_runs --delete`).

On PostgreSQL the rows go in with COPY (100k in a few seconds); elsewhere with
bulk_create in batches, about four times slower (Django binds every value in Python).
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from itertools import chain
from typing import Any

from django.db import connection, transaction
from django.db.models import F

from automation.models import JobRun
from automation.registry import JobSpec, get_job
from automation.stats import visible_jobs
from communities.models import Community

MARK = "seeded"
S = JobRun.Status
# Mostly healthy, with enough failures for the red and yellow indicators to show.
OUTCOMES = ((S.SUCCEEDED, 90), (S.FAILED, 5), (S.TIMED_OUT, 1), (S.SKIPPED, 4))


def _fake_runs(count: int, now: datetime, days: float, communities: Sequence[Community],
               specs: Sequence[JobSpec], rng: random.Random) -> Iterator[dict[str, Any]]:
    statuses = [s for s, _ in OUTCOMES]
    weights = [w for _, w in OUTCOMES]
    span = days * 86400.0
    community_ids = [c.pk for c in communities]
    for _ in range(count):
        spec = rng.choice(specs)
        slot = now - timedelta(seconds=rng.random() * span)
        status = rng.choices(statuses, weights)[0]
        skipped = status == S.SKIPPED
        failed = status in (S.FAILED, S.TIMED_OUT)
        took = 0.0 if skipped else rng.lognormvariate(0.5, 1.0)
        yield {
            "job_name": spec.name, "community_id": rng.choice(community_ids),
            "trigger": JobRun.Trigger.SCHEDULE, "scheduled_for": slot, "created_at": slot,
            "status": status, "queue": spec.queue, "started_at": slot,
            "finished_at": slot + timedelta(seconds=took),
            "duration_seconds": None if skipped else round(took, 3),
            "attempts": 0 if skipped else 1,
            "skip_reason": "already_running" if skipped else "",
            "error_type": ("SoftTimeLimitExceeded" if status == S.TIMED_OUT
                           else "ConnectionError" if failed else ""),
            "error_message": "upstream did not answer (seeded)" if failed else "",
            "worker_hostname": MARK,
        }


def _copy(rows: Iterator[dict[str, Any]]) -> None:
    """PostgreSQL COPY: no per-value work in Python beyond formatting the row."""
    first = next(rows, None)
    if first is None:
        return
    columns = [*first, "params", "result", "celery_task_id"]
    quote = connection.ops.quote_name
    sql = (f"COPY {quote(JobRun._meta.db_table)} "
           f"({', '.join(quote(c) for c in columns)}) FROM STDIN")
    with connection.cursor() as cursor, cursor.cursor.copy(sql) as copy:
        for row in chain([first], rows):
            copy.write_row((*row.values(), "{}", "{}", ""))


def _bulk_create(rows: Iterator[dict[str, Any]], batch_size: int) -> None:
    low = high = None
    while True:
        batch = [JobRun(**row) for _, row in zip(range(batch_size), rows, strict=False)]
        if not batch:
            break
        made = JobRun.objects.bulk_create(batch)
        low = made[0].pk if low is None else low
        high = made[-1].pk
    if low is not None:
        # created_at is auto_now_add, so bulk_create stamped the present: move each run
        # to its slot in one statement.
        JobRun.objects.filter(pk__range=(low, high), worker_hostname=MARK).update(
            created_at=F("scheduled_for"))


def seed_runs(count: int, *, now: datetime, days: float = 30.0,
              communities: Sequence[Community] | None = None,
              job_names: Sequence[str] | None = None, batch_size: int = 2000,
              seed: int = 0, method: str = "auto") -> int:
    """Insert `count` finished runs spread uniformly over the `days` before `now`.

    method: "copy" (PostgreSQL), "orm" (bulk_create in batches) or "auto" (copy where
    possible). Returns the number of runs inserted.
    """
    if count < 0 or batch_size < 1 or days <= 0:
        raise ValueError("count must be ≥ 0, batch_size ≥ 1 and days > 0")
    if method not in ("auto", "copy", "orm"):
        raise ValueError(f"method must be auto, copy or orm, not {method!r}")
    communities = list(communities if communities is not None
                       else Community.objects.filter(is_active=True))
    if not communities:
        raise ValueError("no community to seed runs for; create one first")
    specs = [get_job(name) for name in job_names] if job_names else visible_jobs()
    rows = _fake_runs(count, now, days, communities, specs, random.Random(seed))
    use_copy = method == "copy" or (method == "auto" and connection.vendor == "postgresql")
    if use_copy and connection.vendor != "postgresql":
        raise ValueError("COPY needs PostgreSQL")
    with transaction.atomic():
        if use_copy:
            _copy(rows)
        else:
            _bulk_create(rows, batch_size)
    analyze()
    return count


def delete_seeded() -> int:
    deleted, _ = JobRun.objects.filter(worker_hostname=MARK).delete()
    analyze()
    return deleted


def analyze() -> None:
    """Refresh the planner's statistics after a bulk change (PostgreSQL only)."""
    if connection.vendor == "postgresql" and not connection.in_atomic_block:
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {connection.ops.quote_name(JobRun._meta.db_table)}")
