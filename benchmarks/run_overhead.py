"""Per-run overhead of our execution path, as tasks/second through a real worker.

    .venv/bin/python benchmarks/run_overhead.py --count 20000 \\
        --out benchmarks/results/run_overhead.md

Three variants of a no-op, each drained from a pre-filled queue by the same real worker
(prefork, 2 processes, acks_late, prefetch 1: the project's settings):

(a) a bare Celery task (ignore_result);
(b) the same task with its result stored by django-celery-results' database backend;
(c) a tenant job through `execute_run`: community and setting checks, the slot check, the
    per-tenant Redis lock, the JobRun record (created, running, succeeded), metrics.

The rate is COUNT / (time from the first message taken to the last one acknowledged); the
queue is filled before the worker starts, so publishing is not measured. Target: (c) costs
no more than (b).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import (
    ROOT,
    bench_env,
    claim_redis_db,
    create_database,
    machine,
    setup_django,
)

QUEUE = "automation"
RUNS_DB = "automation_bench_runs"
COMMUNITIES = 200
VARIANTS = {
    "bare": "(a) bare Celery task",
    "results": "(b) + django-celery-results DB backend",
    "ours": "(c) our execution path (execute_run: lock + JobRun + metrics)",
}


def fill_queue(variant: str, count: int) -> None:
    from benchmarks.overhead_tasks import bare_noop, result_noop
    from config.celery import app

    job_task = app.tasks["bench_noop"]  # the Celery task @tenant_job created
    base = datetime(2024, 1, 1, tzinfo=UTC)
    community_ids = list(_community_ids())
    with app.producer_or_acquire() as producer, producer.batch(1000):
        for i in range(count):
            if variant == "bare":
                bare_noop.apply_async((i,), producer=producer)
            elif variant == "results":
                result_noop.apply_async((i,), producer=producer)
            else:
                # A distinct slot per message, so none is skipped as "slot already done".
                job_task.apply_async(kwargs={
                    "community_id": community_ids[i % len(community_ids)],
                    "trigger": "schedule",
                    "scheduled_for": (base + timedelta(minutes=i)).isoformat(),
                }, producer=producer)


def _community_ids() -> list[int]:
    from communities.models import Community

    existing = list(Community.objects.order_by("pk").values_list("pk", flat=True))
    for i in range(len(existing), COMMUNITIES):
        existing.append(Community.objects.create(name=f"Bench {i}", slug=f"bench-{i}",
                                                 timezone="UTC").pk)
    return existing[:COMMUNITIES]


def clear_records() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE django_celery_results_taskresult, automation_jobrun")


def drain(env: dict[str, str], count: int, log: Path) -> dict[str, Any]:
    import redis

    client = redis.Redis.from_url(env["REDIS_URL"])
    assert client.llen(QUEUE) == count, "queue not filled"
    with open(log, "w") as out:
        worker = subprocess.Popen(  # noqa: S603 - celery from our venv, fixed arguments
            [sys.executable, "-m", "celery", "-A", "config", "worker", "-P", "prefork",
             "-c", "2", "-Q", QUEUE, "-n", f"bench-{os.getpid()}@%h", "--without-gossip",
             "--without-mingle", "-l", "WARNING"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 1800
            while client.llen(QUEUE) == count:
                if worker.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"worker did not start; see {log}")
                time.sleep(0.005)
            started = time.perf_counter()
            while client.llen(QUEUE) or client.hlen("unacked"):
                if worker.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"worker stopped; see {log}")
                time.sleep(0.01)
            elapsed = time.perf_counter() - started
        finally:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(timeout=60)
            except subprocess.TimeoutExpired:
                worker.kill()
    return {"seconds": elapsed, "per_second": count / elapsed}


def verify(variant: str, count: int) -> dict[str, int]:
    from django_celery_results.models import TaskResult

    from automation.models import JobRun

    if variant == "results":
        return {"results_stored": TaskResult.objects.filter(status="SUCCESS").count()}
    if variant == "ours":
        return {"runs_succeeded": JobRun.objects.filter(status="succeeded").count(),
                "runs_other": JobRun.objects.exclude(status="succeeded").count()}
    return {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--variants", default="bare,results,ours")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" /
                                             "run_overhead.md"))
    args = parser.parse_args()
    env = bench_env(claim_redis_db(), RUNS_DB,
                    AUTOMATION_EXTRA_JOB_MODULES="benchmarks.overhead_tasks",
                    CELERY_RESULT_BACKEND="django-db", CONN_MAX_AGE="60")
    os.environ.update(env)
    create_database(["django_celery_results", "automation", "django_celery_beat"], RUNS_DB)
    setup_django(env)
    import redis

    started = datetime.now(UTC).isoformat()
    runs: dict[str, list[dict[str, Any]]] = {}
    for rep in range(args.repeat):
        for variant in args.variants.split(","):
            redis.Redis.from_url(env["REDIS_URL"]).flushdb()
            clear_records()
            fill_queue(variant, args.count)
            result = drain(env, args.count, Path(f"/tmp/bench-worker-{variant}.log"))  # noqa: S108
            result.update(verify(variant, args.count))
            runs.setdefault(variant, []).append(result)
            print(f"rep {rep + 1} {variant}: {result}", flush=True)
    write(runs, args, started, Path(args.out))


def write(runs: dict[str, list[dict[str, Any]]], args: argparse.Namespace, started: str,
          out: Path) -> None:
    import statistics

    rates = {v: statistics.median(r["per_second"] for r in rs) for v, rs in runs.items()}
    lines = [
        "# Per-run overhead: tasks/second draining no-op runs with a real worker", "",
        f"Run {started}; {args.count:,} messages per variant, {args.repeat} repetition(s); "
        "worker: prefork, 2 processes, acks_late, prefetch 1; "
        + ", ".join(f"{k}: {v}" for k, v in machine().items()) + ".",
        f"Command: `python benchmarks/run_overhead.py {' '.join(sys.argv[1:])}`", "",
        "| variant | tasks/s (median) | runs | vs (a) | vs (b) |",
        "| --- | ---: | --- | ---: | ---: |",
    ]
    for variant, label in VARIANTS.items():
        if variant not in rates:
            continue
        per = ", ".join(f"{r['per_second']:.0f}" for r in runs[variant])
        vs_a = rates[variant] / rates["bare"] if "bare" in rates else None
        vs_b = rates[variant] / rates["results"] if "results" in rates else None
        lines.append(f"| {label} | {rates[variant]:,.0f} | {per} | "
                     f"{vs_a:.2f} | {vs_b:.2f} |" if vs_a and vs_b else
                     f"| {label} | {rates[variant]:,.0f} | {per} | — | — |")
    lines += ["", "Ratios are of rates (higher is faster). Checks per run: "
              + json.dumps({v: {k: x for k, x in rs[-1].items() if k not in
                                ("seconds", "per_second")} for v, rs in runs.items()}), ""]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines))
    out.with_suffix(".json").write_text(json.dumps(
        {"started": started, "args": vars(args), "machine": machine(), "runs": runs,
         "rates": rates}, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
