"""data_cleanup_archiver against a local S3 server (moto) through boto3, and a local dir."""

from __future__ import annotations

import gzip
import hashlib
import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from django.core.files.storage import storages

from automation.errors import InvalidJobParams
from automation.models import JobRun
from automation.runs import run_inline
from communities import demo_archive
from communities.archiving import (
    ArchiveStore,
    plan_batch,
    start_run,
    verify_batch,
    write_batch,
)
from communities.jobs.data_cleanup_archiver import data_cleanup_archiver
from communities.models import ArchiveBatch, ArchiveRun, Comment, Community, Member, Post
from tests.servers import closed_port_url

# Sunday 03:30 in New York (EDT): the job's default slot.
NOW = datetime(2026, 7, 5, 7, 30, tzinfo=UTC)
PREFIX = "archives/acme/2026-07-05/20260705T073000Z"


def days(n: float) -> datetime:
    return NOW - timedelta(days=n)


def member(community: Community, handle: str, *, joined: float, active: float | None,
           **extra) -> Member:
    return Member.objects.create(
        community=community, email=f"{handle}@{community.slug}.example",
        display_name=handle.title(), joined_at=days(joined),
        last_active_at=days(active) if active is not None else None,
        notification_preferences={"digest_email": True, "digest_push": True}, **extra)


@pytest.fixture
def data(community: Community, other_community: Community) -> dict:
    """Default retention: members 730 days, content 30 days."""
    d = {
        "old1": member(community, "old1", joined=1500, active=800),
        "old2": member(community, "old2", joined=1200, active=1000),
        "never": member(community, "never", joined=740, active=None),
        "admin": member(community, "admin", joined=2000, active=900, role=Member.Role.ADMIN),
        "anonymised": member(community, "anon", joined=2000, active=1500,
                             anonymized_at=days(300)),
        "recent": member(community, "recent", joined=1500, active=10),
        "new_never": member(community, "newnever", joined=100, active=None),
        "other_old": member(other_community, "otherold", joined=2000, active=1000),
    }
    old_post = Post.objects.create(community=community, title="old", created_at=days(60),
                                   deleted_at=days(40), author=d["old1"])
    d["old_post"] = old_post
    d["old_post_comments"] = [
        Comment.objects.create(community=community, post=old_post, body=f"on old {n}",
                               created_at=days(50)) for n in range(2)]
    d["recent_deleted_post"] = Post.objects.create(community=community, title="recent",
                                                   created_at=days(20), deleted_at=days(5))
    d["recent_deleted_post_comment"] = Comment.objects.create(
        community=community, post=d["recent_deleted_post"], body="on recent", created_at=days(9))
    visible = Post.objects.create(community=community, title="visible", created_at=days(90))
    d["visible"] = visible
    d["old_deleted_comment"] = Comment.objects.create(
        community=community, post=visible, body="gone long ago", created_at=days(80),
        deleted_at=days(35))
    d["recent_deleted_comment"] = Comment.objects.create(
        community=community, post=visible, body="gone lately", created_at=days(8),
        deleted_at=days(2))
    d["visible_comment"] = Comment.objects.create(community=community, post=visible, body="hi")
    d["other_post"] = Post.objects.create(community=other_community, title="other old",
                                          deleted_at=days(400))
    return d


def s3_client():
    return boto3.client("s3", endpoint_url=storages["archive"].endpoint_url,
                        region_name="us-east-1")


def bucket_objects(bucket: str) -> dict[str, bytes]:
    client = s3_client()
    listing = client.list_objects_v2(Bucket=bucket).get("Contents", [])
    return {o["Key"]: client.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
            for o in listing}


def lines(data: bytes) -> list[dict]:
    return [json.loads(line) for line in gzip.decompress(data).splitlines()]


