"""The history timeline as stacked bars, laid out here and drawn as inline SVG by the template.

No chart library: a few dozen to a few hundred rectangles are cheaper to send as markup
than a script, and the page works without JavaScript.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

# Bottom to top; "other" is queued or running.
SERIES = ("succeeded", "failed", "skipped", "other")
WIDTH, HEIGHT = 900.0, 180.0
TOP, BOTTOM = 8.0, 22.0  # room for the scale's label and the time labels
MAX_TICKS = 8
TICK_ROOM = 80.0  # width of a time label in chart units


@dataclass(frozen=True)
class Segment:
    series: str
    count: int
    y: float
    height: float


@dataclass(frozen=True)
class Bar:
    start: datetime
    x: float
    width: float
    total: int
    title: str
    segments: list[Segment] = field(default_factory=list)


@dataclass(frozen=True)
class Chart:
    unit: str
    bars: list[Bar]
    peak: int
    ticks: list[tuple[float, str]]
    width: float = WIDTH
    height: float = HEIGHT
    baseline: float = HEIGHT - BOTTOM
    top: float = TOP

    @property
    def plot_height(self) -> float:
        return self.baseline - self.top


def _floor(moment: datetime, unit: str) -> datetime:
    moment = moment.replace(minute=0, second=0, microsecond=0)
    return moment.replace(hour=0) if unit == "day" else moment


def _label(moment: datetime, unit: str) -> str:
    return f"{moment:%b %d %H:%M}" if unit == "hour" else f"{moment:%b %d}"


def stacked_bars(timeline: list[dict[str, Any]], since: datetime, until: datetime,
                 unit: str) -> Chart:
    """One bar per hour or day of [since, until), empty ones included, so that the
    x axis is time; bucket starts are UTC, like the database's truncation."""
    step = timedelta(hours=1) if unit == "hour" else timedelta(days=1)
    counts = {row["bucket"]: row for row in timeline}
    starts = []
    moment = _floor(since, unit)
    while moment < until:
        starts.append(moment)
        moment += step
    peak = max((sum(counts.get(s, {}).get(k, 0) for k in SERIES) for s in starts), default=0)
    slot = WIDTH / max(len(starts), 1)
    gap = min(2.0, slot * 0.15)
    plot = HEIGHT - BOTTOM - TOP
    bars = []
    for i, start in enumerate(starts):
        row = counts.get(start, {})
        y = HEIGHT - BOTTOM
        segments = []
        for series in SERIES:
            n = row.get(series, 0)
            if not n:
                continue
            h = plot * n / peak
            y -= h
            segments.append(Segment(series, n, round(y, 2), round(h, 2)))
        total = sum(row.get(k, 0) for k in SERIES)
        parts = ", ".join(f"{s.count} {s.series}" for s in segments) or "no runs"
        bars.append(Bar(start=start, x=round(i * slot + gap / 2, 2),
                        width=round(max(slot - gap, 0.5), 2), total=total,
                        title=f"{_label(start, unit)} UTC: {parts}", segments=segments))
    every = max(1, -(-len(starts) // MAX_TICKS))  # ceil: at most MAX_TICKS labels
    # Labels are anchored at their bar's left edge; one too near the right edge would be cut.
    ticks = [(round(i * slot + gap / 2, 2), _label(start, unit))
             for i, start in enumerate(starts)
             if i % every == 0 and (i == 0 or i * slot <= WIDTH - TICK_ROOM)]
    return Chart(unit=unit, bars=bars, peak=peak, ticks=ticks)
