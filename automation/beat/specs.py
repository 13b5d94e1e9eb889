"""When an entry fires: shared, cached schedule specs (crontab, interval, clocked).

Times are UTC epoch seconds (floats) throughout the scheduler; the heap compares them.

Crontab fire times come from `automation.cron.next_fire_time`, the same wall-clock rules the
run uses to derive its slot: a local time skipped by spring-forward fires at the jump
(02:30 → 03:00), a local time repeated by fall-back fires once (first occurrence).

At 100k rows most tenants share a handful of cron strings over ~20 timezones, so one spec
object exists per distinct (cron, timezone) and it memoises "next fire after minute m":
start-up and a 10k-entry burst compute each distinct answer once.
"""

from __future__ import annotations

import math
import zoneinfo
from datetime import UTC, datetime

from croniter import croniter

from automation.cron import next_fire_time

_MEMO_LIMIT = 4096


class BadSchedule(ValueError):
    """A row's schedule cannot be evaluated (bad cron field, unknown timezone, ...)."""


class CronSpec:
    """A crontab in a timezone; fire times are whole UTC minutes."""

    __slots__ = ("_memo", "expr", "zone")
    collapses_catchup = False

    def __init__(self, expr: str, tz: str) -> None:
        if not croniter.is_valid(expr):
            raise BadSchedule(f"invalid cron expression {expr!r}")
        try:
            self.zone = zoneinfo.ZoneInfo(tz)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError) as exc:
            raise BadSchedule(f"unknown timezone {tz!r}") from exc
        self.expr = expr
        self._memo: dict[int, float | None] = {}
        # Fail on the row now, not in the middle of a tick (e.g. "0 0 31 2 *" never fires).
        self.next_after(datetime(2024, 1, 1, tzinfo=UTC).timestamp())

    def next_after(self, ts: float) -> float | None:
        # Fire times are whole minutes, so the answer for any instant in [m, m+60) is the
        # answer for m: memoise per minute.
        minute = int(ts // 60) * 60
        try:
            return self._memo[minute]
        except KeyError:
            pass
        try:
            nxt: float | None = next_fire_time(
                self.expr, self.zone, datetime.fromtimestamp(minute, UTC)
            ).timestamp()
        except (ValueError, KeyError, OverflowError) as exc:
            raise BadSchedule(f"{self.expr!r} in {self.zone.key}: {exc}") from exc
        if len(self._memo) >= _MEMO_LIMIT:
            self._memo.clear()
        self._memo[minute] = nxt
        return nxt

    def __repr__(self) -> str:
        return f"<cron {self.expr} {self.zone.key}>"


class IntervalSpec:
    """Every N seconds on a fixed grid anchored at the Unix epoch (or the row's start_time).

    A grid, not "N seconds after the last run", so every instance derives the same slots and
    the per-slot dedup holds across failover. Catch-up collapses to the latest missed slot:
    an interval says "this often", not "each of these times".
    """

    __slots__ = ("anchor", "every")
    collapses_catchup = True

    def __init__(self, every: float, anchor: float = 0.0) -> None:
        if not every or every <= 0 or not math.isfinite(every):
            raise BadSchedule(f"interval must be positive, not {every!r}")
        self.every = float(every)
        self.anchor = float(anchor)

    def next_after(self, ts: float) -> float | None:
        steps = math.floor((ts - self.anchor) / self.every) + 1
        return self.anchor + max(steps, 0) * self.every

    def latest_at_or_before(self, ts: float) -> float:
        return self.anchor + math.floor((ts - self.anchor) / self.every) * self.every

    def __repr__(self) -> str:
        return f"<every {self.every:g}s>"


class ClockedSpec:
    """Once, at a given instant."""

    __slots__ = ("at",)
    collapses_catchup = False

    def __init__(self, at: float) -> None:
        self.at = at

    def next_after(self, ts: float) -> float | None:
        return self.at if self.at > ts else None

    def __repr__(self) -> str:
        return f"<at {datetime.fromtimestamp(self.at, UTC).isoformat()}>"


Spec = CronSpec | IntervalSpec | ClockedSpec

_PERIOD_SECONDS = {"days": 86400.0, "hours": 3600.0, "minutes": 60.0, "seconds": 1.0,
                   "microseconds": 1e-6}


class SpecCache:
    """One spec object per distinct schedule, shared by all entries that use it."""

    def __init__(self) -> None:
        self._specs: dict[tuple, Spec] = {}

    def cron(self, minute: str, hour: str, dom: str, month: str, dow: str, tz: str) -> CronSpec:
        expr = " ".join(str(part).strip() for part in (minute, hour, dom, month, dow))
        key = ("cron", expr, tz)
        spec = self._specs.get(key)
        if spec is None:
            spec = self._specs[key] = CronSpec(expr, tz)
        return spec  # type: ignore[return-value]

    def interval(self, every: int, period: str, anchor: float = 0.0) -> IntervalSpec:
        if period not in _PERIOD_SECONDS:
            raise BadSchedule(f"unknown interval period {period!r}")
        key = ("interval", every, period, anchor)
        spec = self._specs.get(key)
        if spec is None:
            spec = self._specs[key] = IntervalSpec(every * _PERIOD_SECONDS[period], anchor)
        return spec  # type: ignore[return-value]

    def clocked(self, at: float) -> ClockedSpec:
        return ClockedSpec(at)

    def __len__(self) -> int:
        return len(self._specs)
