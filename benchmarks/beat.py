"""Stock django-celery-beat DatabaseScheduler against automation.beat's BeatScheduler.

    .venv/bin/python benchmarks/beat.py --sizes 1000,10000,100000 --repeat 3 \\
        --out benchmarks/results/beat.md

For each size N, both schedulers run on the same PostgreSQL database (`automation_bench`,
created by this script) and the same Redis (a claimed database), each measurement in a fresh
subprocess, repetitions alternating which scheduler goes first:

- steady: start-up (construct + first tick, i.e. the schedule loaded and ready) and peak RSS;
  CPU and wall time of idle ticks (nothing due), sleeping between ticks as beat would;
  time from a change of one row until the scheduler's in-memory state has it (disable a row,
  edit its cron, add a row), with the change made at a random moment by another thread
  through the ORM, as admin or the schedule sync would;
- burst: K rows (default N/10, at most 10,000) due in the same minute; time from the due
  moment until the last one is on the broker, per-entry lateness p50/p99 (after_task_publish
  timestamps). The stock scheduler is stopped at --stock-cap seconds after the due moment and
  its published count reported.

Rows: tenants with seven jobs each (daily at a local hour, weekly, hourly, every 15 and 30
minutes), spread over 20 timezones. Results: markdown + JSON (medians, ranges, ours/stock).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import subprocess
import sys
import threading
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
    peak_rss_mb,
    setup_django,
)

ZONES = [
    "UTC", "America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles",
    "America/Sao_Paulo", "America/Toronto", "Europe/London", "Europe/Berlin", "Europe/Paris",
    "Africa/Lagos", "Asia/Dubai", "Asia/Kolkata", "Asia/Kathmandu", "Asia/Singapore",
    "Asia/Shanghai", "Asia/Tokyo", "Australia/Sydney", "Australia/Lord_Howe",
    "Pacific/Auckland",
]
# Fire minutes are multiples of 5 in every zone (offsets are multiples of 15 minutes), so a
# burst placed at a minute that is not a multiple of 5 is the only thing due then.
JOBS = [
    ("daily_community_digest", "0 12 * * *", "notifications"),
    ("weekly_leaderboard_recalculate", "0 6 * * 1", "automation"),
    ("subscription_delinquency_retry", "*/30 * * * *", "billing"),
    ("moderation_sla_checker", "*/15 * * * *", "automation"),
    ("data_cleanup_archiver", "30 3 * * 0", "automation"),
    ("webhook_health_monitor", "0 * * * *", "automation"),
    ("analytics_hourly_rollup", "5 * * * *", "automation"),
]
EDIT_CRON = "7,22,37,52 * * * *"
CHANGE_TIMEOUT = 180.0


# ---------------------------------------------------------------------------------------
# parent: database, rows, orchestration


def seed(n: int) -> None:
    from django.db import connection
    from django_celery_beat.models import CrontabSchedule, PeriodicTask, PeriodicTasks

    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE django_celery_beat_periodictask, django_celery_beat_crontabschedule, "
            "django_celery_beat_intervalschedule, django_celery_beat_periodictasks "
            "RESTART IDENTITY CASCADE")
    crontabs = {}
    for _, cron, _ in JOBS:
        minute, hour, dom, month, dow = cron.split()
        for tz in ZONES:
            crontabs[cron, tz] = CrontabSchedule.objects.create(
                minute=minute, hour=hour, day_of_month=dom, month_of_year=month,
                day_of_week=dow, timezone=tz)
    now = datetime.now(UTC)
    batch = []
    for i in range(n):
        community, (job, cron, queue) = divmod(i, len(JOBS))[0], JOBS[i % len(JOBS)]
        tz = ZONES[community % len(ZONES)]
        batch.append(PeriodicTask(
            name=f"tenant:{community}:{job}", task=job, crontab=crontabs[cron, tz],
            kwargs=json.dumps({"community_id": community}), queue=queue, last_run_at=now))
        if len(batch) == 5000:
            PeriodicTask.objects.bulk_create(batch)
            batch = []
    PeriodicTask.objects.bulk_create(batch)
    PeriodicTasks.update_changed()
    SEEDED_CRONTABS[:] = [ct.pk for ct in crontabs.values()]


def reset_rows(restore: dict[int, list[int]]) -> dict[str, Any]:
    """Undo what the previous run changed; every row last ran "now": nothing is due.

    `restore` maps crontab id → rows moved away from it (burst, cron edit), and is emptied.
    """
    from django_celery_beat.models import CrontabSchedule, PeriodicTask, PeriodicTasks

    now = datetime.now(UTC)
    PeriodicTask.objects.filter(name__startswith="bench:").delete()
    PeriodicTask.objects.exclude(name__startswith="tenant:").delete()  # static entries
    for crontab_id, ids in restore.items():
        for start in range(0, len(ids), 10000):
            PeriodicTask.objects.filter(pk__in=ids[start:start + 10000]).update(
                crontab_id=crontab_id)
    restore.clear()
    CrontabSchedule.objects.filter(periodictask__isnull=True).exclude(
        pk__in=SEEDED_CRONTABS).delete()  # burst crontabs of earlier runs
    # Steady state: last run just now, last edited long ago (outside the change overlap).
    PeriodicTask.objects.update(enabled=True, last_run_at=now,
                                date_changed=now - timedelta(days=1), total_run_count=0)
    PeriodicTasks.update_changed()
    sample = PeriodicTask.objects.filter(task="moderation_sla_checker").order_by("pk")
    toggle, edit = sample[0], sample[1]
    restore.setdefault(edit.crontab_id, []).append(edit.pk)
    edit_crontab = CrontabSchedule.objects.get_or_create(
        minute=EDIT_CRON.split()[0], hour="*", day_of_month="*", month_of_year="*",
        day_of_week="*", timezone="UTC")[0]
    new_crontab = CrontabSchedule.objects.get(minute="*/15", timezone="UTC")
    return {"toggle": [toggle.pk, toggle.name], "edit": [edit.pk, edit.name],
            "edit_crontab": edit_crontab.pk, "new_crontab": new_crontab.pk}


SEEDED_CRONTABS: list[int] = []


def setup_burst(k: int, due: datetime, restore: dict[int, list[int]]) -> int:
    """K rows spread over the table move to a UTC crontab firing at `due`."""
    from django_celery_beat.models import CrontabSchedule, PeriodicTask, PeriodicTasks

    ct = CrontabSchedule.objects.create(minute=str(due.minute), hour=str(due.hour),
                                        timezone="UTC")
    rows = list(PeriodicTask.objects.filter(name__startswith="tenant:")
                .order_by("pk").values_list("pk", "crontab_id"))
    step = max(1, len(rows) // k)
    chosen = rows[::step][:k]
    for pk, crontab_id in chosen:
        restore.setdefault(crontab_id, []).append(pk)
    ids = [pk for pk, _ in chosen]
    for start in range(0, len(ids), 10000):
        PeriodicTask.objects.filter(pk__in=ids[start:start + 10000]).update(
            crontab=ct, date_changed=datetime.now(UTC))
    PeriodicTasks.update_changed()
    return ct.pk


def next_burst_minute(lead: float) -> datetime:
    t = datetime.now(UTC) + timedelta(seconds=lead)
    due = t.replace(second=0, microsecond=0) + timedelta(minutes=1)
    while due.minute % 5 == 0:
        due += timedelta(minutes=1)
    return due


def run_child(env: dict[str, str], *args: str, timeout: float) -> dict[str, Any]:
    proc = subprocess.run(  # noqa: S603 - this script, fixed arguments
        [sys.executable, __file__, "--child", *args], cwd=ROOT, env=env,
        capture_output=True, text=True, timeout=timeout)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise RuntimeError(f"child {args} failed with {proc.returncode}")
    return json.loads(lines[-1][len("RESULT "):])


def flush_redis(env: dict[str, str]) -> None:
    import redis

    redis.Redis.from_url(env["REDIS_URL"]).flushdb()


def orchestrate(args: argparse.Namespace) -> None:
    redis_db = claim_redis_db()
    env = bench_env(redis_db)
    os.environ.update(env)
    print(f"benchmark database {env['DATABASE_URL']}, redis {env['REDIS_URL']}", flush=True)
    create_database(["django_celery_beat", "django_celery_results", "automation"])
    setup_django(env)
    results: dict[str, Any] = {"machine": machine(), "started": datetime.now(UTC).isoformat(),
                               "args": vars(args), "sizes": {},
                               "command": "python benchmarks/beat.py " + " ".join(sys.argv[1:])}
    schedulers = args.schedulers.split(",")
    for n in [int(x) for x in args.sizes.split(",")]:
        k = args.burst or min(10000, max(1, n // 10))
        print(f"== N={n}: seeding", flush=True)
        seed(n)
        per: dict[str, list[dict]] = {name: [] for name in schedulers}
        restore: dict[int, list[int]] = {}
        startup_guess = {name: 5.0 for name in schedulers}
        for rep in range(args.repeat):
            order = schedulers if rep % 2 == 0 else schedulers[::-1]
            for name in order:
                marks = reset_rows(restore)
                flush_redis(env)
                steady = run_child(env, "steady", name, json.dumps(marks),
                                   timeout=CHANGE_TIMEOUT * 4 + 600)
                startup_guess[name] = steady["startup_s"]
                reset_rows(restore)
                flush_redis(env)
                due = next_burst_minute(lead=startup_guess[name] * 2 + 10)
                crontab_id = setup_burst(k, due, restore)
                cap = args.stock_cap if name == "stock" else args.ours_cap
                burst = run_child(env, "burst", name, json.dumps(
                    {"crontab": crontab_id, "due": due.timestamp(), "cap": cap, "k": k}),
                    timeout=(due - datetime.now(UTC)).total_seconds() + cap + 600)
                per[name].append({**steady, **burst})
                print(f"   rep {rep + 1} {name}: start-up {steady['startup_s']:.2f}s "
                      f"rss {steady['rss_peak_mb']:.0f}MB idle tick "
                      f"{steady['idle_tick_cpu_ms']:.2f}ms cpu, changes "
                      f"{steady['change_toggle_s']:.2f}/{steady['change_cron_s']:.2f}/"
                      f"{steady['change_new_s']:.2f}s, burst {burst['published']}/{k} "
                      f"last {fmt(burst['last_publish_s'])} p99 {fmt(burst['p99_s'])}",
                      flush=True)
        results["sizes"][str(n)] = {"k": k, "runs": per}
    results["finished"] = datetime.now(UTC).isoformat()
    write_results(results, Path(args.out))


# ---------------------------------------------------------------------------------------
# summary

METRICS = [
    ("startup_s", "start-up: construct + first tick (s)", 2),
    ("rss_peak_mb", "peak RSS after loading (MB)", 0),
    ("rss_load_mb", "RSS added by loading (MB)", 0),
    ("idle_tick_cpu_ms", "idle tick, CPU (ms)", 2),
    ("idle_tick_wall_ms", "idle tick, wall (ms)", 2),
    ("change_toggle_s", "change → in effect: disable a row (s)", 2),
    ("change_cron_s", "change → in effect: edit a row's cron (s)", 2),
    ("change_new_s", "change → in effect: new row (s)", 2),
    ("change_apply_s", "tick that applied a change, wall (s, median of 3)", 3),
    ("burst_published", "burst: entries published (of K)", 0),
    ("last_publish_s", "burst: due moment → last published (s)", 3),
    ("p50_s", "burst: lateness p50 (s)", 3),
    ("p99_s", "burst: lateness p99 (s)", 3),
    ("rate_per_s", "burst: publish rate (entries/s)", 0),
]


def fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    return f"{value:,.{digits}f}"


def summarize(values: list[Any]) -> dict[str, Any]:
    numbers = [v for v in values if isinstance(v, int | float)]
    if len(numbers) < len(values) or not numbers:
        return {"median": None, "min": None, "max": None, "values": values}
    return {"median": statistics.median(numbers), "min": min(numbers), "max": max(numbers),
            "values": values}


def write_results(results: dict[str, Any], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {}
    lines = [
        "# Beat scheduler benchmark: stock DatabaseScheduler vs automation.beat.BeatScheduler",
        "",
        f"Run {results['started']} → {results['finished']}; "
        + ", ".join(f"{k}: {v}" for k, v in results["machine"].items()) + ".",
        f"Command: `{results.get('command') or 'python benchmarks/beat.py'}`",
        "",
        "Medians of the repetitions, [min-max] below; ours/stock is the ratio of the medians "
        "(lower is better, except for the published count and rate). A burst figure of — "
        "means the "
        f"scheduler had not published all K entries when it was stopped (stock: "
        f"{results['args']['stock_cap']} s after the due moment); see the published count.",
        "",
    ]
    for n, data in results["sizes"].items():
        runs = data["runs"]
        summary[n] = {"k": data["k"]}
        lines += [f"## N = {int(n):,} rows, burst K = {data['k']:,}", "",
                  "| figure | stock | ours | ours/stock |", "| --- | ---: | ---: | ---: |"]
        for key, label, digits in METRICS:
            cells = {}
            for name in ("stock", "ours"):
                if name not in runs:
                    continue
                stats = summarize([run.get(key) for run in runs[name]])
                summary[n].setdefault(name, {})[key] = stats
                if stats["median"] is None:
                    cells[name] = fmt(None)
                else:
                    cells[name] = (f"{fmt(stats['median'], digits)} "
                                   f"[{fmt(stats['min'], digits)}-{fmt(stats['max'], digits)}]")
            ratio = "—"
            s = summary[n].get("stock", {}).get(key, {}).get("median")
            o = summary[n].get("ours", {}).get(key, {}).get("median")
            if s and o is not None:
                ratio = f"{o / s:.3g}"
            lines.append(f"| {label} | {cells.get('stock', '—')} | {cells.get('ours', '—')} "
                         f"| {ratio} |")
        lines.append("")
    lines += targets(summary)
    lines += [
        "How each figure is taken: see benchmarks/README.md. Raw values per repetition are in "
        f"`{out.with_suffix('.json').name}`.", ""]
    out.write_text("\n".join(lines))
    out.with_suffix(".json").write_text(json.dumps({**results, "summary": summary}, indent=1))
    print("\n".join(lines))


def targets(summary: dict[str, Any]) -> list[str]:
    """The issue's targets for ours at the largest N, against the medians (and worst runs)."""
    n = max(summary, key=int)
    ours, stock = summary[n].get("ours", {}), summary[n].get("stock", {})
    if not ours:
        return []

    def med(side: dict, key: str) -> float | None:
        return side.get(key, {}).get("median")

    def worst(key: str) -> float | None:
        values = ours.get(key, {}).get("values") or []
        numbers = [v for v in values if isinstance(v, int | float)]
        return max(numbers) if len(numbers) == len(values) and numbers else None

    changes = ("change_toggle_s", "change_cron_s", "change_new_s")
    rows = [
        ("idle tick under 5 ms (CPU)", med(ours, "idle_tick_cpu_ms"), 5.0, "ms"),
        ("a change in effect within 2 s (slowest kind, worst run)",
         max((worst(k) or math.inf) for k in changes), 2.0, "s"),
        ("10,000-entry burst published within 2 s (worst run)", worst("last_publish_s"),
         2.0, "s"),
        ("burst p99 lateness under 2 s (worst run)", worst("p99_s"), 2.0, "s"),
        ("start-up under 15 s", med(ours, "startup_s"), 15.0, "s"),
        ("RSS under 400 MB", med(ours, "rss_peak_mb"), 400.0, "MB"),
    ]
    lines = [f"## Targets at N = {int(n):,} (ours)", "",
             "| target | measured | met |", "| --- | ---: | --- |"]
    for label, value, limit, unit in rows:
        shown = "—" if value is None or value == math.inf else f"{value:,.2f} {unit}"
        met = value is not None and value < limit
        lines.append(f"| {label} | {shown} | {'yes' if met else 'NO'} |")
    for label, keys in (("idle tick cost", ["idle_tick_cpu_ms"]),
                        ("change pickup: latency, per kind", list(changes)),
                        ("change pickup: work of the applying tick", ["change_apply_s"])):
        factors = []
        for key in keys:
            s, o = med(stock, key), med(ours, key)
            if s and o:
                factors.append(s / o)
        if factors:
            shown = ", ".join(f"{f:,.0f}x" for f in factors)
            met = "yes" if min(factors) >= 20 else f"NO (lowest {min(factors):.1f}x)"
            lines.append(f"| at least 20x better than stock: {label} | {shown} | {met} |")
    return [*lines, ""]


