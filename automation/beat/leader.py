"""One leader among beat instances: a Redis lease with a fencing token.

- Acquire: `SET lease NX PX ttl` and `INCR fence` in one script; the lease value is
  `<instance>:<fence>`, so the token names both the holder and its term.
- Renew (every tick): compare-and-PEXPIRE; a holder that lost the key learns it here.
- Publish (see publish.py): the publish script re-checks lease value and fence inside the
  same atomic step that LPUSHes, so a leader that stalled past its lease (GC pause, network
  partition) and was replaced cannot publish once the new leader has incremented the fence.
- Release on clean shutdown: compare-and-DEL, so a standby takes over at its next tick
  instead of waiting for expiry.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid

import redis

logger = logging.getLogger(__name__)

ACQUIRE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local fence = redis.call('INCR', KEYS[2])
local token = ARGV[1] .. ':' .. fence
redis.call('SET', KEYS[1], token, 'PX', ARGV[2])
return {fence, token}
"""

RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def default_instance_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Lease:
    """The leader lease of one scheduler instance."""

    def __init__(self, client: redis.Redis, key_prefix: str, ttl_seconds: float,
                 instance_id: str | None = None) -> None:
        self.client = client
        self.lease_key = f"{key_prefix}:leader"
        self.fence_key = f"{key_prefix}:fence"
        self.ttl_ms = max(1, int(ttl_seconds * 1000))
        self.instance_id = instance_id or default_instance_id()
        self.token: str | None = None
        self.fence: int | None = None
        self._acquire = client.register_script(ACQUIRE)
        self._renew = client.register_script(RENEW)
        self._release = client.register_script(RELEASE)

    @property
    def held(self) -> bool:
        return self.token is not None

    def keep(self) -> bool:
        """Renew the lease if held, else try to take it; True while we are the leader."""
        try:
            if self.token is not None:
                if self._renew(keys=[self.lease_key], args=[self.token, self.ttl_ms]):
                    return True
                logger.warning("beat: lost the leader lease %s (fence %s)", self.token,
                               self.fence)
                self.token = self.fence = None
            result = self._acquire(keys=[self.lease_key, self.fence_key],
                                   args=[self.instance_id, self.ttl_ms])
        except redis.RedisError:
            # Without Redis nobody can prove leadership: stop publishing until it is back.
            logger.exception("beat: Redis unavailable for the leader lease")
            self.token = self.fence = None
            return False
        if not result:
            return False
        fence, token = result
        self.fence = int(fence)
        self.token = token.decode() if isinstance(token, bytes) else str(token)
        logger.info("beat: %s is the leader (fence %s)", self.instance_id, self.fence)
        return True

    def lost(self) -> None:
        """The publish script refused us: another instance holds the lease now."""
        logger.warning("beat: fenced out (fence %s); stepping down", self.fence)
        self.token = self.fence = None

    def release(self) -> None:
        if self.token is None:
            return
        try:
            self._release(keys=[self.lease_key], args=[self.token])
        except redis.RedisError:
            logger.warning("beat: could not release the lease; it expires by itself")
        self.token = self.fence = None

    def holder(self) -> str | None:
        value = self.client.get(self.lease_key)
        return value.decode() if value else None
