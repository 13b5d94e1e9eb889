"""Retention archiving: which rows are past retention, how they are written, checked, pruned.

Objects go to the "archive" storage (django.core.files.storage.storages): a local directory
by default, S3 through django-storages/boto3 when configured. Each batch is one gzip JSON
Lines object; each run ends with a manifest JSON listing the objects with their checksums.
The job that drives these steps is communities/jobs/data_cleanup_archiver.py.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import botocore.exceptions
from django.core.files.base import ContentFile
from django.core.files.storage import Storage, storages
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.db.models import CharField, Q, QuerySet, Value
from django.db.models.functions import Cast, Coalesce, Concat

from automation.errors import PermanentJobError, RetryableJobError

from .models import (
    ArchiveBatch,
    ArchiveRun,
    Comment,
    Community,
    Member,
    Post,
    default_notification_preferences,
)
from .signals import members_anonymized

STORAGE_ALIAS = "archive"
MANIFEST_FORMAT = "community-archive/1"
# Comments first: deleting a post cascades to its comments, so they are archived before.
KIND_ORDER = (ArchiveBatch.Kind.COMMENTS, ArchiveBatch.Kind.POSTS, ArchiveBatch.Kind.MEMBERS)
FORMER_MEMBER_NAME = "Former member"
# RFC 2606 reserves .invalid: the placeholder address can never receive mail.
PLACEHOLDER_EMAIL_DOMAIN = "anonymized.invalid"
TRANSIENT_S3_CODES = frozenset({"SlowDown", "RequestTimeout", "RequestTimeTooSkewed",
                                "InternalError", "ServiceUnavailable", "Throttling"})


# --- What is past retention -------------------------------------------------------------


def cutoffs(community: Community, now: datetime) -> tuple[datetime, datetime]:
    """(member cutoff, content cutoff): older than these is past retention at `now`."""
    return (now - timedelta(days=community.member_retention_days),
            now - timedelta(days=community.content_retention_days))


def eligible(kind: str, run: ArchiveRun) -> QuerySet:
    """Rows of `kind` past retention for the run, whether or not already in a batch."""
    community = run.community
    if kind == ArchiveBatch.Kind.MEMBERS:
        # Never active: joined_at counts. Admins keep their data (someone must run the
        # community); anonymised members are done.
        return (Member.objects.filter(community=community, anonymized_at__isnull=True)
                .exclude(role=Member.Role.ADMIN)
                .alias(last_seen=Coalesce("last_active_at", "joined_at"))
                .filter(last_seen__lt=run.member_cutoff))
    if kind == ArchiveBatch.Kind.POSTS:
        return Post.objects.filter(community=community, deleted_at__lt=run.content_cutoff)
    if kind == ArchiveBatch.Kind.COMMENTS:
        # A comment goes with its post: pruning the post would delete it unarchived.
        return Comment.objects.filter(community=community).filter(
            Q(deleted_at__lt=run.content_cutoff) | Q(post__deleted_at__lt=run.content_cutoff))
    raise ValueError(f"unknown archive kind {kind!r}")


def serialize(kind: str, obj: Any) -> dict:
    if kind == ArchiveBatch.Kind.MEMBERS:
        return {"id": obj.pk, "community_id": obj.community_id, "email": obj.email,
                "display_name": obj.display_name, "role": obj.role,
                "joined_at": obj.joined_at, "last_active_at": obj.last_active_at,
                "notification_preferences": obj.notification_preferences,
                "is_active": obj.is_active}
    if kind == ArchiveBatch.Kind.POSTS:
        return {"id": obj.pk, "community_id": obj.community_id, "author_id": obj.author_id,
                "title": obj.title, "body": obj.body, "reaction_count": obj.reaction_count,
                "comment_count": obj.comment_count, "created_at": obj.created_at,
                "deleted_at": obj.deleted_at}
    return {"id": obj.pk, "community_id": obj.community_id, "post_id": obj.post_id,
            "author_id": obj.author_id, "body": obj.body, "created_at": obj.created_at,
            "deleted_at": obj.deleted_at}


# --- Encoding ----------------------------------------------------------------------------


def encode_rows(rows: Iterable[dict]) -> bytes:
    """gzip JSON Lines; mtime 0 so the same rows always give the same bytes (and sha256)."""
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as gz:
        for row in rows:
            line = json.dumps(row, cls=DjangoJSONEncoder, sort_keys=True, ensure_ascii=False)
            gz.write(line.encode() + b"\n")
    return buffer.getvalue()


def decode_rows(data: bytes) -> list[dict]:
    return [json.loads(line) for line in gzip.decompress(data).splitlines() if line.strip()]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- Storage -------------------------------------------------------------------------------


def _storage_failure(exc: Exception, action: str, key: str) -> Exception:
    """Classify a storage error: transient ones retry the run, the rest fail it clearly."""
    message = f"archive storage failed to {action} {key}: {type(exc).__name__}: {exc}"
    if isinstance(exc, botocore.exceptions.ConnectionError | botocore.exceptions.HTTPClientError
                  | ConnectionError | TimeoutError):
        return RetryableJobError(message)
    if isinstance(exc, botocore.exceptions.ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        code = exc.response.get("Error", {}).get("Code", "")
        if status >= 500 or status == 429 or code in TRANSIENT_S3_CODES:
            return RetryableJobError(message)
    return PermanentJobError(message)


class ArchiveStore:
    """The archive storage, with every backend error turned into a job error."""

    def __init__(self, storage: Storage | None = None) -> None:
        self.storage = storage or storages[STORAGE_ALIAS]

    def write(self, key: str, data: bytes) -> str:
        """Store `data` at `key` (replacing what is there); returns the stored name."""
        try:
            if self.storage.exists(key):
                self.storage.delete(key)
            name = self.storage.save(key, ContentFile(data))
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError,
                OSError) as exc:
            raise _storage_failure(exc, "write", key) from exc
        if name != key:  # a backend that renames instead of overwriting
            raise PermanentJobError(f"archive storage stored {key} as {name}; configure it "
                                    "to overwrite (allow_overwrite / file_overwrite)")
        return name

    def delete(self, key: str) -> None:
        try:
            self.storage.delete(key)
        except FileNotFoundError:
            pass
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError,
                OSError) as exc:
            raise _storage_failure(exc, "delete", key) from exc

    def read(self, key: str) -> bytes | None:
        """The object's bytes, or None when it does not exist."""
        try:
            if not self.storage.exists(key):
                return None
            with self.storage.open(key, "rb") as handle:
                return handle.read()
        except FileNotFoundError:
            return None
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError,
                OSError) as exc:
            raise _storage_failure(exc, "read", key) from exc


