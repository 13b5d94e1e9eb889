"""The scheduler under `celery beat` itself: started by class path, ticking, shut down."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

import pytest
from django.conf import settings
from django.utils import timezone

from automation.beat.conf import load_config
from automation.connections import get_redis
from tests.conftest import wait_for

from .conftest import TEST_QUEUE, drain, make_row, slots_of

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.django_db(transaction=True)
def test_celery_beat_runs_the_scheduler_and_releases_the_lease(tmp_path) -> None:
    make_row("every-2s", None, every=2, since=timezone.now())
    db = settings.DATABASES["default"]
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "CONN_MAX_AGE": "0",
           "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"}
    log = tmp_path / "beat.log"
    with open(log, "w") as out:
        beat = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", "beat", "-l", "INFO",
             "-S", "automation.beat.scheduler:BeatScheduler", "--pidfile=",
             "-s", str(tmp_path / "unused-schedule")],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            lease_key = f"{load_config().key_prefix}:leader"
            wait_for(lambda: get_redis().get(lease_key), timeout=30)
            wait_for(lambda: get_redis().llen(TEST_QUEUE) >= 3, timeout=30)
        finally:
            beat.send_signal(signal.SIGTERM)
            try:
                code = beat.wait(timeout=30)
            except subprocess.TimeoutExpired:
                beat.kill()  # never leave a publishing beat behind the test
                beat.wait()
                code = None
            assert code == 0, log.read_text()
    assert get_redis().get(lease_key) is None  # released on shutdown: no 15 s takeover wait
    slots = Counter(slots_of(drain()))
    assert all(count == 1 for count in slots.values())
    seconds = sorted(datetime.fromisoformat(slot).timestamp() for _, slot in slots)
    assert all(s % 2 == 0 for s in seconds) and len(seconds) >= 3
    assert seconds[-1] <= time.time()
    assert "leading with" in log.read_text()
