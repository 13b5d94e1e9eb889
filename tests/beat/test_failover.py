"""Three scheduler processes on one Redis, leaders SIGKILLed mid-run over simulated hours:
every (entry, slot) is published exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from django.conf import settings

from automation.beat.conf import load_config
from automation.connections import get_redis
from automation.cron import next_fire_time

from .conftest import at, drain, make_row, slots_of

ROOT = Path(__file__).resolve().parents[2]
SPEED = 900.0  # simulated seconds per real second
CRONS = ["* * * * *", "*/5 * * * *", "*/15 * * * *", "0 * * * *", "30 1 * * *",
         "*/20 1 * * *"]
ZONES = ["America/New_York", "Asia/Kolkata", "Australia/Lord_Howe", "Europe/London"]


def expected_slots(start: datetime, end: datetime) -> Counter:
    expected: Counter = Counter()
    for cron in CRONS:
        for tz in ZONES:
            t = start
            while (t := next_fire_time(cron, tz, t)) <= end:
                expected[f"{cron}@{tz}", t.isoformat()] += 1
    return expected


def holder() -> str | None:
    value = get_redis().get(f"{load_config().key_prefix}:leader")
    return value.decode().split(":")[0] if value else None


@pytest.mark.django_db(transaction=True)
def test_leader_killed_twice_every_slot_published_exactly_once(tmp_path) -> None:
    # New York falls back at 06:00 UTC inside the window: 01:xx local runs once.
    start, check_until, sim_end = at(2024, 11, 3, 4), at(2024, 11, 3, 7), at(2024, 11, 3, 7, 10)
    for cron in CRONS:
        for tz in ZONES:
            make_row(f"{cron}@{tz}", cron, tz, since=start)
    db = settings.DATABASES["default"]
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "CONN_MAX_AGE": "0",
           "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"}
    real_start = time.time()
    procs: dict[str, subprocess.Popen] = {}
    logs = []

    def spawn(name: str) -> None:
        log = open(tmp_path / f"{name}.log", "w")  # noqa: SIM115 - closed below
        logs.append(log)
        procs[name] = subprocess.Popen(
            [sys.executable, "-m", "tests.beat.ha_instance", name, str(start.timestamp()),
             str(real_start), str(SPEED), str(sim_end.timestamp())],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)

    def wait_for_leader(not_this: str | None, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            name = holder()
            if name and name != not_this:
                return name
            time.sleep(0.02)
        raise AssertionError(f"no new leader; logs in {tmp_path}")

    try:
        spawn("A")
        spawn("B")
        first = wait_for_leader(None)
        time.sleep(max(0.0, real_start + 4.0 - time.time()))
        procs[first].send_signal(signal.SIGKILL)  # mid-run, between or inside ticks
        spawn("C")
        second = wait_for_leader(first)
        time.sleep(max(0.0, real_start + 8.0 - time.time()))
        procs[second].send_signal(signal.SIGKILL)
        third = wait_for_leader(second)
        assert third not in (first, second)
        for name, proc in procs.items():
            if name not in (first, second):
                assert proc.wait(timeout=60) == 0, f"{name} failed; see {tmp_path}"
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for log in logs:
            log.close()

    published = Counter(slots_of(drain()))
    expected = expected_slots(start, check_until)
    in_window = Counter({key: n for key, n in published.items()
                         if key[1] <= check_until.isoformat()})
    assert in_window == expected, (
        f"missing {expected - in_window}, duplicated {in_window - expected}")
    assert all(n == 1 for n in published.values())
    assert int(get_redis().get(f"{load_config().key_prefix}:fence")) >= 3
    assert sum(expected.values()) > 800
    assert min(key[1] for key in published) > (start + timedelta(seconds=1)).isoformat()