# ---------------------------------------------------------------------------------------
# child: one scheduler in a fresh process


def make_scheduler(name: str) -> Any:
    from config.celery import app

    if name == "stock":
        from django_celery_beat.schedulers import DatabaseScheduler

        return DatabaseScheduler(app=app)
    from automation.beat.scheduler import BeatScheduler

    return BeatScheduler(app)


class Publishes:
    """Timestamps of after_task_publish, the same hook for both schedulers."""

    def __init__(self, names: set[str] | None = None) -> None:
        from celery.signals import after_task_publish

        self.names = names
        self.times: list[float] = []
        after_task_publish.connect(self.on_publish, weak=False)

    def on_publish(self, headers: dict | None = None, **_: Any) -> None:
        name = (headers or {}).get("periodic_task_name")
        if self.names is None or name in self.names:
            self.times.append(time.time())


def in_effect(kind: str, sched: Any, marks: dict[str, Any], new_id: list[int]) -> bool:
    if type(sched).__name__ == "DatabaseScheduler":
        entries = sched._schedule or {}
        if kind == "toggle":
            return marks["toggle"][1] not in entries
        if kind == "cron":
            entry = entries.get(marks["edit"][1])
            return entry is not None and entry.model.crontab_id == marks["edit_crontab"]
        return "bench:new" in entries
    if kind == "toggle":
        return marks["toggle"][0] not in sched.entries
    if kind == "cron":
        entry = sched.entries.get(marks["edit"][0])
        return entry is not None and entry.spec.expr == EDIT_CRON
    return bool(new_id) and new_id[0] in sched.entries


