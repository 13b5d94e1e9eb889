"""Entries (one per schedulable row) and the heap ordered by next fire time."""

from __future__ import annotations

import heapq
import itertools
from typing import Any

from .specs import Spec


class Entry:
    """What the scheduler needs of one PeriodicTask row; replaced, never edited, on change.

    `next_ts` is the UTC epoch second of the next slot to publish (None: nothing left).
    `last_run_ts` is the last slot published (ours) or the row's last_run_at (stock).
    """

    __slots__ = (
        "args", "argsrepr", "changed_ts", "dead", "expire_seconds", "expires_ts", "headers",
        "hseq", "id", "kwargs", "kwargsrepr", "last_run_ts", "name", "next_ts", "one_off",
        "options", "spec", "start_ts", "task", "total_run_count",
    )

    def __init__(
        self,
        *,
        id: int,
        name: str,
        task: str,
        spec: Spec,
        args: tuple | list,
        kwargs: dict[str, Any],
        options: tuple[tuple[str, Any], ...],
        headers: dict[str, Any],
        start_ts: float | None,
        expires_ts: float | None,
        expire_seconds: int | None,
        one_off: bool,
        last_run_ts: float | None,
        total_run_count: int,
        changed_ts: float,
    ) -> None:
        self.id = id
        self.name = name
        self.task = task
        self.spec = spec
        self.args = args
        self.kwargs = kwargs
        self.options = options  # (name, value) pairs: queue, exchange, routing_key, priority
        self.headers = headers
        self.start_ts = start_ts
        self.expires_ts = expires_ts
        self.expire_seconds = expire_seconds
        self.one_off = one_off
        self.last_run_ts = last_run_ts
        self.total_run_count = total_run_count
        self.changed_ts = changed_ts
        self.next_ts: float | None = None
        self.dead = False
        self.hseq: int | None = None  # seq of this entry's live heap item, if any
        self.argsrepr: str | None = None
        self.kwargsrepr: str | None = None

    def position(self, now: float, catchup_seconds: float) -> float | None:
        """The next slot to publish, given that slots older than the catch-up window are lost.

        Slots are published after max(last run, last change of the row): a slot before an
        edit (or before the row was enabled) belongs to the old definition.
        """
        if self.one_off and self.total_run_count > 0:
            return None
        base = max(self.last_run_ts or 0.0, self.changed_ts, now - catchup_seconds)
        if self.start_ts is not None and base < self.start_ts:
            base = self.start_ts - 1e-6  # a slot exactly at start_time counts
        nxt = self.spec.next_after(base)
        if nxt is not None and nxt <= now and self.spec.collapses_catchup:
            nxt = max(nxt, self.spec.latest_at_or_before(now))  # type: ignore[union-attr]
        return self._within_expiry(nxt)

    def advance(self, slot: float) -> float | None:
        """Record `slot` as published and return the following one."""
        self.last_run_ts = slot
        self.total_run_count += 1
        if self.one_off:
            return None
        return self._within_expiry(self.spec.next_after(slot))

    def _within_expiry(self, nxt: float | None) -> float | None:
        if nxt is not None and self.expires_ts is not None and nxt > self.expires_ts:
            return None
        return nxt

    def __repr__(self) -> str:
        return f"<Entry {self.id} {self.name} {self.task} {self.spec!r} next={self.next_ts}>"


class EntryHeap:
    """A heap of (next_ts, seq, entry) with lazy deletion.

    An entry has at most one live item: the one whose seq is `entry.hseq`. A changed or
    removed entry just forgets its seq, and the stale item is dropped when it surfaces, so a
    change costs O(log N) and never a rebuild; the heap is compacted when stale items
    outnumber live ones.
    """

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Entry]] = []
        self._seq = itertools.count()
        self.live = 0

    def rebuild(self, entries: list[Entry]) -> None:
        heap = []
        for entry in entries:
            entry.hseq = None
            if entry.next_ts is not None and not entry.dead:
                entry.hseq = next(self._seq)
                heap.append((entry.next_ts, entry.hseq, entry))
        heapq.heapify(heap)
        self._heap = heap
        self.live = len(heap)

    def push(self, entry: Entry) -> None:
        """(Re)schedule the entry at its next_ts; any earlier item of it goes stale."""
        self.discard(entry)
        if entry.next_ts is None or entry.dead:
            return
        entry.hseq = next(self._seq)
        heapq.heappush(self._heap, (entry.next_ts, entry.hseq, entry))
        self.live += 1
        if len(self._heap) > 2 * self.live + 1024:
            self._compact()

    def discard(self, entry: Entry) -> None:
        """Forget the entry's pending item (it stays in the list until it surfaces)."""
        if entry.hseq is not None:
            entry.hseq = None
            self.live -= 1

    @staticmethod
    def _fresh(item: tuple[float, int, Entry]) -> bool:
        return item[2].hseq == item[1]

    def _drop_stale_top(self) -> None:
        heap = self._heap
        while heap and not self._fresh(heap[0]):
            heapq.heappop(heap)

    def peek_ts(self) -> float | None:
        self._drop_stale_top()
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: float, limit: int | None = None) -> list[Entry]:
        """Pop every live entry with next_ts <= now: O(due · log N)."""
        due: list[Entry] = []
        heap = self._heap
        while heap and (limit is None or len(due) < limit):
            item = heap[0]
            if not self._fresh(item):
                heapq.heappop(heap)
                continue
            if item[0] > now:
                break
            heapq.heappop(heap)
            item[2].hseq = None
            self.live -= 1
            due.append(item[2])
        return due

    def _compact(self) -> None:
        self._heap = [item for item in self._heap if self._fresh(item)]
        heapq.heapify(self._heap)
        self.live = len(self._heap)

    def __len__(self) -> int:
        return self.live