# --- Runs and batches ------------------------------------------------------------------------


def run_key(slot: datetime) -> str:
    return slot.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def start_run(community: Community, now: datetime) -> tuple[ArchiveRun, bool]:
    """The run of `community` for slot `now`, created with its cutoffs if new."""
    member_cutoff, content_cutoff = cutoffs(community, now)
    key = run_key(now)
    local_date = now.astimezone(community.tzinfo).date().isoformat()
    return ArchiveRun.objects.get_or_create(
        community=community, slot=now,
        defaults={"run_key": key, "prefix": f"archives/{community.slug}/{local_date}/{key}",
                  "member_cutoff": member_cutoff, "content_cutoff": content_cutoff},
    )


def _rows(kind: str, objects: Iterable[Any]) -> list[dict]:
    return [serialize(kind, obj) for obj in objects]


def _fill(batch: ArchiveBatch, rows: list[dict], data: bytes) -> None:
    ids = [row["id"] for row in rows]
    batch.ids = ids
    batch.min_id = min(ids) if ids else None
    batch.max_id = max(ids) if ids else None
    batch.row_count = len(rows)
    batch.bytes = len(data)
    batch.sha256 = sha256(data)


def plan_batch(run: ArchiveRun, kind: str, limit: int) -> tuple[ArchiveBatch, bytes] | None:
    """Choose the next rows of `kind` not yet in a batch of this run and record the batch.

    The batch row (ids, checksum) is saved before the object is written, so a crash after
    the write leaves a record that the next attempt checks instead of archiving the rows
    a second time.
    """
    taken: set[int] = set()
    for ids in run.batches.filter(kind=kind).values_list("ids", flat=True):
        taken.update(ids)
    objects = list(eligible(kind, run).exclude(pk__in=taken).order_by("pk")[:limit])
    if not objects:
        return None
    rows = _rows(kind, objects)
    data = encode_rows(rows)
    seq = run.batches.filter(kind=kind).count() + 1
    batch = ArchiveBatch(run=run, kind=kind, seq=seq,
                         key=f"{run.prefix}/{kind}-{seq:05d}.jsonl.gz")
    _fill(batch, rows, data)
    batch.save()
    return batch, data


def write_batch(store: ArchiveStore, batch: ArchiveBatch, data: bytes) -> None:
    store.write(batch.key, data)
    batch.state = ArchiveBatch.State.WRITTEN
    batch.writes += 1
    batch.save(update_fields=["state", "writes", "updated_at"])


def check_batch(store: ArchiveStore, batch: ArchiveBatch) -> str | None:
    """Read the object back: None when it matches the batch, else what is wrong."""
    data = store.read(batch.key)
    if data is None:
        return "object missing"
    if len(data) != batch.bytes or sha256(data) != batch.sha256:
        return f"checksum mismatch ({len(data)} bytes, sha256 {sha256(data)[:12]}…)"
    try:
        rows = decode_rows(data)
    except (OSError, EOFError, ValueError) as exc:
        return f"unreadable: {exc}"
    if len(rows) != batch.row_count or [row["id"] for row in rows] != batch.ids:
        return f"row mismatch ({len(rows)} rows, expected {batch.row_count})"
    return None