def versions(bucket: str, key: str) -> tuple[int, int]:
    """(object versions, delete markers) of a key in a versioned bucket."""
    answer = s3_client().list_object_versions(Bucket=bucket, Prefix=key)
    return len(answer.get("Versions", [])), len(answer.get("DeleteMarkers", []))


@pytest.fixture
def bucket(s3_storages) -> str:
    name = s3_storages["archive"]
    s3_client().put_bucket_versioning(Bucket=name,
                                      VersioningConfiguration={"Status": "Enabled"})
    return name


def assert_untouched(d: dict) -> None:
    for name in ("admin", "recent", "new_never", "other_old"):
        m = Member.objects.get(pk=d[name].pk)
        assert m.anonymized_at is None and m.email == d[name].email and m.is_active
    for name in ("recent_deleted_post", "visible", "other_post"):
        assert Post.objects.filter(pk=d[name].pk).exists()
    for name in ("recent_deleted_post_comment", "recent_deleted_comment", "visible_comment"):
        assert Comment.objects.filter(pk=d[name].pk).exists()


def test_archives_to_s3_verifies_then_prunes(community, data, bucket) -> None:
    summary = data_cleanup_archiver(community, NOW, batch_size=2)

    assert {k: summary[k] for k in ("members_archived", "posts_archived", "comments_archived",
                                    "objects", "already_done", "rewritten_objects")} == {
        "members_archived": 3, "posts_archived": 1, "comments_archived": 3, "objects": 6,
        "already_done": 0, "rewritten_objects": 0}
    objects = bucket_objects(bucket)
    assert sorted(objects) == [f"{PREFIX}/{name}" for name in (
        "comments-00001.jsonl.gz", "comments-00002.jsonl.gz", "manifest.json",
        "members-00001.jsonl.gz", "members-00002.jsonl.gz", "posts-00001.jsonl.gz")]
    assert summary["bytes"] == sum(len(body) for body in objects.values())
    head = s3_client().head_object(Bucket=bucket, Key=f"{PREFIX}/members-00001.jsonl.gz")
    # A gzip file, not gzip-encoded JSON: downloads must not be unpacked on the way.
    assert head["ContentType"] == "application/gzip" and "ContentEncoding" not in head

    members = [row for key, body in objects.items() if "/members-" in key
               for row in lines(body)]
    assert sorted(r["email"] for r in members) == [
        "never@acme.example", "old1@acme.example", "old2@acme.example"]
    assert {r["id"] for r in members} == {data[n].pk for n in ("old1", "old2", "never")}
    comments = [r for key, body in objects.items() if "/comments-" in key
                for r in lines(body)]
    assert {r["id"] for r in comments} == {
        c.pk for c in [*data["old_post_comments"], data["old_deleted_comment"]]}
    [post] = lines(objects[f"{PREFIX}/posts-00001.jsonl.gz"])
    assert (post["id"], post["title"], post["deleted_at"]) == (
        data["old_post"].pk, "old", days(40).isoformat().replace("+00:00", "Z"))

    manifest = json.loads(objects[f"{PREFIX}/manifest.json"])
    assert manifest["community"]["slug"] == "acme"
    assert manifest["kinds"] == {
        "comments": {"rows": 3, "objects": 2, "bytes": sum(
            len(b) for k, b in objects.items() if "/comments-" in k)},
        "posts": {"rows": 1, "objects": 1, "bytes": len(objects[f"{PREFIX}/posts-00001.jsonl.gz"])},
        "members": {"rows": 3, "objects": 2, "bytes": sum(
            len(b) for k, b in objects.items() if "/members-" in k)},
    }
    for entry in manifest["objects"]:
        body = objects[entry["key"]]
        assert entry["sha256"] == hashlib.sha256(body).hexdigest()
        assert entry["bytes"] == len(body) and entry["rows"] == len(lines(body))
        ids = [r["id"] for r in lines(body)]
        assert (entry["min_id"], entry["max_id"]) == (min(ids), max(ids))
    assert manifest["totals"]["rows"] == 7

    for name in ("old1", "old2", "never"):
        m = Member.objects.get(pk=data[name].pk)
        assert m.email == f"former-member-{m.pk}@anonymized.invalid"
        assert (m.display_name, m.anonymized_at, m.is_active) == ("Former member", NOW, False)
        assert not m.wants("digest_email") and not m.wants("digest_push")
    assert not Post.objects.filter(pk=data["old_post"].pk).exists()
    assert not Comment.objects.filter(
        pk__in=[c.pk for c in data["old_post_comments"]] + [data["old_deleted_comment"].pk]
    ).exists()
    assert_untouched(data)
    assert set(ArchiveBatch.objects.values_list("state", flat=True)) == {"pruned"}


