"""The run lease: an attempt's lock, renewed while it lives, freed when its process dies."""

from __future__ import annotations

import subprocess
import time

from automation.connections import get_redis
from automation.lease import Acquired, RunLease
from automation.locks import attempt_token, is_held_by_run, parse_holder, release_run


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_tokens_name_the_run_host_and_process() -> None:
    """The reaper and a second delivery read whose attempt holds a lock from its token."""
    holder = parse_holder(attempt_token(42))
    assert holder is not None and holder.run_id == 42 and holder.pid is not None
    assert not holder.is_dead_here()  # this very process
    assert is_held_by_run(attempt_token(42).encode(), 42)
    assert not is_held_by_run(attempt_token(421), 42)
    assert parse_holder("something-else").run_id is None


def test_a_lease_outlives_its_ttl_while_kept_alive_and_expires_after() -> None:
    """Renewed every third of its TTL, the lock stays while the attempt runs; a dead
    attempt (no renewals) loses it within one TTL."""
    lease = RunLease(get_redis(), "digest", 1, 7, ttl=1)
    assert lease.acquire() is Acquired.ACQUIRED
    with lease.kept_alive():
        time.sleep(2.5)
        assert is_held_by_run(lease.owner(), 7)
    time.sleep(1.2)
    assert lease.owner() is None


def test_a_second_attempt_of_the_same_run_waits_then_gives_up_to_a_live_one() -> None:
    first = RunLease(get_redis(), "digest", 1, 7, ttl=5)
    assert first.acquire() is Acquired.ACQUIRED
    second = RunLease(get_redis(), "digest", 1, 7, ttl=5)
    started = time.monotonic()
    assert second.acquire(wait_for_same_run=0.6) is Acquired.SAME_RUN
    assert time.monotonic() - started >= 0.5
    assert RunLease(get_redis(), "digest", 1, 8, ttl=5).acquire() is Acquired.OTHER_RUN
    first.release()
    assert second.acquire() is Acquired.ACQUIRED


def test_a_lock_of_a_dead_process_on_this_host_is_freed_at_once() -> None:
    """A pool process killed under its job cannot release its lock; the redelivery on the
    same host sees the pid is gone and takes over without waiting for the TTL."""
    holder = parse_holder(attempt_token(9))
    dead = f"run:9:{holder.host}:{_dead_pid()}:deadbeef"
    get_redis().set("automation:lock:digest:1", dead, ex=30)
    lease = RunLease(get_redis(), "digest", 1, 9, ttl=30)
    assert lease.acquire() is Acquired.ACQUIRED  # no wait given, none needed


def test_release_run_frees_any_attempt_of_that_run_only() -> None:
    get_redis().set("automation:lock:digest:1", attempt_token(5), ex=30)
    assert not release_run(get_redis(), "digest", 1, 55)
    assert release_run(get_redis(), "digest", 1, 5)
    assert get_redis().get("automation:lock:digest:1") is None