def make_change(kind: str, marks: dict[str, Any], new_id: list[int]) -> None:
    """What an admin edit or the schedule sync does: ORM saves (signals included)."""
    from django.db import connection
    from django_celery_beat.models import PeriodicTask

    try:
        if kind == "toggle":
            row = PeriodicTask.objects.get(pk=marks["toggle"][0])
            row.enabled = False
            row.save()
        elif kind == "cron":
            row = PeriodicTask.objects.get(pk=marks["edit"][0])
            row.crontab_id = marks["edit_crontab"]
            row.save()
        else:
            row = PeriodicTask.objects.create(
                name="bench:new", task="moderation_sla_checker",
                crontab_id=marks["new_crontab"], kwargs='{"community_id": 999999}',
                queue="automation")
            new_id.append(row.pk)
    finally:
        connection.close()


def measure_change(sched: Any, kind: str, marks: dict[str, Any], wait: float
                   ) -> tuple[float, float, float]:
    """Seconds from the change's commit to the scheduler having it, and that tick's cost."""
    new_id: list[int] = []
    done: list[float] = []

    def change() -> None:
        make_change(kind, marks, new_id)
        done.append(time.time())

    timer = threading.Timer(random.uniform(0.2, 2.0), change)
    timer.start()
    deadline = time.time() + CHANGE_TIMEOUT
    while time.time() < deadline:
        time.sleep(max(0.0, min(wait, 5.0)))
        started = time.perf_counter()
        wait = sched.tick()
        tick_s = time.perf_counter() - started
        if done and in_effect(kind, sched, marks, new_id):
            return time.time() - done[0], tick_s, wait
    timer.join()
    raise RuntimeError(f"change {kind} not in effect within {CHANGE_TIMEOUT}s")


