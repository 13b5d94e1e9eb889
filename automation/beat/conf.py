"""Scheduler settings: Django settings named AUTOMATION_BEAT_*, overridable per instance."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

from django.conf import settings


@dataclass(frozen=True)
class BeatConfig:
    #: Slots missed while no leader ran (failover, restart) are published if they are at most
    #: this old; older ones are skipped.
    catchup_seconds: float = 3600.0
    #: How often the change marker is polled: a change is in effect within about this long.
    sync_seconds: float = 0.5
    #: Rows are re-read when date_changed >= (newest date_changed seen - overlap), so a row
    #: whose transaction committed a little after a later one is still picked up.
    change_overlap_seconds: float = 60.0
    #: A narrow (id, date_changed) scan of all rows that catches what the marker cannot see
    #: (transactions longer than the overlap, deletes that bypassed signals); 0 disables it.
    reconcile_seconds: float = 300.0
    #: Leader lease: another instance takes over this long after the leader stopped renewing.
    lease_seconds: float = 15.0
    #: Messages per publish script call (one Redis round trip each).
    batch_size: int = 500
    #: Prefix of the lease, fence and dedup keys in the broker's Redis.
    key_prefix: str = "automation:beat"
    #: Dedup sets live this long; must exceed the catch-up window (enforced below).
    dedup_ttl_seconds: float = 0.0
    #: Messages of entries due within this many seconds are built ahead, so that at the due
    #: moment only the publish script calls remain; 0 disables it.
    prepare_seconds: float = 3.0
    #: Longest sleep between ticks.
    max_interval: float = 5.0

    @property
    def dedup_ttl(self) -> int:
        # A slot can be re-derived for up to catchup_seconds after it was due, so its dedup
        # entry must outlive that, with margin for clock skew between instances.
        floor = self.catchup_seconds + 3600
        return int(max(self.dedup_ttl_seconds, floor))


_SETTING_NAMES = {
    "catchup_seconds": "AUTOMATION_BEAT_CATCHUP_SECONDS",
    "sync_seconds": "AUTOMATION_BEAT_SYNC_SECONDS",
    "change_overlap_seconds": "AUTOMATION_BEAT_CHANGE_OVERLAP_SECONDS",
    "reconcile_seconds": "AUTOMATION_BEAT_RECONCILE_SECONDS",
    "lease_seconds": "AUTOMATION_BEAT_LEASE_SECONDS",
    "batch_size": "AUTOMATION_BEAT_BATCH_SIZE",
    "key_prefix": "AUTOMATION_BEAT_KEY_PREFIX",
    "dedup_ttl_seconds": "AUTOMATION_BEAT_DEDUP_TTL_SECONDS",
    "prepare_seconds": "AUTOMATION_BEAT_PREPARE_SECONDS",
    "max_interval": "AUTOMATION_BEAT_MAX_INTERVAL",
}


def load_config(**overrides: Any) -> BeatConfig:
    """Defaults, then Django settings, then explicit overrides (tests, benchmarks)."""
    values: dict[str, Any] = {}
    for f in fields(BeatConfig):
        name = _SETTING_NAMES[f.name]
        if hasattr(settings, name):
            values[f.name] = type(f.default)(getattr(settings, name))
    config = replace(BeatConfig(), **values)
    return replace(config, **{k: v for k, v in overrides.items() if v is not None})
