"""A Redis lock per (job, community): one attempt at a time, released only by its owner.

The lock's value names the attempt that holds it: `run:<run id>:<host>:<pid>:<nonce>`. The
run id lets the reaper and a second delivery of the same run see whose lock it is; host and
pid let a delivery on the same host see that the holder's process is gone (a pool process
killed under it) without waiting for the lock to expire; the nonce keeps two deliveries of
one run in one process apart. The lock is held as a lease (see automation/lease.py): a short
TTL that the attempt keeps renewing, so the lock of a dead attempt frees itself in seconds.
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass

from redis import Redis

# Delete or extend the key only if it still holds our token: an expired lock re-taken by
# another attempt must not be released or prolonged by the first one.
_RELEASE_IF_OWNER = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('del', KEYS[1])
end
return 0
"""
_RENEW_IF_OWNER = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE_IF_PREFIX = """
local value = redis.call('get', KEYS[1])
if value and string.sub(value, 1, string.len(ARGV[1])) == ARGV[1] then
    return redis.call('del', KEYS[1])
end
return 0
"""


def lock_key(job_name: str, community_id: int) -> str:
    return f"automation:lock:{job_name}:{community_id}"


def run_prefix(run_id: int) -> str:
    """The start every token of this run's attempts shares."""
    return f"run:{run_id}:"


def attempt_token(run_id: int) -> str:
    return f"{run_prefix(run_id)}{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class Holder:
    """Who holds a lock, read from its token."""

    run_id: int | None
    host: str = ""
    pid: int | None = None

    def is_dead_here(self) -> bool:
        """True only when the holder ran on this host and its process no longer exists."""
        if self.pid is None or self.host != socket.gethostname():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False


def parse_holder(token: str | None) -> Holder | None:
    if token is None:
        return None
    parts = token.split(":")
    if len(parts) < 2 or parts[0] != "run" or not parts[1].isdigit():
        return Holder(run_id=None)
    pid = int(parts[3]) if len(parts) > 3 and parts[3].isdigit() else None
    return Holder(run_id=int(parts[1]), host=parts[2] if len(parts) > 2 else "", pid=pid)


def is_held_by_run(token: bytes | str | None, run_id: int) -> bool:
    if isinstance(token, bytes):
        token = token.decode()
    return token is not None and token.startswith(run_prefix(run_id))


def release_token(client: Redis, key: str, token: str) -> bool:
    """Compare-and-delete: free `key` only if it still holds `token`."""
    return bool(client.eval(_RELEASE_IF_OWNER, 1, key, token))


def release_run(client: Redis, job_name: str, community_id: int, run_id: int) -> bool:
    """Free the lock if any attempt of this run holds it (its process is known dead)."""
    return bool(client.eval(_RELEASE_IF_PREFIX, 1, lock_key(job_name, community_id),
                            run_prefix(run_id)))


class RunLock:
    def __init__(self, client: Redis, job_name: str, community_id: int, *, ttl: int, token: str):
        self.client = client
        self.key = lock_key(job_name, community_id)
        self.ttl = ttl
        self.token = token
        self.held = False

    def acquire(self) -> bool:
        """Take the lock if free (or already ours); never waits."""
        if self.client.set(self.key, self.token, nx=True, ex=self.ttl):
            self.held = True
        elif self.owner() == self.token:
            self.client.expire(self.key, self.ttl)
            self.held = True
        return self.held

    def owner(self) -> str | None:
        value = self.client.get(self.key)
        return value.decode() if value is not None else None

    def renew(self) -> bool:
        """Extend the TTL if the lock is still ours; False when it was lost meanwhile."""
        return bool(self.client.eval(_RENEW_IF_OWNER, 1, self.key, self.token,
                                     int(self.ttl * 1000)))

    def release(self) -> bool:
        released = release_token(self.client, self.key, self.token)
        self.held = False
        return released
