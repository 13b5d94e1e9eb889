"""The warehouse sink: partitioned JSON Lines in storages["warehouse"] (S3 or a local dir).

Each UTC hour of a community's events is one object at a deterministic key, so writing
an hour again replaces its object instead of adding a second copy:

    events/community=<slug>/date=YYYY-MM-DD/hour=HH/part-0000.jsonl

Partitions are UTC (a local hour repeats on a DST night; a UTC hour never does).
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import botocore.exceptions
import urllib3.exceptions
from django.core.files.base import ContentFile
from django.core.files.storage import Storage, storages

from automation.errors import PermanentJobError

SINK_ALIAS = "warehouse"

# Statuses and codes S3-compatible stores use for "try again later".
_TRANSIENT_CODES = {"SlowDown", "RequestTimeout", "RequestTimeTooSkewed", "Throttling",
                    "ThrottlingException", "ServiceUnavailable", "InternalError"}


def sink() -> Storage:
    return storages[SINK_ALIAS]


def partition_key(community_slug: str, hour: datetime) -> str:
    return (f"events/community={community_slug}/date={hour:%Y-%m-%d}/hour={hour:%H}/"
            "part-0000.jsonl")


def event_line(event: dict[str, Any], community_slug: str) -> bytes:
    """One event as a compact, key-sorted JSON line (identical input → identical bytes)."""
    record = {
        "event_id": event["id"],
        "community_id": event["community_id"],
        "community": community_slug,
        "member_id": event["member_id"],
        "type": event["type"],
        "occurred_at": event["occurred_at"].isoformat(),
        "recorded_at": event["recorded_at"].isoformat(),
        "payload": event["payload"],
    }
    return json.dumps(record, sort_keys=True, separators=(",", ":"), default=str).encode() + b"\n"


def write_partition(storage: Storage, key: str, lines: Iterable[bytes]) -> int:
    """Replace the object at `key` with these lines (none: remove it); returns lines written."""
    body = b"".join(lines)
    if not body:
        # An hour without events has no object; one left from an earlier replay goes.
        storage.delete(key)
        return 0
    saved = storage.save(key, ContentFile(body))
    if saved != key:
        # The backend renamed instead of overwriting: replays would pile up copies.
        storage.delete(saved)
        raise PermanentJobError(
            f"the {SINK_ALIAS} storage wrote {saved!r} instead of overwriting {key!r}; "
            "configure it to overwrite (file_overwrite / allow_overwrite)")
    return body.count(b"\n")


def count_rows(storage: Storage, key: str) -> int:
    """Rows actually in the sink at `key` (0 when the object is absent)."""
    try:
        with storage.open(key, "rb") as handle:
            body = handle.read()
    except FileNotFoundError:
        return 0
    except botocore.exceptions.ClientError as exc:
        if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
            return 0
        raise
    return sum(1 for line in body.splitlines() if line.strip())


def is_transient(exc: BaseException) -> bool:
    """Errors of an unreachable or overloaded store, worth retrying the whole run for."""
    if isinstance(exc, botocore.exceptions.ClientError):
        meta = exc.response.get("ResponseMetadata", {})
        code = exc.response.get("Error", {}).get("Code", "")
        status = meta.get("HTTPStatusCode") or 0
        return status == 429 or status >= 500 or code in _TRANSIENT_CODES
    return isinstance(exc, (
        botocore.exceptions.ConnectionError,  # EndpointConnectionError, ConnectTimeoutError
        botocore.exceptions.HTTPClientError,  # ReadTimeoutError, ConnectionClosedError
        ConnectionError, TimeoutError, socket.timeout,
        urllib3.exceptions.TimeoutError, urllib3.exceptions.ProtocolError,
        urllib3.exceptions.NewConnectionError,
    ))
