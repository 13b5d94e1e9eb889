"""Shared set-up of the benchmarks: their own PostgreSQL database and Redis database.

The benchmarks never touch the development or test databases: they create (and drop and
re-create) `automation_bench` on the configured PostgreSQL server and claim a free Redis
database number the way test sessions do (a key in db 0 that expires), so a benchmark and
test sessions can run side by side.
"""

from __future__ import annotations

import atexit
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH_DB = os.environ.get("BENCH_DATABASE", "automation_bench")
PG_URL = os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432")
REDIS_BASE = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379")


def claim_redis_db() -> int:
    """A Redis database of our own, claimed like test sessions claim theirs."""
    import redis

    claims = redis.Redis.from_url(f"{REDIS_BASE}/0")
    for db in range(1, 16):
        key = f"automation-tests:db:{db}"
        if claims.set(key, f"bench:{os.getpid()}", nx=True, ex=6 * 3600):
            atexit.register(claims.delete, key)
            return db
    raise RuntimeError("no free Redis database for the benchmark")


def bench_env(redis_db: int, database: str = BENCH_DB, **extra: str) -> dict[str, str]:
    """Environment of the benchmark's Django processes (parent, schedulers, workers)."""
    redis_url = f"{REDIS_BASE}/{redis_db}"
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": f"{PG_URL}/{database}",
        "REDIS_URL": redis_url,
        "CELERY_BROKER_URL": redis_url,
        "SECRET_KEY": os.environ.get("SECRET_KEY", "benchmark-only-secret-key"),
        "METRICS_DIR": tempfile.mkdtemp(prefix="automation-bench-metrics-"),
        "LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "WARNING"),
        "PYTHONPATH": str(ROOT),
        **extra,
    }


def create_database(apps: list[str], database: str = BENCH_DB) -> None:
    """Drop and re-create a benchmark database, then migrate only the apps needed.

    Call with os.environ already pointing DATABASE_URL at it (see bench_env).
    """
    import psycopg

    with psycopg.connect(f"{PG_URL}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{database}"')
    for app in apps:
        subprocess.run(  # noqa: S603 - our own manage.py with fixed arguments
            [sys.executable, str(ROOT / "manage.py"), "migrate", app, "-v", "0"],
            cwd=ROOT, env=os.environ.copy(), check=True)


def setup_django(env: dict[str, str]) -> None:
    os.environ.update(env)
    import django

    django.setup()


def peak_rss_mb() -> float:
    # ru_maxrss is in kilobytes on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def machine() -> dict[str, str]:
    import platform

    info = {"python": platform.python_version(), "cpus": str(os.cpu_count())}
    try:
        model = next(line.split(":", 1)[1].strip()
                     for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("model name"))
        info["cpu"] = model
    except (OSError, StopIteration):
        pass
    try:
        load = os.getloadavg()
        info["load at start"] = " ".join(f"{x:.2f}" for x in load)
    except OSError:
        pass
    return info