def child_steady(name: str, marks: dict[str, Any]) -> dict[str, Any]:
    publishes = Publishes()
    rss_before = peak_rss_mb()
    cpu0, t0 = time.process_time(), time.perf_counter()
    sched = make_scheduler(name)
    wait = sched.tick()
    startup = time.perf_counter() - t0
    result: dict[str, Any] = {"startup_s": startup, "startup_cpu_s": time.process_time() - cpu0,
                              "rss_peak_mb": peak_rss_mb(),
                              "rss_load_mb": peak_rss_mb() - rss_before}
    cpu_ms, wall_ms = [], []
    for _ in range(8):
        time.sleep(max(0.0, min(wait, 2.0)))
        count = len(publishes.times)
        c, w = time.process_time(), time.perf_counter()
        wait = sched.tick()
        if len(publishes.times) == count:  # idle: nothing was published by this tick
            cpu_ms.append((time.process_time() - c) * 1000)
            wall_ms.append((time.perf_counter() - w) * 1000)
    result["idle_tick_cpu_ms"] = statistics.median(cpu_ms) if cpu_ms else None
    result["idle_tick_wall_ms"] = statistics.median(wall_ms) if wall_ms else None
    result["idle_ticks"] = len(cpu_ms)
    applies = []
    for kind, key in (("toggle", "change_toggle_s"), ("cron", "change_cron_s"),
                      ("new", "change_new_s")):
        latency, tick_s, wait = measure_change(sched, kind, marks, wait)
        result[key] = latency
        applies.append(tick_s)
    result["change_apply_s"] = statistics.median(applies)
    if name == "ours":
        result["rows_read"] = sched.stats["rows_read"]
        result["full_loads"] = sched.stats["full_loads"]
    sched.close()
    return result


