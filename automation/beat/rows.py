"""Reading django-celery-beat rows into entries: all once, then only what changed.

Change detection, cheapest first:
1. `PeriodicTasks.last_update` (one row, bumped by django-celery-beat's signals on every
   PeriodicTask/CrontabSchedule/IntervalSchedule/... save or delete) says *whether* anything
   changed. Polled every `sync_seconds`; nothing else is read while it stands still.
2. When it moved: the (id, date_changed) pairs of rows with date_changed >= newest seen minus
   an overlap, then full rows only for the ids whose date_changed differs from what we hold.
   The overlap covers a transaction that committed after a later one (date_changed is set at
   save time, not commit time).
3. Schedule tables (crontab, interval, clocked) are small: re-read and diffed; rows using a
   changed schedule are re-read.
4. Deletions: `COUNT(*)` against the number of ids we hold; only when they differ, the id
   column is read and diffed.
5. Every `reconcile_seconds`, a narrow (id, date_changed) scan of the table catches what the
   marker cannot see (transactions longer than the overlap, raw SQL deletes).

Our own writes (last_run_at, total_run_count, one-off disable) use QuerySet.update(), which
neither fires signals nor bumps date_changed, so we never re-read our own writes.

Rows are read with values_list (no model instances) and the timezone as plain text, so a
row with an invalid timezone is one bad row, not an exception out of the whole query.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

from django.db import connection
from django.db.models import CharField, F, Q
from django.db.models.functions import Cast
from django_celery_beat.models import (
    ClockedSchedule,
    CrontabSchedule,
    IntervalSchedule,
    PeriodicTask,
    PeriodicTasks,
)

from .entries import Entry
from .specs import BadSchedule, SpecCache

logger = logging.getLogger(__name__)

ROW_FIELDS = (
    "id", "name", "task", "enabled", "args", "kwargs", "queue", "exchange", "routing_key",
    "headers", "priority", "expires", "expire_seconds", "one_off", "start_time", "last_run_at",
    "total_run_count", "date_changed", "crontab_id", "interval_id", "clocked_id", "solar_id",
    "c_minute", "c_hour", "c_dom", "c_month", "c_dow", "c_tz", "i_every", "i_period",
    "k_time",
)
_ROW_ANNOTATIONS = {
    "c_minute": F("crontab__minute"),
    "c_hour": F("crontab__hour"),
    "c_dom": F("crontab__day_of_month"),
    "c_month": F("crontab__month_of_year"),
    "c_dow": F("crontab__day_of_week"),
    # Plain text: TimeZoneField's converter raises on an unknown zone, failing the query.
    "c_tz": Cast("crontab__timezone", CharField()),
    "i_every": F("interval__every"),
    "i_period": F("interval__period"),
    "k_time": F("clocked__clocked_time"),
}
_IDX = {name: i for i, name in enumerate(ROW_FIELDS)}
_OPTION_FIELDS = ("queue", "exchange", "routing_key", "priority")
_EMPTY: dict[str, Any] = {}


class BadRow(ValueError):
    """A row that cannot be scheduled; it is logged and skipped, never fatal."""


def ts(value: datetime | None) -> float | None:
    return value.timestamp() if value is not None else None


def as_datetime(value: float) -> datetime:
    return datetime.fromtimestamp(value, UTC)


class RowReader:
    """Turns database rows into entries; interns shared strings and schedule specs."""

    def __init__(self, app: Any = None, chunk_size: int = 5000) -> None:
        self.app = app
        self.specs = SpecCache()
        self.chunk_size = chunk_size
        self._strings: dict[str, str] = {}
        self._options: dict[tuple, tuple] = {}
        self._headers: dict[str, dict] = {}

    # -- queries ----------------------------------------------------------------------------

    def _rows(self, where: Q | None = None) -> Iterator[tuple]:
        qs = PeriodicTask.objects.annotate(**_ROW_ANNOTATIONS)
        if where is not None:
            qs = qs.filter(where)
        return qs.values_list(*ROW_FIELDS).iterator(chunk_size=self.chunk_size)

    def all_rows(self) -> Iterator[tuple]:
        return self._rows()

    def rows_by_id(self, ids: Iterable[int]) -> list[tuple]:
        ids = list(ids)
        rows: list[tuple] = []
        for start in range(0, len(ids), self.chunk_size):
            rows.extend(self._rows(Q(id__in=ids[start:start + self.chunk_size])))
        return rows

    def rows_using(self, crontabs: set[int], intervals: set[int], clocked: set[int]
                   ) -> list[tuple]:
        where = Q(pk__in=[])
        if crontabs:
            where |= Q(crontab_id__in=crontabs)
        if intervals:
            where |= Q(interval_id__in=intervals)
        if clocked:
            where |= Q(clocked_id__in=clocked)
        return list(self._rows(where))

    @staticmethod
    def marker() -> datetime | None:
        return (PeriodicTasks.objects.filter(ident=1)
                .values_list("last_update", flat=True).first())

    @staticmethod
    def changed_since(since: datetime) -> list[tuple[int, datetime]]:
        return list(PeriodicTask.objects.filter(date_changed__gte=since)
                    .values_list("id", "date_changed"))

    @staticmethod
    def count() -> int:
        return PeriodicTask.objects.count()

    @staticmethod
    def all_ids() -> set[int]:
        return set(PeriodicTask.objects.values_list("id", flat=True))

    @staticmethod
    def all_id_dates() -> Iterator[tuple[int, datetime]]:
        return PeriodicTask.objects.values_list("id", "date_changed").iterator(chunk_size=20000)

    @staticmethod
    def run_state() -> Iterator[tuple[int, datetime | None, int]]:
        """(id, last_run_at, total_run_count) of enabled rows: a new leader's starting point."""
        return (PeriodicTask.objects.filter(enabled=True)
                .values_list("id", "last_run_at", "total_run_count").iterator(chunk_size=20000))

    @staticmethod
    def schedule_tables() -> dict[tuple[str, int], tuple]:
        """Every schedule row's content, to diff against the previous read."""
        tables: dict[tuple[str, int], tuple] = {}
        crontabs = CrontabSchedule.objects.annotate(tz=Cast("timezone", CharField()))
        for row in crontabs.values_list("id", "minute", "hour", "day_of_month",
                                        "month_of_year", "day_of_week", "tz"):
            tables["crontab", row[0]] = row[1:]
        for row in IntervalSchedule.objects.values_list("id", "every", "period"):
            tables["interval", row[0]] = row[1:]
        for row in ClockedSchedule.objects.values_list("id", "clocked_time"):
            tables["clocked", row[0]] = row[1:]
        return tables

    # -- writes -----------------------------------------------------------------------------

    @staticmethod
    def record_runs(runs: Iterable[tuple[int, float]]) -> int:
        """Set last_run_at and bump total_run_count: one UPDATE per slot (per id chunk).

        QuerySet.update() bypasses auto_now and signals: date_changed and the change marker
        stay put, so no instance re-reads these writes as changes.
        """
        by_slot: dict[float, list[int]] = {}
        for entry_id, slot in runs:
            by_slot.setdefault(slot, []).append(entry_id)
        statements = 0
        for slot in sorted(by_slot):
            ids = by_slot[slot]
            size = connection.ops.bulk_batch_size(["id"], ids) or len(ids)
            for start in range(0, len(ids), size):
                PeriodicTask.objects.filter(id__in=ids[start:start + size]).update(
                    last_run_at=as_datetime(slot),
                    total_run_count=F("total_run_count") + 1,
                )
                statements += 1
        return statements

    @staticmethod
    def disable(ids: list[int]) -> None:
        """One-off rows that ran: disabled, like django-celery-beat does."""
        if ids:
            PeriodicTask.objects.filter(id__in=ids).update(enabled=False)

    # -- conversion -------------------------------------------------------------------------

    def _intern(self, value: str) -> str:
        return self._strings.setdefault(value, value)

    def entry(self, row: tuple) -> Entry | None:
        """The entry of a row, None if the row is disabled; raises BadRow if unusable."""
        g = row.__getitem__
        if not g(_IDX["enabled"]):
            return None
        try:
            spec = self._spec(row)
            args = json.loads(g(_IDX["args"]) or "[]")
            kwargs = json.loads(g(_IDX["kwargs"]) or "{}")
        except BadSchedule as exc:
            raise BadRow(str(exc)) from exc
        except ValueError as exc:
            raise BadRow(f"args/kwargs are not JSON: {exc}") from exc
        if not isinstance(args, list) or not isinstance(kwargs, dict):
            raise BadRow("args must be a JSON list and kwargs a JSON object")
        task = self._intern(g(_IDX["task"]))
        self._check_signature(task, args, kwargs)
        options = tuple((name, g(_IDX[name])) for name in _OPTION_FIELDS
                        if g(_IDX[name]) not in (None, ""))
        options = self._options.setdefault(options, options)
        return Entry(
            id=g(_IDX["id"]),
            name=g(_IDX["name"]),
            task=task,
            spec=spec,
            args=tuple(args) if args else (),
            kwargs=kwargs,
            options=options,
            headers=self._parse_headers(g(_IDX["headers"])),
            start_ts=ts(g(_IDX["start_time"])),
            expires_ts=ts(g(_IDX["expires"])),
            expire_seconds=g(_IDX["expire_seconds"]),
            one_off=bool(g(_IDX["one_off"])),
            last_run_ts=ts(g(_IDX["last_run_at"])),
            total_run_count=g(_IDX["total_run_count"]) or 0,
            changed_ts=ts(g(_IDX["date_changed"])) or 0.0,
        )

    def _spec(self, row: tuple) -> Any:
        g = row.__getitem__
        if g(_IDX["crontab_id"]) is not None:
            return self.specs.cron(g(_IDX["c_minute"]), g(_IDX["c_hour"]), g(_IDX["c_dom"]),
                                   g(_IDX["c_month"]), g(_IDX["c_dow"]), g(_IDX["c_tz"]) or "UTC")
        if g(_IDX["interval_id"]) is not None:
            start = g(_IDX["start_time"])
            return self.specs.interval(g(_IDX["i_every"]), g(_IDX["i_period"]),
                                       ts(start) or 0.0)
        if g(_IDX["clocked_id"]) is not None:
            return self.specs.clocked(g(_IDX["k_time"]).timestamp())
        if g(_IDX["solar_id"]) is not None:
            raise BadSchedule("solar schedules are not supported by this scheduler")
        raise BadSchedule("the row has no schedule")

    def _parse_headers(self, raw: str | None) -> dict[str, Any]:
        if not raw or raw == "{}":
            return _EMPTY
        headers = self._headers.get(raw)
        if headers is None:
            try:
                headers = json.loads(raw)
            except ValueError as exc:
                raise BadRow(f"headers are not JSON: {exc}") from exc
            if not isinstance(headers, dict):
                raise BadRow("headers must be a JSON object")
            self._headers[raw] = headers
        return headers

    def _check_signature(self, task: str, args: list, kwargs: dict) -> None:
        # apply_async refuses arguments the task does not accept (typing=True); the batched
        # path does not call it, so the row is refused here instead of failing in a worker.
        if self.app is None:
            return
        registered = self.app.tasks.get(task)
        check = getattr(registered, "__header__", None) if registered is not None else None
        if check is None or not getattr(registered, "typing", False):
            return
        try:
            check(*args, **kwargs)
        except TypeError as exc:
            raise BadRow(f"arguments do not match task {task}: {exc}") from exc


def row_id(row: tuple) -> int:
    return row[_IDX["id"]]


def row_changed(row: tuple) -> datetime:
    return row[_IDX["date_changed"]]


def row_schedule_refs(row: tuple) -> tuple[int | None, int | None, int | None]:
    return row[_IDX["crontab_id"]], row[_IDX["interval_id"]], row[_IDX["clocked_id"]]
