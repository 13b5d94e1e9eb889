"""Progress a running job reports (done/total), shown live on the dashboard.

Jobs stay plain functions: they call `report_progress(done, total)` and the execution path
decides which run it belongs to. Writes are throttled so a loop over 100k items does not
become 100k UPDATEs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

MIN_INTERVAL_SECONDS = 1.0


ProgressWriter = Callable[[int, int, int | None], None]  # (run id, done, total)
# Installed by automation.tasks (which owns the run record), so this module, which jobs
# import, depends on nothing of the platform.
_writer: ProgressWriter | None = None


def use_writer(writer: ProgressWriter) -> None:
    global _writer
    _writer = writer


@dataclass
class _Reporter:
    run_id: int
    last_write: float = 0.0


_current: ContextVar[_Reporter | None] = ContextVar("automation_progress", default=None)


@contextmanager
def reporting_progress(run_id: int) -> Iterator[None]:
    token = _current.set(_Reporter(run_id))
    try:
        yield
    finally:
        _current.reset(token)


def report_progress(done: int, total: int | None = None, *, force: bool = False) -> None:
    """Record how far the current run is; a no-op outside a run (direct calls, tests)."""
    reporter = _current.get()
    if reporter is None:
        return
    now = time.monotonic()
    if not force and now - reporter.last_write < MIN_INTERVAL_SECONDS and done != total:
        return
    reporter.last_write = now
    if _writer is not None:
        _writer(reporter.run_id, max(0, int(done)), None if total is None else max(0, int(total)))