def child_burst(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    from django_celery_beat.models import PeriodicTask

    names = set(PeriodicTask.objects.filter(crontab_id=spec["crontab"])
                .values_list("name", flat=True))
    k, due, cap = spec["k"], spec["due"], spec["cap"]
    publishes = Publishes(names)
    sched = make_scheduler(name)
    wait = sched.tick()
    ready = time.time()
    while True:
        now = time.time()
        if now >= due + cap or (now > due and len(publishes.times) >= k):
            break
        time.sleep(max(0.0, min(wait, due + cap - now)))
        wait = sched.tick()
    sched.close()
    lateness = sorted(t - due for t in publishes.times)
    published = len(lateness)

    def quantile(q: float) -> float | None:
        index = math.ceil(q * k) - 1  # over all K: unpublished entries count as later
        return lateness[index] if index < published else None

    return {
        "k": k, "burst_published": published, "ready_before_due_s": due - ready,
        "published": published,
        "last_publish_s": lateness[-1] if published == k else None,
        "p50_s": quantile(0.5), "p99_s": quantile(0.99),
        "rate_per_s": (published / max(lateness[-1], 1e-3)) if published else 0.0,
        "first_publish_s": lateness[0] if lateness else None,
    }


def child_main(phase: str, name: str, payload: str) -> None:
    import django

    django.setup()
    spec = json.loads(payload)
    result = child_steady(name, spec) if phase == "steady" else child_burst(name, spec)
    print("RESULT " + json.dumps(result), flush=True)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child_main(*sys.argv[2:5])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--burst", type=int, default=0,
                        help="entries due at once (default: N/10, at most 10,000)")
    parser.add_argument("--stock-cap", type=float, default=60.0,
                        help="seconds after the due moment the stock scheduler is stopped")
    parser.add_argument("--ours-cap", type=float, default=60.0)
    parser.add_argument("--schedulers", default="stock,ours")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "beat.md"))
    parser.add_argument("--render", metavar="JSON",
                        help="only rewrite the markdown from an earlier run's JSON")
    args = parser.parse_args()
    if args.render:
        results = json.loads(Path(args.render).read_text())
        results.pop("summary", None)
        write_results(results, Path(args.out))
        return
    orchestrate(args)


if __name__ == "__main__":
    main()