def test_rerun_for_the_same_slot_does_nothing(community, data, bucket) -> None:
    data_cleanup_archiver(community, NOW, batch_size=2)
    before = bucket_objects(bucket)
    again = data_cleanup_archiver(community, NOW, batch_size=2)
    assert again["already_done"] == 1
    assert (again["members_archived"], again["objects"], again["bytes"]) == (0, 0, 0)
    assert bucket_objects(bucket) == before
    for key in before:
        assert versions(bucket, key) == (1, 0)
    # The next week's slot finds nothing new past retention: no objects at all.
    week = data_cleanup_archiver(community, NOW + timedelta(days=7))
    assert (week["objects"], week["members_archived"]) == (0, 0)
    assert bucket_objects(bucket) == before


def test_verified_but_unpruned_batch_is_pruned_without_writing_again(community, data,
                                                                     bucket) -> None:
    """A crash after verification: the rows are intact, and the resume only prunes."""
    run, _ = start_run(community, NOW)
    store = ArchiveStore()
    batch, body = plan_batch(run, ArchiveBatch.Kind.COMMENTS, 10)
    write_batch(store, batch, body)
    assert verify_batch(store, batch) is None
    assert Comment.objects.filter(pk__in=batch.ids).count() == 3  # nothing pruned yet

    summary = data_cleanup_archiver(community, NOW)
    assert (summary["resumed_batches"], summary["rewritten_objects"]) == (1, 0)
    assert summary["comments_archived"] == 3
    batch.refresh_from_db()
    assert (batch.state, batch.writes, batch.pruned_count) == ("pruned", 1, 3)
    assert versions(bucket, batch.key) == (1, 0)  # written once
    assert run.batches.filter(kind="comments").count() == 1  # no second copy of the rows
    assert not Comment.objects.filter(pk__in=batch.ids).exists()


