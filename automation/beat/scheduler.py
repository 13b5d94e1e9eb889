"""BeatScheduler: django-celery-beat's tables, a heap, incremental sync, fenced batch publishing.

    CELERY_BEAT_SCHEDULER = "automation.beat.scheduler:BeatScheduler"

Every instance loads all rows once and then follows changes incrementally (rows.py). One
instance at a time is the leader (leader.py); only the leader keeps the heap and publishes.
A new leader starts from each row's last_run_at in the database and publishes the slots
since then that are within the catch-up window; slots the previous leader already published
are dropped by the per-slot dedup sets (publish.py). See docs/scheduler.md.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import redis
from celery import Celery, schedules
from celery.beat import Scheduler
from django.db import (
    DatabaseError,
    IntegrityError,
    InterfaceError,
    close_old_connections,
    transaction,
)
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

from .conf import BeatConfig, load_config
from .entries import Entry, EntryHeap
from .leader import Lease
from .publish import Prepared, Publisher
from .rows import BadRow, RowReader, as_datetime, row_changed, row_id, row_schedule_refs, ts
from .specs import BadSchedule

logger = logging.getLogger(__name__)

Clock = Callable[[], float]
_DB_ERRORS = (DatabaseError, InterfaceError)


class EntryView(Mapping):
    """`scheduler.schedule`: a read-only name → Entry view (no copies of 100k entries)."""

    def __init__(self, scheduler: BeatScheduler) -> None:
        self._scheduler = scheduler

    def _by_name(self) -> dict[str, Entry]:
        return {e.name: e for e in self._scheduler.entries.values()}

    def __getitem__(self, name: str) -> Entry:
        return self._by_name()[name]

    def __iter__(self) -> Iterator[str]:
        return (e.name for e in self._scheduler.entries.values())

    def __len__(self) -> int:
        return len(self._scheduler.entries)


class BeatScheduler(Scheduler):
    """A Celery beat scheduler for very many django-celery-beat rows, highly available."""

    def __init__(self, app: Celery, *args: Any, clock: Clock | None = None,
                 redis_client: redis.Redis | None = None, instance_id: str | None = None,
                 config: BeatConfig | None = None, fast_publish: bool | None = None,
                 **kwargs: Any) -> None:
        self.config = config or load_config()
        self.clock: Clock = clock or time.time
        self._redis = redis_client
        self._instance_id = instance_id
        self._fast_publish = fast_publish
        self.entries: dict[int, Entry] = {}  # schedulable rows (enabled, valid)
        self.known: dict[int, float] = {}  # every row id → its date_changed
        self.bad: dict[int, str] = {}  # rows skipped, and why
        self.heap = EntryHeap()
        self.stats = {"full_loads": 0, "rows_read": 0, "published": 0, "duplicates": 0,
                      "syncs": 0, "takeovers": 0}
        self._positioned = False
        self._marker: Any = None
        self._watermark: float = 0.0
        self._tables: dict[tuple[str, int], tuple] = {}
        self._next_sync = 0.0
        self._next_reconcile = 0.0
        self._retry_at = 0.0
        self._pending_runs: list[tuple[int, float]] = []
        self._pending_disable: list[int] = []
        self._prepared: list[Prepared] = []  # built ahead, sorted by slot
        self._last_renew = 0.0
        self._setup_done = False
        self._static_installed = False
        kwargs.pop("schedule_filename", None)
        if not kwargs.get("max_interval"):
            kwargs["max_interval"] = self.config.max_interval
        super().__init__(app, *args, **kwargs)

    # -- Celery's Scheduler interface -------------------------------------------------------

    def setup_schedule(self) -> None:
        self.reader = RowReader(self.app)
        client = self._redis or self._broker_redis()
        fast = self._fast_publish
        if fast is None:
            fast = self._redis is None and self._broker_is_redis()
        self.lease = Lease(client, self.config.key_prefix, self.config.lease_seconds,
                           self._instance_id)
        self.publisher = Publisher(
            self.app, client, self.lease, key_prefix=self.config.key_prefix,
            dedup_ttl=self.config.dedup_ttl, batch_size=self.config.batch_size, fast=fast,
            clock=self.clock,
        )
        self.load_all()
        self._setup_done = True

    def get_schedule(self) -> Mapping[str, Entry]:
        return EntryView(self)

    def set_schedule(self, schedule: Any) -> None:
        self.data = schedule  # only Celery's __init__ sets it; entries come from the tables

    schedule = property(get_schedule, set_schedule)

    def should_sync(self) -> bool:
        return False  # tick() syncs both ways itself

    def sync(self) -> None:
        if self._setup_done:
            self._flush_runs()

    def close(self) -> None:
        try:
            super().close()
        finally:
            if self._setup_done:
                self.lease.release()
                self.publisher.close()

    @property
    def info(self) -> str:
        if not self._setup_done:  # a lazy instance (celery beat's banner)
            return "    . automation.beat: heap, incremental sync, leader lease"
        return (f"    . rows: {len(self.known)} ({len(self.entries)} scheduled, "
                f"{len(self.bad)} skipped)\n    . instance: {self.lease.instance_id}")

    @property
    def is_leader(self) -> bool:
        return self._positioned

    # -- the loop ---------------------------------------------------------------------------

    def tick(self, *args: Any, **kwargs: Any) -> float:
        """One iteration: keep the lease, pick up changes, publish what is due.

        Returns seconds until the next due entry, next change poll or lease renewal.
        """
        now = self.clock()
        leader = self._keep_lease()
        if now >= self._next_sync:
            self.sync_changes(now)
        if leader and not self._positioned:
            self._take_over(now)
        elif not leader and self._positioned:
            self._step_down()
        if self._positioned and now >= self._retry_at:
            self._publish_due(now)
            self._flush_runs()
        now = self.clock()
        if self._positioned and now >= self._retry_at:
            self._prepare_ahead(now)
        wait = min(self.max_interval, self._next_sync - now, self.config.lease_seconds / 3)
        if self._positioned:
            wait = min(wait, self._next_due(now) - now)
        return max(wait, 0.0)

    def _next_due(self, now: float) -> float:
        """When tick must run next for publishing: a due slot, or time to build ahead."""
        candidates = [now + self.max_interval]
        if self._prepared:
            candidates.append(self._prepared[0].slot)
        top = self.heap.peek_ts()
        if top is not None:
            candidates.append(top - self.config.prepare_seconds if not self._prepared else top)
        return max(min(candidates), self._retry_at)

    def _keep_lease(self) -> bool:
        self._last_renew = time.monotonic()
        return self.lease.keep()

    def _renew_between_batches(self) -> bool:
        # A long burst must not outlive the lease; renewing more often than a third of the
        # TTL is pointless.
        if time.monotonic() - self._last_renew < self.config.lease_seconds / 3:
            return True
        return self._keep_lease()

    # -- leadership -------------------------------------------------------------------------

    def _take_over(self, now: float) -> None:
        """Position every entry from the database's last runs and build the heap: O(N)."""
        started = time.monotonic()
        if not self._static_installed:
            # Only the leader writes them, so instances starting together do not race.
            self._install_static_entries()
            self._static_installed = True
            self.sync_changes(now)
        try:
            close_old_connections()
            for rid, last_run_at, count in self.reader.run_state():
                entry = self.entries.get(rid)
                if entry is None:
                    continue
                last = ts(last_run_at)
                if last is not None and (entry.last_run_ts is None or last > entry.last_run_ts):
                    entry.last_run_ts = last
                if count > entry.total_run_count:
                    entry.total_run_count = count
        except _DB_ERRORS:
            logger.exception("beat: cannot read last runs; not leading until the database is back")
            self.lease.release()
            return
        for entry in self.entries.values():
            self._position(entry, now)
        self.heap.rebuild(list(self.entries.values()))
        self._positioned = True
        self.stats["takeovers"] += 1
        logger.info("beat: leading with %d entries (%d scheduled) in %.2fs", len(self.entries),
                    len(self.heap), time.monotonic() - started)

    def _step_down(self) -> None:
        self._positioned = False
        self.heap = EntryHeap()
        self._prepared = []
        logger.info("beat: following")

    def _position(self, entry: Entry, now: float) -> None:
        try:
            entry.next_ts = entry.position(now, self.config.catchup_seconds)
        except BadSchedule as exc:
            entry.next_ts = None
            self._mark_bad(entry.id, str(exc))

    # -- publishing -------------------------------------------------------------------------

    def _publish_due(self, now: float) -> None:
        """Publish every slot due at `now`, including catch-up slots: O(due · log N)."""
        while True:
            items = self._take_prepared(now)
            due = self.heap.pop_due(now)
            items += [Prepared(e, e.next_ts, self.publisher.route(e)) for e in due]
            if not items:
                return
            outcome = self.publisher.send(items, on_batch=self._renew_between_batches)
            self.stats["published"] += len(outcome.sent)
            self.stats["duplicates"] += len(outcome.duplicates)
            if outcome.duplicates:
                logger.info("beat: %d slots were already published by a previous leader",
                            len(outcome.duplicates))
            logger.debug("beat: published %d messages", len(outcome.sent))
            for entry, slot in outcome.sent + outcome.duplicates:
                self._pending_runs.append((entry.id, slot))
                self._advance(entry, slot)
                if entry.one_off:
                    self._pending_disable.append(entry.id)
            for entry, slot in outcome.broken:
                self._advance(entry, slot)  # skipped, not recorded as run
            if outcome.failed:
                for entry, slot in outcome.failed:
                    entry.next_ts = slot
                    self.heap.push(entry)
                if outcome.fenced_out:
                    self.lease.lost()
                    self._step_down()
                    return
                self._retry_at = self.clock() + 1.0
                return

    def _advance(self, entry: Entry, slot: float) -> None:
        try:
            entry.next_ts = entry.advance(slot)
        except BadSchedule as exc:
            entry.next_ts = None
            self._mark_bad(entry.id, str(exc))
        self.heap.push(entry)

    def _take_prepared(self, now: float) -> list[Prepared]:
        """Prepared items now due, minus those whose entry changed or vanished meanwhile."""
        prepared = self._prepared
        cut = 0
        while cut < len(prepared) and prepared[cut].slot <= now:
            cut += 1
        ready, self._prepared = prepared[:cut], prepared[cut:]
        # A changed entry was replaced by a new one, positioned and pushed on its own.
        return [p for p in ready if not p.entry.dead]

    def _prepare_ahead(self, now: float) -> None:
        ahead = self.config.prepare_seconds
        if not ahead or self._prepared:
            return
        top = self.heap.peek_ts()
        if top is None or top - now > ahead:
            return
        due = self.heap.pop_due(now + ahead)
        self._prepared = self.publisher.prepare([(e, e.next_ts) for e in due], now)

    def _flush_runs(self) -> None:
        if not self._pending_runs and not self._pending_disable:
            return
        try:
            with transaction.atomic():  # all or nothing: a retry must not count twice
                self.reader.record_runs(self._pending_runs)
                self.reader.disable(self._pending_disable)
            self._pending_runs = []
            self._pending_disable = []
        except _DB_ERRORS:
            # Published already (and deduplicated): only the bookkeeping is late.
            logger.exception("beat: recording %d last runs failed; retrying",
                             len(self._pending_runs))
            close_old_connections()

    # -- loading and change pickup ----------------------------------------------------------

    def load_all(self) -> None:
        """Read every row once (start-up)."""
        now = self.clock()
        close_old_connections()
        self._marker = self.reader.marker()
        self._tables = self.reader.schedule_tables()
        watermark = 0.0
        for row in self.reader.all_rows():
            self._apply_row(row, now)
            watermark = max(watermark, self.known[row_id(row)])
        self._watermark = watermark
        self.stats["full_loads"] += 1
        self._next_sync = now + self.config.sync_seconds
        self._next_reconcile = now + self.config.reconcile_seconds
        logger.info("beat: loaded %d rows (%d scheduled, %d skipped, %d distinct schedules)",
                    len(self.known), len(self.entries), len(self.bad), len(self.reader.specs))

    def sync_changes(self, now: float | None = None) -> int:
        """Apply what changed since the last look; returns the number of rows re-read."""
        now = self.clock() if now is None else now
        self._next_sync = now + self.config.sync_seconds
        reconcile = bool(self.config.reconcile_seconds) and now >= self._next_reconcile
        try:
            # Django runs outside atomic blocks in autocommit: each query sees the latest
            # commits, so no explicit COMMIT is needed (unlike a long-lived transaction).
            close_old_connections()
            marker = self.reader.marker()
            if marker == self._marker and not reconcile:
                return 0
            self.stats["syncs"] += 1
            read = self._sync_rows(now, reconcile)
            self._marker = marker
        except _DB_ERRORS:
            logger.exception("beat: change sync failed; retrying")
            return 0
        if reconcile:
            self._next_reconcile = now + self.config.reconcile_seconds
        return read

    def _sync_rows(self, now: float, reconcile: bool) -> int:
        reader = self.reader
        stale: set[int] = set()
        since = self._watermark - self.config.change_overlap_seconds
        for rid, changed in reader.changed_since(as_datetime(max(since, 0.0))):
            if self.known.get(rid) != changed.timestamp():
                stale.add(rid)
        tables = reader.schedule_tables()
        if tables != self._tables:
            crontabs, intervals, clocked = set(), set(), set()
            for key in tables.keys() | self._tables.keys():
                if tables.get(key) != self._tables.get(key):
                    {"crontab": crontabs, "interval": intervals, "clocked": clocked}[
                        key[0]].add(key[1])
            self._tables = tables
            stale.update(row_id(row) for row in reader.rows_using(crontabs, intervals, clocked))
        removed: set[int] = set()
        expected = len(self.known) + sum(1 for rid in stale if rid not in self.known)
        if reconcile:
            seen: set[int] = set()
            for rid, changed in reader.all_id_dates():
                seen.add(rid)
                if self.known.get(rid) != changed.timestamp():
                    stale.add(rid)
            removed = self.known.keys() - seen
        elif reader.count() != expected:
            ids = reader.all_ids()
            removed = self.known.keys() - ids
            stale.update(ids - self.known.keys())
        rows = reader.rows_by_id(stale) if stale else []
        for row in rows:
            self._apply_row(row, now)
            self._watermark = max(self._watermark, self.known[row_id(row)])
        removed |= stale - {row_id(row) for row in rows}  # deleted between the two reads
        for rid in removed:
            self._remove(rid)
        self.stats["rows_read"] += len(rows)
        if rows or removed:
            logger.info("beat: %d rows changed, %d removed", len(rows), len(removed))
        return len(rows)

    def _apply_row(self, row: tuple, now: float) -> None:
        rid = row_id(row)
        self.known[rid] = row_changed(row).timestamp()
        old = self.entries.pop(rid, None)
        if old is not None:
            old.dead = True
            self.heap.discard(old)
        try:
            entry = self.reader.entry(row)
        except BadRow as exc:
            self._mark_bad(rid, f"{exc} (row {rid}, refs {row_schedule_refs(row)})")
            return
        self.bad.pop(rid, None)
        if entry is None:
            return
        if old is not None:
            # Our in-memory last run may be newer than the row's (an admin form saves the
            # last_run_at it loaded minutes ago).
            if old.last_run_ts is not None and (entry.last_run_ts is None
                                                or old.last_run_ts > entry.last_run_ts):
                entry.last_run_ts = old.last_run_ts
            entry.total_run_count = max(entry.total_run_count, old.total_run_count)
        self.entries[rid] = entry
        if self._positioned:
            self._position(entry, now)
            self.heap.push(entry)

    def _remove(self, rid: int) -> None:
        self.known.pop(rid, None)
        self.bad.pop(rid, None)
        entry = self.entries.pop(rid, None)
        if entry is not None:
            entry.dead = True
            self.heap.discard(entry)

    def _mark_bad(self, rid: int, reason: str) -> None:
        if self.bad.get(rid) != reason:
            logger.error("beat: skipping schedule row %s: %s", rid, reason)
        self.bad[rid] = reason

    # -- redis / broker ---------------------------------------------------------------------

    def _broker_is_redis(self) -> bool:
        conn = self.app.connection_for_write()
        try:
            return conn.transport.driver_type == "redis" and conn.transport_cls in (
                "redis", "rediss")
        finally:
            conn.release()

    def _broker_redis(self) -> redis.Redis:
        """The broker's own Redis (the publish script must run where the queues are)."""
        if self._broker_is_redis():
            conn = self.app.connection_for_write()
            try:
                url = conn.as_uri(include_password=True)
            finally:
                conn.release()
            return redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5,
                                        health_check_interval=30)
        from automation.connections import get_redis

        return get_redis()

    # -- static entries (conf.beat_schedule, celery.backend_cleanup) ------------------------

    def _install_static_entries(self) -> None:
        wanted: dict[str, dict] = {}
        if self.app.conf.result_expires and not self.app.backend.supports_autoexpire:
            wanted["celery.backend_cleanup"] = {
                "task": "celery.backend_cleanup", "schedule": schedules.crontab("0", "4", "*"),
                "options": {"expire_seconds": 12 * 3600},
            }
        wanted.update(self.app.conf.beat_schedule or {})
        for name, spec in wanted.items():
            try:
                close_old_connections()
                install_entry(name, spec, self.app)
            except Exception:
                logger.exception("beat: cannot install the static entry %s", name)


