"""An attempt's lease on its run lock: a short TTL, renewed by a heartbeat while it runs.

A live attempt renews its lock every `ttl / 3` seconds, so the lock of an attempt whose
process died (pool process killed, worker lost with its host) expires within `ttl` seconds:
the reaper then sees a `running` run that no lock names and resumes it, and a redelivered
message of the same run takes over. The lock alone says whether an attempt is alive; the
run record is not written on every heartbeat.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from redis import Redis, RedisError

from .locks import RunLock, attempt_token, parse_holder, release_token

logger = logging.getLogger(__name__)


class Acquired(enum.Enum):
    ACQUIRED = "acquired"
    OTHER_RUN = "other_run"  # another run of this job and community is running
    SAME_RUN = "same_run"  # another live attempt of this very run holds it


class RunLease:
    def __init__(self, client: Redis, job_name: str, community_id: int, run_id: int, *,
                 ttl: int, sleep: Callable[[float], None] = time.sleep) -> None:
        self.run_id = run_id
        self.lock = RunLock(client, job_name, community_id, ttl=ttl, token=attempt_token(run_id))
        self._sleep = sleep

    @property
    def held(self) -> bool:
        return self.lock.held

    def owner(self) -> str | None:
        return self.lock.owner()

    def acquire(self, *, wait_for_same_run: float = 0.0) -> Acquired:
        """Take the lock, freeing it first from a holder known to be dead.

        Another attempt of the same run may be alive (a duplicate delivery) or dead (its
        lease not yet expired): wait up to `wait_for_same_run` seconds for it to end or
        expire, since a dead holder's lock expires within one lease.
        """
        deadline = time.monotonic() + wait_for_same_run
        while True:
            if self.lock.acquire():
                return Acquired.ACQUIRED
            owner = self.lock.owner()
            if owner is None:
                continue  # released between our SET and GET: try again at once
            holder = parse_holder(owner)
            if holder is not None and holder.is_dead_here():
                # The process holding it is gone on this host; it can never release it.
                release_token(self.lock.client, self.lock.key, owner)
                logger.info("run %s: freed the lock of dead process %s", self.run_id, holder.pid)
                continue
            if holder is None or holder.run_id != self.run_id:
                return Acquired.OTHER_RUN
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return Acquired.SAME_RUN
            self._sleep(min(0.5, remaining))

    def release(self) -> bool:
        return self.lock.release()

    @contextmanager
    def kept_alive(self) -> Iterator[None]:
        """Renew the lease every third of its TTL until the block ends."""
        stop = threading.Event()
        interval = max(0.2, self.lock.ttl / 3)

        def heartbeat() -> None:
            while not stop.wait(interval):
                try:
                    if self.lock.renew():
                        continue
                    # Lost: Redis restarted without the key, or a stall outlived the TTL.
                    # Take it back if nobody else has; otherwise say so and carry on.
                    if self.lock.client.set(self.lock.key, self.lock.token, nx=True,
                                            ex=self.lock.ttl):
                        logger.warning("run %s: lease was lost and taken back", self.run_id)
                    else:
                        logger.warning("run %s: lease lost to %s", self.run_id,
                                       self.lock.owner())
                except RedisError as exc:
                    logger.warning("run %s: could not renew the lease: %s", self.run_id, exc)

        thread = threading.Thread(target=heartbeat, name=f"lease-run-{self.run_id}",
                                  daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=interval + 1)
