"""The reaper at product scale: one pass over a run table of millions of rows.

    .venv/bin/python benchmarks/reaper.py --communities 100000 --runs 5000000 \
        --stale 1000 --repeat 5 --out benchmarks/results/reaper.md

Seeds, with set-based SQL as the product would hold them, N communities and M finished runs
(COPY, dashboard/seeding.py), then before each repetition S runs left `running` by a lost
worker (no lease) and S `queued` runs whose messages were lost, and times
`reap_stuck_runs(now)`: the pass that resumes and republishes them (each one a conditional
UPDATE and a publish to the Redis broker), then an idle pass (nothing to do: the cost every
minute in a healthy system). Medians and [min-max] over the repetitions.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import (
    BENCH_DB,
    bench_env,
    claim_redis_db,
    create_database,
    peak_rss_mb,
    setup_django,
)


def seed(communities: int, runs: int) -> None:
    from django.db import connection
    from django.utils import timezone

    from communities.models import Community
    from dashboard.seeding import seed_runs

    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO communities_community (name, slug, timezone, is_active, "
            "member_retention_days, content_retention_days, created_at, updated_at) "
            "SELECT 'Community ' || n, 'c-' || n, "
            "(ARRAY['America/New_York','Europe/Berlin','Asia/Kolkata','Australia/Sydney'])"
            "[1 + n %% 4], true, 730, 30, now(), now() FROM generate_series(1, %s) AS n",
            [communities])
    sample = list(Community.objects.order_by("pk")[:: max(1, communities // 1000)])
    seed_runs(runs, now=timezone.now(), days=7, communities=sample)


def plant(stale: int) -> tuple[list[int], list[int]]:
    """`stale` runs lost with their worker and `stale` queued runs lost with the broker."""
    from django.utils import timezone

    from automation.models import JobRun
    from communities.models import Community

    now = timezone.now()
    ids = list(Community.objects.order_by("?").values_list("pk", flat=True)[:stale])
    lost = JobRun.objects.bulk_create([
        JobRun(job_name="moderation_sla_checker", community_id=cid, trigger="schedule",
               scheduled_for=now - timedelta(minutes=15), status="running",
               queue="automation", started_at=now - timedelta(minutes=10), attempts=1,
               celery_task_id=f"lost-{cid}-{time.monotonic_ns()}") for cid in ids])
    queued = JobRun.objects.bulk_create([
        JobRun(job_name="webhook_health_monitor", community_id=cid, trigger="manual",
               scheduled_for=now - timedelta(minutes=20), status="queued",
               queue="automation", queued_at=now - timedelta(minutes=20),
               celery_task_id=f"gone-{cid}-{time.monotonic_ns()}") for cid in ids])
    return [r.pk for r in lost], [r.pk for r in queued]


def clear(pks: list[int]) -> None:
    from automation.connections import get_redis
    from automation.models import JobRun

    JobRun.objects.filter(pk__in=pks).delete()
    get_redis().delete("automation")  # the republished messages


def summary(values: list[float]) -> str:
    return (f"{statistics.median(values):.3f} s [{min(values):.3f}-{max(values):.3f}]")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--communities", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5_000_000)
    parser.add_argument("--stale", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    load_at_start = os.getloadavg()[0]
    redis_db = claim_redis_db()
    env = bench_env(redis_db, BENCH_DB)
    os.environ.update(env)
    create_database(["communities", "automation"], BENCH_DB)
    setup_django(env)
    from django.utils import timezone

    from monitoring.reaper import reap_stuck_runs

    started = time.monotonic()
    seed(args.communities, args.runs)
    seeding = time.monotonic() - started

    busy, idle = [], []
    for _ in range(args.repeat):
        lost, queued = plant(args.stale)
        t0 = time.monotonic()
        report = reap_stuck_runs(timezone.now())
        busy.append(time.monotonic() - t0)
        assert len(report.resumed) == args.stale, report
        assert len(report.republished) == args.stale, report
        clear(lost + queued)
        t0 = time.monotonic()
        reap_stuck_runs(timezone.now())
        idle.append(time.monotonic() - t0)

    lines = [
        "# Reaper at scale",
        "",
        f"`benchmarks/reaper.py --communities {args.communities} --runs {args.runs} "
        f"--stale {args.stale} --repeat {args.repeat}`; PostgreSQL and Redis on this "
        f"machine (2 cores, shared), load average at start {load_at_start:.2f}.",
        "",
        f"Seeded {args.communities:,} communities and {args.runs:,} finished runs in "
        f"{seeding:.0f} s.",
        "",
        "| pass | time per pass, median [min-max] |",
        "| --- | --- |",
        f"| {args.stale:,} lost attempts resumed + {args.stale:,} lost messages republished "
        f"| {summary(busy)} |",
        f"| idle (nothing to settle; every minute in a healthy system) | {summary(idle)} |",
        "",
        f"Peak RSS {peak_rss_mb():.0f} MB.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)
        args.out.with_suffix(".json").write_text(json.dumps(
            {"args": vars(args) | {"out": str(args.out)}, "seeding_seconds": seeding,
             "busy_seconds": busy, "idle_seconds": idle}, indent=2))


if __name__ == "__main__":
    main()