@pytest.mark.parametrize("crash", ["before_write", "object_deleted", "object_corrupted"])
def test_batch_whose_object_is_missing_or_wrong_is_written_again(community, data, bucket,
                                                                 crash) -> None:
    run, _ = start_run(community, NOW)
    store = ArchiveStore()
    batch, body = plan_batch(run, ArchiveBatch.Kind.MEMBERS, 10)
    if crash != "before_write":
        write_batch(store, batch, body)
    if crash == "object_deleted":
        s3_client().delete_object(Bucket=bucket, Key=batch.key)
    if crash == "object_corrupted":
        s3_client().put_object(Bucket=bucket, Key=batch.key, Body=body[: len(body) // 2])

    summary = data_cleanup_archiver(community, NOW)
    assert (summary["members_archived"], summary["rewritten_objects"]) == (3, 1)
    batch.refresh_from_db()
    assert batch.state == "pruned" and batch.pruned_count == 3
    stored = s3_client().get_object(Bucket=bucket, Key=batch.key)["Body"].read()
    assert stored == body  # the same rows, byte for byte
    assert [r["id"] for r in lines(stored)] == batch.ids
    assert run.batches.filter(kind="members").count() == 1
    assert Member.objects.filter(anonymized_at=NOW).count() == 3


def test_member_active_again_before_pruning_is_kept(community, data, bucket) -> None:
    run, _ = start_run(community, NOW)
    store = ArchiveStore()
    batch, body = plan_batch(run, ArchiveBatch.Kind.MEMBERS, 10)
    write_batch(store, batch, body)
    verify_batch(store, batch)
    Member.objects.filter(pk=data["old1"].pk).update(last_active_at=NOW)
    data_cleanup_archiver(community, NOW)
    batch.refresh_from_db()
    assert batch.pruned_count == 2
    assert Member.objects.get(pk=data["old1"].pk).anonymized_at is None


@pytest.mark.django_db(transaction=True)
def test_s3_down_is_retried_then_fails_and_nothing_is_pruned(community, data, bucket,
                                                             settings) -> None:
    working = dict(settings.STORAGES)
    down = {**working["archive"], "OPTIONS": {
        **working["archive"]["OPTIONS"], "endpoint_url": closed_port_url(),
        "client_config": Config(retries={"max_attempts": 1}, connect_timeout=1)}}
    settings.STORAGES = {**working, "archive": down}
    spec = data_cleanup_archiver.spec
    run = run_inline(spec, community, trigger="manual", now=NOW)

    assert run.status == JobRun.Status.FAILED
    assert run.attempts == spec.max_retries + 1
    assert run.error_type == "RetryableJobError"
    assert run.error_message.startswith(
        f"gave up after {run.attempts} attempts: archive storage failed to ")
    assert f"{PREFIX}/comments-00001.jsonl.gz: EndpointConnectionError" in run.error_message
    assert Member.objects.filter(anonymized_at__isnull=False).count() == 1  # the one before
    assert Post.objects.filter(pk=data["old_post"].pk).exists()
    assert Comment.objects.count() == 6
    # Every attempt took up the same planned batch rather than choosing the rows again.
    assert list(ArchiveBatch.objects.values_list("kind", "state")) == [("comments", "planned")]

    settings.STORAGES = working  # S3 is back: the same slot finishes, each row once
    run = run_inline(spec, community, trigger="manual", now=NOW)
    assert run.status == JobRun.Status.SUCCEEDED
    assert (run.result["comments_archived"], run.result["members_archived"]) == (3, 3)
    ids = [i for batch in ArchiveBatch.objects.filter(kind="comments") for i in batch.ids]
    assert len(ids) == len(set(ids)) == 3
    assert not Post.objects.filter(pk=data["old_post"].pk).exists()


def test_max_rows_leaves_the_rest_for_the_next_run(community, data, bucket) -> None:
    first = data_cleanup_archiver(community, NOW, batch_size=2, max_rows=2)
    assert (first["comments_archived"], first["posts_archived"]) == (2, 0)
    assert first["run"]["remaining"] == 5
    assert Post.objects.filter(pk=data["old_post"].pk).exists()  # its comments come first
    second = data_cleanup_archiver(community, NOW + timedelta(days=7), batch_size=2)
    assert (second["comments_archived"], second["posts_archived"],
            second["members_archived"]) == (1, 1, 3)
    archived = [i for b in ArchiveBatch.objects.filter(kind="comments") for i in b.ids]
    assert len(archived) == len(set(archived)) == 3


def test_an_unfinished_earlier_run_is_finished_first(community, data, bucket) -> None:
    earlier, _ = start_run(community, NOW - timedelta(days=7))
    store = ArchiveStore()
    batch, body = plan_batch(earlier, ArchiveBatch.Kind.COMMENTS, 10)
    write_batch(store, batch, body)

    summary = data_cleanup_archiver(community, NOW)
    assert summary["resumed_runs"] == 1
    earlier.refresh_from_db()
    assert earlier.status == "completed" and earlier.comments_archived == 2
    assert earlier.manifest_key.endswith("20260628T073000Z/manifest.json")
    current = ArchiveRun.objects.get(slot=NOW)
    # The comment past retention only at the later slot went into the later run, once.
    assert current.comments_archived == 1
    assert summary["comments_archived"] == 3
    ids = [i for b in ArchiveBatch.objects.filter(kind="comments") for i in b.ids]
    assert len(ids) == len(set(ids)) == 3


def test_local_directory_is_the_default_backend(community, data) -> None:
    summary = data_cleanup_archiver(community, NOW)
    assert summary["objects"] == 4
    storage = storages["archive"]
    root = Path(storage.location)
    members = root / PREFIX / "members-00001.jsonl.gz"
    assert len(lines(members.read_bytes())) == 3
    manifest = json.loads((root / PREFIX / "manifest.json").read_text())
    assert manifest["objects"][0]["sha256"] == hashlib.sha256(
        (root / manifest["objects"][0]["key"]).read_bytes()).hexdigest()
    assert Member.objects.filter(anonymized_at=NOW).count() == 3


def test_invalid_params_are_refused(community) -> None:
    spec = data_cleanup_archiver.spec
    with pytest.raises(InvalidJobParams) as info:
        spec.clean_params({"batch_size": 0, "max_rows": "many", "dry": True})
    assert set(info.value.errors) == {"batch_size", "max_rows", "__all__"}
    with pytest.raises(InvalidJobParams, match="batch_size must not exceed max_rows"):
        spec.clean_params({"batch_size": 500, "max_rows": 10})
    with pytest.raises(InvalidJobParams):
        run_inline(spec, community, trigger="manual", now=NOW, params={"batch_size": 10**6})
    assert not JobRun.objects.exists() and not ArchiveRun.objects.exists()


def test_demo_seed_is_idempotent_and_gives_the_job_work(community) -> None:
    demo_archive.seed(community, NOW, random.Random(3))
    counts = (Member.objects.count(), Post.objects.count(), Comment.objects.count())
    demo_archive.seed(community, NOW, random.Random(4))
    assert (Member.objects.count(), Post.objects.count(), Comment.objects.count()) == counts
    expected_comments = Comment.objects.filter(
        post__title__startswith="Old removed thread").count() + 1
    summary = data_cleanup_archiver(community, NOW)
    assert (summary["members_archived"], summary["posts_archived"]) == (3, 3)
    assert summary["comments_archived"] == expected_comments
    assert Comment.objects.filter(body="A reply removed yesterday").exists()
    assert not Comment.objects.filter(body="A reply removed long ago").exists()


def test_admin_pages(community, data, admin_client) -> None:
    data_cleanup_archiver(community, NOW, batch_size=2)
    run = ArchiveRun.objects.get()
    assert admin_client.get("/admin/communities/archiverun/").status_code == 200
    assert admin_client.get(f"/admin/communities/archiverun/{run.pk}/change/").status_code == 200
    batch = run.batches.first()
    assert admin_client.get("/admin/communities/archivebatch/?state=pruned").status_code == 200
    assert admin_client.get(
        f"/admin/communities/archivebatch/{batch.pk}/change/").status_code == 200


@pytest.mark.django_db(transaction=True)
def test_runs_through_the_platform_path(community, data, bucket) -> None:
    run = run_inline(data_cleanup_archiver.spec, community, trigger="manual", now=NOW)
    assert run.status == JobRun.Status.SUCCEEDED
    assert (run.result["members_archived"], run.result["objects"]) == (3, 4)
    assert len(bucket_objects(bucket)) == 4


def test_anonymised_members_lose_their_push_devices(community, data, bucket) -> None:
    from notifications.models import PushDevice

    PushDevice.objects.create(member=data["old1"], token="token-of-an-old-member")
    PushDevice.objects.create(member=data["recent"], token="token-of-a-recent-member")
    data_cleanup_archiver(community, NOW)
    assert list(PushDevice.objects.values_list("token", flat=True)) == [
        "token-of-a-recent-member"]