def install_entry(name: str, spec: dict, app: Celery) -> None:
    """Write a conf.beat_schedule entry as a row (as django-celery-beat does), if it differs."""
    import json

    schedule = schedules.maybe_schedule(spec["schedule"], app=app)
    fields: dict[str, Any] = {"task": spec["task"], "crontab": None, "interval": None,
                              "solar": None, "clocked": None}
    if isinstance(schedule, schedules.crontab):
        fields["crontab"] = _first_or_create(
            CrontabSchedule, minute=schedule._orig_minute, hour=schedule._orig_hour,
            day_of_week=schedule._orig_day_of_week, day_of_month=schedule._orig_day_of_month,
            month_of_year=schedule._orig_month_of_year, timezone=str(schedule.tz or "UTC"),
        )
    elif isinstance(schedule, schedules.schedule):
        seconds = max(int(schedule.run_every.total_seconds()), 1)
        fields["interval"] = _first_or_create(IntervalSchedule, every=seconds,
                                              period=IntervalSchedule.SECONDS)
    else:
        raise ValueError(f"unsupported schedule type {schedule!r}")
    options = spec.get("options") or {}
    fields.update(
        args=json.dumps(list(spec.get("args") or [])),
        kwargs=json.dumps(dict(spec.get("kwargs") or {})),
        queue=options.get("queue"), exchange=options.get("exchange"),
        routing_key=options.get("routing_key"), priority=options.get("priority"),
        expire_seconds=options.get("expire_seconds"),
    )
    row = PeriodicTask.objects.filter(name=name).first()
    if row is not None and all(getattr(row, k) == v for k, v in fields.items()):
        return
    row = row or PeriodicTask(name=name)
    for key, value in fields.items():
        setattr(row, key, value)
    try:
        with transaction.atomic():
            row.save()
    except IntegrityError:
        logger.info("beat: static entry %s was written by another instance", name)


def _first_or_create(model: Any, **fields: Any) -> Any:
    # Not get_or_create: duplicates written by other processes must not raise.
    return model.objects.filter(**fields).order_by("pk").first() or model.objects.create(
        **fields)