def verify_batch(store: ArchiveStore, batch: ArchiveBatch) -> str | None:
    problem = check_batch(store, batch)
    if problem is None and batch.state != ArchiveBatch.State.VERIFIED:
        batch.state = ArchiveBatch.State.VERIFIED
        batch.save(update_fields=["state", "updated_at"])
    return problem


def rewrite_batch(store: ArchiveStore, batch: ArchiveBatch) -> None:
    """Write the object again from the rows, which are still there (never pruned unverified).

    Rows that are no longer past retention (restored post, member active again) drop out.
    """
    objects = eligible(batch.kind, batch.run).filter(pk__in=batch.ids).order_by("pk")
    rows = _rows(batch.kind, objects)
    data = encode_rows(rows)
    _fill(batch, rows, data)
    batch.state = ArchiveBatch.State.PLANNED
    batch.save()
    if rows:
        write_batch(store, batch, data)


def prune_batch(batch: ArchiveBatch, now: datetime) -> int:
    """Anonymise or delete the rows of a verified batch; returns how many."""
    if batch.state != ArchiveBatch.State.VERIFIED:
        raise ValueError(f"batch {batch.pk} is {batch.state}, not verified")
    with transaction.atomic():
        # Still past retention: a row that came back since the archive was taken stays.
        rows = eligible(batch.kind, batch.run).filter(pk__in=batch.ids)
        if batch.kind == ArchiveBatch.Kind.MEMBERS:
            member_ids = list(rows.values_list("pk", flat=True))
            count = Member.objects.filter(pk__in=member_ids).update(
                email=Concat(Value("former-member-"), Cast("pk", CharField()),
                             Value(f"@{PLACEHOLDER_EMAIL_DOMAIN}")),
                display_name=FORMER_MEMBER_NAME,
                # Explicitly off: an absent key would fall back to the opt-in defaults.
                notification_preferences={k: False for k in default_notification_preferences()},
                anonymized_at=now,
                is_active=False,
            )
            members_anonymized.send(sender=Member, community=batch.run.community,
                                    member_ids=member_ids)
        elif batch.kind == ArchiveBatch.Kind.POSTS:
            # A comment written on a deleted post after its comments were archived would go
            # with the post unarchived: such posts wait for the next run instead.
            _, deleted = rows.filter(comments__isnull=True).delete()
            count = deleted.get(Post._meta.label, 0)
        else:
            _, deleted = rows.delete()
            count = deleted.get(Comment._meta.label, 0)
        batch.state = ArchiveBatch.State.PRUNED
        batch.pruned_count = count
        batch.save(update_fields=["state", "pruned_count", "updated_at"])
    return count


def manifest(run: ArchiveRun, batches: list[ArchiveBatch], now: datetime) -> dict:
    kinds = {kind.value: {"rows": 0, "objects": 0, "bytes": 0} for kind in KIND_ORDER}
    objects = []
    for batch in batches:
        kinds[batch.kind]["rows"] += batch.row_count
        kinds[batch.kind]["objects"] += 1
        kinds[batch.kind]["bytes"] += batch.bytes
        objects.append({"key": batch.key, "kind": batch.kind, "seq": batch.seq,
                        "rows": batch.row_count, "bytes": batch.bytes,
                        "sha256": batch.sha256, "min_id": batch.min_id,
                        "max_id": batch.max_id, "pruned": batch.pruned_count})
    community = run.community
    return {
        "format": MANIFEST_FORMAT,
        "community": {"id": community.pk, "slug": community.slug, "name": community.name},
        "run_key": run.run_key,
        "slot": run.slot.isoformat(),
        "written_for": now.isoformat(),
        "member_cutoff": run.member_cutoff.isoformat(),
        "content_cutoff": run.content_cutoff.isoformat(),
        "kinds": kinds,
        "objects": objects,
        "totals": {"rows": sum(b.row_count for b in batches), "objects": len(batches),
                   "bytes": sum(b.bytes for b in batches)},
        "remaining": run.remaining,
    }


def write_manifest(store: ArchiveStore, run: ArchiveRun, now: datetime) -> int:
    """Write and read back the run's manifest; returns its size in bytes (0: no objects)."""
    batches = [b for b in run.batches.order_by("kind", "seq") if b.row_count]
    if not batches:
        return 0
    data = json.dumps(manifest(run, batches, now), indent=2, sort_keys=True).encode()
    key = f"{run.prefix}/manifest.json"
    store.write(key, data)
    if store.read(key) != data:
        raise RetryableJobError(f"archive manifest {key} did not read back as written")
    run.manifest_key, run.manifest_sha256 = key, sha256(data)
    return len(data)
