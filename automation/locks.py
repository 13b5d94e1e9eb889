"""A Redis lock per (job, community): one run at a time, released only by its owner."""

from __future__ import annotations

from redis import Redis

# Delete the key only if it still holds our token: an expired lock re-taken by another
# run must not be released by the first one.
_RELEASE_IF_OWNER = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('del', KEYS[1])
end
return 0
"""


def lock_key(job_name: str, community_id: int) -> str:
    return f"automation:lock:{job_name}:{community_id}"


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
            # A redelivered message of the same run: the lock is still ours.
            self.client.expire(self.key, self.ttl)
            self.held = True
        return self.held

    def owner(self) -> str | None:
        value = self.client.get(self.key)
        return value.decode() if value is not None else None

    def release(self) -> bool:
        released = bool(self.client.eval(_RELEASE_IF_OWNER, 1, self.key, self.token))
        self.held = False
        return released
