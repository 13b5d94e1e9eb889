"""Helpers for scheduler tests: an injected clock, rows, schedulers, decoded queue contents."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

from automation.beat.conf import load_config
from automation.beat.scheduler import BeatScheduler
from config.celery import app

TEST_QUEUE = "beat-test"  # no worker consumes it: messages stay for the test to read


class FakeClock:
    """The injected clock: epoch seconds that only move when the test says so."""

    def __init__(self, start: datetime) -> None:
        self.now = start.timestamp()

    def __call__(self) -> float:
        return self.now

    def set(self, moment: datetime) -> None:
        self.now = moment.timestamp()

    def advance(self, seconds: float) -> None:
        self.now += seconds

    @property
    def dt(self) -> datetime:
        return datetime.fromtimestamp(self.now, UTC)


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def crontab(cron: str, tz: str = "UTC") -> CrontabSchedule:
    minute, hour, dom, month, dow = cron.split()
    return CrontabSchedule.objects.get_or_create(
        minute=minute, hour=hour, day_of_month=dom, month_of_year=month, day_of_week=dow,
        timezone=tz,
    )[0]


def make_row(name: str, cron: str | None = "*/15 * * * *", tz: str = "UTC", *,
             task: str = "tests.beat.noop", queue: str | None = TEST_QUEUE,
             kwargs: dict | None = None, since: datetime | None = None,
             every: int | None = None, **fields: Any) -> PeriodicTask:
    """A row saved through the ORM (signals bump the change marker, as admin edits do).

    `since` backdates date_changed and last_run_at: rows otherwise count as changed "now"
    in real time, which is years after the test clock.
    """
    schedule: dict[str, Any] = {}
    if every is not None:
        schedule["interval"] = IntervalSchedule.objects.get_or_create(
            every=every, period=IntervalSchedule.SECONDS)[0]
    elif cron is not None:
        schedule["crontab"] = crontab(cron, tz)
    row = PeriodicTask.objects.create(
        name=name, task=task, queue=queue, kwargs=json.dumps(kwargs or {}), **schedule,
        **fields,
    )
    if since is not None:
        backdate([row.pk], since)
        row.refresh_from_db()
    return row


def backdate(ids: list[int], moment: datetime, last_run: bool = True) -> None:
    values: dict[str, Any] = {"date_changed": moment}
    if last_run:
        values["last_run_at"] = moment
    PeriodicTask.objects.filter(pk__in=ids).update(**values)


def drain(queue: str = TEST_QUEUE) -> list[dict]:
    """Every message on a queue, decoded by kombu's own Redis transport (oldest first)."""
    messages = []
    with app.connection_for_read() as conn:
        channel = conn.default_channel
        while True:
            message = channel.basic_get(queue, no_ack=True)
            if message is None:
                break
            args, kwargs, embed = message.decode()
            messages.append({"headers": message.headers, "args": args, "kwargs": kwargs,
                             "embed": embed, "properties": message.properties,
                             "delivery_info": message.delivery_info,
                             "content_type": message.content_type})
    return messages


def slots_of(messages: list[dict]) -> list[tuple[str, str]]:
    return [(m["headers"]["periodic_task_name"], m["headers"]["automation_sent_at"])
            for m in messages]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(at(2024, 3, 10, 4, 0))


@pytest.fixture
def make_scheduler(clock: FakeClock) -> Iterator[Callable[..., BeatScheduler]]:
    """Schedulers on the injected clock; closed (lease released) at the end of the test."""
    made: list[BeatScheduler] = []

    def factory(*, clock: Callable[[], float] = clock, instance_id: str | None = None,
                **overrides: Any) -> BeatScheduler:
        overrides.setdefault("reconcile_seconds", 0)
        scheduler = BeatScheduler(app, clock=clock, instance_id=instance_id,
                                  config=load_config(**overrides))
        made.append(scheduler)
        return scheduler

    yield factory
    for scheduler in made:
        scheduler.close()


def run_until(scheduler: BeatScheduler, clock: FakeClock, until: datetime,
              step_cap: float = 3600.0) -> int:
    """Tick on the injected clock until `until`, sleeping as tick() asks; returns ticks."""
    ticks = 0
    while clock.now < until.timestamp():
        wait = scheduler.tick()
        clock.advance(min(max(wait, 0.001), step_cap))
        ticks += 1
    scheduler.tick()
    return ticks + 1
