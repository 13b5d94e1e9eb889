"""The per-(job, community) Redis lock."""

from automation.connections import get_redis
from automation.locks import RunLock


def test_only_one_holder_and_only_the_owner_releases() -> None:
    first = RunLock(get_redis(), "digest", 1, ttl=30, token="run:1")
    second = RunLock(get_redis(), "digest", 1, ttl=30, token="run:2")
    assert first.acquire()
    assert not second.acquire()
    assert not second.release()  # not the owner: the lock stays
    assert first.owner() == "run:1"
    assert first.release()
    assert second.acquire()


def test_lock_is_per_community_and_expires() -> None:
    one = RunLock(get_redis(), "digest", 1, ttl=30, token="run:1")
    two = RunLock(get_redis(), "digest", 2, ttl=30, token="run:2")
    assert one.acquire() and two.acquire()
    assert 0 < get_redis().ttl(one.key) <= 30


def test_same_run_can_retake_its_own_lock() -> None:
    """A redelivered message of the same run is not blocked by its own lock."""
    assert RunLock(get_redis(), "digest", 1, ttl=30, token="run:7").acquire()
    assert RunLock(get_redis(), "digest", 1, ttl=30, token="run:7").acquire()
