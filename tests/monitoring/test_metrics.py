"""/metrics: queue depth, beat's tick and the registry figures, read at scrape time."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from automation.connections import get_redis
from config.celery import app
from monitoring.broker import broker_client, broker_layout
from monitoring.collector import cron_period_seconds
from monitoring.heartbeat import LAST_TICK_KEY, PROCESSED_KEY
from monitoring.tasks import beat_heartbeat
from tests.conftest import wait_for

ROOT = Path(__file__).resolve().parents[2]
PROBE_QUEUE = "monitoring-probe"


def scrape(**headers: str) -> dict[str, dict[tuple, float]]:
    """Sample name → {sorted label items: value}."""
    response = Client().get("/metrics", **headers)
    assert response.status_code == 200
    samples: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = \
                sample.value
    return samples


def test_queue_depth_counts_every_priority_sub_queue(db, settings) -> None:
    settings.MONITORING_QUEUES = ["automation", PROBE_QUEUE]
    for priority in (0, 0, 5, 9):
        app.send_task("monitoring.no_such_task", queue=PROBE_QUEUE, priority=priority)
    layout = broker_layout()
    lists = layout.lists_of(PROBE_QUEUE)
    # The messages really are spread over kombu's priority lists, not all in one.
    assert sum(1 for key in lists if broker_client().llen(key)) >= 2

    samples = scrape()
    assert samples["automation_queue_depth"][(("queue", PROBE_QUEUE),)] == 4
    assert samples["automation_queue_depth"][(("queue", "automation"),)] == 0
    age = samples["automation_queue_oldest_message_age_seconds"]
    assert 0 <= age[(("queue", PROBE_QUEUE),)] < 60
    assert age[(("queue", "automation"),)] == 0
    assert samples["automation_broker_unacked_messages"][()] == 0
    assert samples["automation_metrics_collector_up"][(("section", "broker"),)] == 1


def test_heartbeat_publish_stamps_beat_tick_and_worker_stamps_processing(db) -> None:
    samples = scrape()
    assert samples["automation_beat_last_tick_timestamp_seconds"][()] == 0  # never seen
    before = time.time()
    # What beat does every 30 s (to a queue no test worker consumes: this process must be the
    # one that runs it below).
    beat_heartbeat.apply_async(queue=PROBE_QUEUE)
    tick = scrape()["automation_beat_last_tick_timestamp_seconds"][()]
    assert before <= tick <= time.time()
    assert get_redis().get(PROCESSED_KEY) is None

    beat_heartbeat.apply()  # what the worker that takes the message does
    processed = scrape()["automation_beat_heartbeat_processed_timestamp_seconds"][()]
    assert processed >= tick


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("scheduler", ["django_celery_beat.schedulers:DatabaseScheduler",
                                       "automation.beat.scheduler:BeatScheduler"])
def test_a_running_beat_ticks(tmp_path, scheduler: str) -> None:
    """Either scheduler publishes the heartbeat, and /metrics sees the tick."""
    db = django_settings.DATABASES["default"]
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "CONN_MAX_AGE": "0",
           "MONITORING_HEARTBEAT_SECONDS": "1",
           "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"}
    log = open(tmp_path / "beat.log", "w")  # noqa: SIM115 - closed below
    started = time.time()
    beat = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", "beat", "-l", "INFO", "--pidfile=",
         "-S", scheduler],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        tick = wait_for(lambda: get_redis().get(LAST_TICK_KEY), timeout=30)
        assert float(tick) >= started
        assert scrape()["automation_beat_last_tick_timestamp_seconds"][()] >= started
    finally:
        beat.terminate()
        try:
            beat.wait(timeout=20)
        except subprocess.TimeoutExpired:
            beat.kill()  # never leave a publishing beat behind the test
            beat.wait()
        log.close()


def test_expected_period_and_enabled_communities(db, community, other_community) -> None:
    samples = scrape()
    period = samples["automation_job_expected_period_seconds"]
    enabled = samples["automation_job_enabled_communities"]
    key = (("job", "test_sleep"), ("queue", "automation"))
    assert period[key] == 300  # */5
    assert enabled[key] == 2
    # On-demand jobs have no period; their enabled count is still shown.
    assert (("job", "test_flaky"), ("queue", "automation")) not in period
    assert enabled[(("job", "test_flaky"), ("queue", "automation"))] == 2


@pytest.mark.parametrize(("cron", "seconds"), [
    ("* * * * *", 60), ("*/15 * * * *", 900), ("0 * * * *", 3600), ("30 2 * * *", 86400),
    ("0 9 * * 1", 7 * 86400), ("0 0 1 * *", 31 * 86400),
    ("0 0 29 2 *", 1461 * 86400),  # 2024-02-29 → 2028-02-29
])
def test_cron_period(cron: str, seconds: float) -> None:
    assert cron_period_seconds(cron) == seconds


def test_a_failing_section_does_not_fail_the_scrape(db, settings) -> None:
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    samples = scrape()
    up = samples["automation_metrics_collector_up"]
    assert up[(("section", "broker"),)] == 0
    assert up[(("section", "beat"),)] == 1
    assert "automation_queue_depth" not in samples
    assert "automation_beat_last_tick_timestamp_seconds" in samples


def test_metrics_still_need_the_token(db, settings) -> None:
    settings.METRICS_TOKEN = "s3cret"
    assert Client().get("/metrics").status_code == 401
    assert "automation_queue_depth" in scrape(HTTP_AUTHORIZATION="Bearer s3cret")
