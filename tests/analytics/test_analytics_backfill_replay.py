"""analytics_backfill_replay into a local S3 server (moto) and a local directory."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from analytics.jobs.analytics_backfill_replay import analytics_backfill_replay
from analytics.models import Backfill, BackfillChunk
from analytics.tasks import replay_chunk_task
from automation.errors import InvalidJobParams
from automation.models import JobRun
from automation.runs import run_inline
from tests.servers import closed_port_url

from .conftest import add, make_member

START = datetime(2026, 1, 5, 0, 0, tzinfo=UTC)
END = START + timedelta(hours=3)
NOW = datetime(2026, 2, 1, 12, tzinfo=UTC)
KEYS = {h: f"events/community=acme/date=2026-01-05/hour={h:02d}/part-0000.jsonl"
        for h in range(3)}


@pytest.fixture
def events(community):
    ann, bob = make_member(community, "Ann"), make_member(community, "Bob")
    add(community, ann, "post", START + timedelta(minutes=5), title="hello")
    add(community, bob, "comment", START + timedelta(minutes=30))
    add(community, None, "reaction", START + timedelta(minutes=59, seconds=59))
    # hour 1 is quiet
    add(community, bob, "login", START + timedelta(hours=2))
    add(community, ann, "login", START + timedelta(hours=2, minutes=10))
    add(community, ann, "login", END)  # just outside, either side
    add(community, ann, "login", START - timedelta(seconds=1))
    return community


@pytest.fixture
def bucket(s3_storages, s3_endpoint):
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")

    class Bucket:
        name = s3_storages["warehouse"]

        def listing(self) -> list[str]:
            listing = client.list_objects_v2(Bucket=self.name)
            return sorted(obj["Key"] for obj in listing.get("Contents", []))

        def lines(self, key: str) -> list[dict]:
            body = client.get_object(Bucket=self.name, Key=key)["Body"].read()
            return [json.loads(line) for line in body.splitlines()]

        def put(self, key: str, body: bytes) -> None:
            client.put_object(Bucket=self.name, Key=key, Body=body)

        def delete(self, key: str) -> None:
            client.delete_object(Bucket=self.name, Key=key)

    return Bucket()


@pytest.fixture
def local_sink(settings, tmp_path) -> Path:
    settings.STORAGES = {**settings.STORAGES, "warehouse": {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(tmp_path), "allow_overwrite": True}}}
    return tmp_path


def replay(community, **params):
    return analytics_backfill_replay(community, NOW, start=params.pop("start", START),
                                     end=params.pop("end", END), **params)


def test_window_lands_in_the_bucket_hour_by_hour(events, bucket) -> None:
    summary = replay(events)
    assert {k: summary[k] for k in ("chunks", "replayed", "skipped_done", "failed",
                                    "rows_source", "rows_written", "reconciled",
                                    "mismatched")} == {
        "chunks": 3, "replayed": 3, "skipped_done": 0, "failed": 0, "rows_source": 5,
        "rows_written": 5, "reconciled": 3, "mismatched": 0}
    assert bucket.listing() == [KEYS[0], KEYS[2]]  # a quiet hour has no object
    first = bucket.lines(KEYS[0])
    assert [(r["type"], r["member_id"]) for r in first] == [
        ("post", events.members.get(display_name="Ann").pk),
        ("comment", events.members.get(display_name="Bob").pk), ("reaction", None)]
    assert first[0]["payload"] == {"title": "hello"}
    assert first[0]["occurred_at"] == "2026-01-05T00:05:00+00:00"
    assert first[0]["community"] == "acme"
    assert len(bucket.lines(KEYS[2])) == 2
    backfill = Backfill.objects.get()
    assert (backfill.status, backfill.rows_source, backfill.rows_sink) == ("done", 5, 5)


def test_rerun_skips_done_hours_and_force_overwrites(events, bucket) -> None:
    replay(events)
    again = replay(events)
    assert (again["replayed"], again["skipped_done"], again["rows_written"],
            again["reconciled"]) == (0, 3, 0, 3)
    forced = replay(events, force=True)
    assert (forced["replayed"], forced["rows_written"]) == (3, 5)
    assert bucket.listing() == [KEYS[0], KEYS[2]]  # overwritten, not duplicated
    assert [len(bucket.lines(k)) for k in bucket.listing()] == [3, 2]
    assert Backfill.objects.get().runs == 3
    assert BackfillChunk.objects.count() == 3


def test_tampered_sink_is_reported_then_repaired(events, bucket) -> None:
    replay(events)
    bucket.delete(KEYS[0])
    bucket.put(KEYS[2], b'{"only": "one line"}\n')
    checked = replay(events)
    assert (checked["skipped_done"], checked["reconciled"], checked["mismatched"]) == (3, 1, 2)
    assert {(m["key"], m["source"], m["sink"]) for m in checked["details"]["mismatches"]} == {
        (KEYS[0], 3, 0), (KEYS[2], 2, 1)}
    assert Backfill.objects.get().status == "mismatched"
    # Mismatched hours are not "done": the next run replays exactly those.
    repaired = replay(events)
    assert (repaired["replayed"], repaired["skipped_done"], repaired["mismatched"]) == (2, 1, 0)
    assert [len(bucket.lines(k)) for k in bucket.listing()] == [3, 2]


def test_late_event_makes_a_done_hour_mismatch_until_replayed(events, bucket) -> None:
    replay(events)
    add(events, None, "login", START + timedelta(hours=1, minutes=1))
    checked = replay(events)
    assert checked["details"]["mismatches"] == [
        {"hour": "2026-01-05T01:00:00+00:00", "key": KEYS[1], "source": 1, "sink": 0}]
    replay(events)
    assert bucket.listing() == [KEYS[0], KEYS[1], KEYS[2]]


def test_chunk_task_replays_one_hour(events, bucket) -> None:
    replay(events)
    bucket.delete(KEYS[2])
    chunk = BackfillChunk.objects.get(key=KEYS[2])
    result = replay_chunk_task.apply(args=(chunk.pk,), throw=True)
    assert result.get() == "replayed"
    assert len(bucket.lines(KEYS[2])) == 2
    chunk.refresh_from_db()
    assert (chunk.status, chunk.source_rows, chunk.sink_rows, chunk.attempts) == (
        "done", 2, 2, 2)
    assert Backfill.objects.get().rows_sink == 5


def test_dry_run_writes_nothing(events, bucket) -> None:
    summary = replay(events, dry_run=True)
    assert (summary["chunks"], summary["would_replay"], summary["rows_to_write"],
            summary["rows_written"]) == (3, 3, 5, 0)
    assert bucket.listing() == []
    assert not Backfill.objects.exists()


def test_window_is_widened_to_whole_hours(events, bucket) -> None:
    summary = replay(events, start=START + timedelta(minutes=20),
                     end=START + timedelta(hours=1, minutes=1))
    assert summary["details"]["window"] == ["2026-01-05T00:00:00+00:00",
                                            "2026-01-05T02:00:00+00:00"]
    assert summary["rows_written"] == 3  # the whole first hour, never a part of it


def test_without_a_window_the_previous_local_day_is_replayed(events, bucket) -> None:
    add(events, None, "login", datetime(2026, 1, 5, 12, tzinfo=UTC))
    assert analytics_backfill_replay.spec.clean_params({}) == {"dry_run": False, "force": False}
    summary = analytics_backfill_replay(events, datetime(2026, 1, 6, 12, tzinfo=UTC))
    # Monday 5 January in New York (UTC-5): 05:00 UTC to 05:00 UTC.
    assert summary["details"]["window"] == ["2026-01-05T05:00:00+00:00",
                                            "2026-01-06T05:00:00+00:00"]
    assert (summary["chunks"], summary["rows_written"]) == (24, 1)


def test_one_failing_hour_does_not_stop_the_rest_and_resumes(events, local_sink) -> None:
    # A file where hour 02's directory should be: that partition cannot be written.
    blocker = local_sink / "events/community=acme/date=2026-01-05/hour=02"
    blocker.parent.mkdir(parents=True)
    blocker.write_text("in the way")
    summary = replay(events)
    assert (summary["replayed"], summary["failed"], summary["reconciled"]) == (2, 1, 2)
    assert "FileExistsError" in summary["details"]["failures"][0]["error"]
    assert Backfill.objects.get().status == "failed"
    assert (local_sink / KEYS[0]).read_text().count("\n") == 3

    blocker.unlink()
    resumed = replay(events)
    assert (resumed["replayed"], resumed["skipped_done"], resumed["failed"]) == (1, 2, 0)
    assert (local_sink / KEYS[2]).read_text().count("\n") == 2
    assert Backfill.objects.get().status == "done"


@pytest.mark.django_db(transaction=True)
def test_runs_through_the_platform_path(events, bucket) -> None:
    run = run_inline(analytics_backfill_replay.spec, events, trigger="manual", now=NOW,
                     params={"start": "2026-01-05T00:00:00Z", "end": "2026-01-05T03:00:00Z"})
    assert run.status == JobRun.Status.SUCCEEDED, run.error_message
    assert (run.result["rows_written"], run.result["reconciled"]) == (5, 3)
    assert len(bucket.listing()) == 2


@pytest.mark.django_db(transaction=True)
def test_s3_down_is_retried_then_fails_with_a_clear_error(events, settings,
                                                          monkeypatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    down = closed_port_url()
    settings.STORAGES = {**settings.STORAGES, "warehouse": {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {"bucket_name": "warehouse", "endpoint_url": down, "region_name": "us-east-1",
                    "file_overwrite": True, "default_acl": None,
                    "client_config": Config(retries={"total_max_attempts": 1},
                                            connect_timeout=1)}}}
    run = run_inline(analytics_backfill_replay.spec, events, trigger="manual", now=NOW,
                     params={"start": "2026-01-05T00:00:00Z", "end": "2026-01-05T03:00:00Z"})
    assert run.status == JobRun.Status.FAILED
    assert run.attempts == 4
    assert run.error_type == "RetryableJobError"
    assert run.error_message.startswith(
        "gave up after 4 attempts: warehouse sink unreachable: Could not connect to the "
        f'endpoint URL: "{down}/warehouse/')
    chunk = BackfillChunk.objects.get(hour=START)
    assert (chunk.status, chunk.attempts) == ("failed", 4)
    assert "EndpointConnectionError" in chunk.error


@pytest.mark.parametrize(("params", "message"), [
    ({"start": "2026-01-05T03:00:00Z", "end": "2026-01-05T00:00:00Z"},
     "end (2026-01-05T00:00:00+00:00) must be after start (2026-01-05T03:00:00+00:00)"),
    ({"start": "2026-01-05T00:00:00Z", "end": "2026-01-05T00:00:00Z"}, "must be after start"),
    ({"start": "2026-01-01T00:00:00Z", "end": "2026-06-01T00:00:00Z"},
     "the window spans 151.0 days; at most 92 days per backfill"),
    ({"start": "yesterday", "end": "2026-01-05T00:00:00Z"},
     "start must be an ISO 8601 datetime such as 2026-01-05T00:00:00Z"),
    ({"start": "2026-01-05T00:00:00Z"}, "end is required with start (give both, or neither"),
    ({"end": "2026-01-05T00:00:00Z"}, "start is required with end"),
    ({"start": "2026-01-05T00:00:00Z", "end": "2026-01-06T00:00:00Z", "dryrun": True},
     "unknown params: dryrun"),
])
def test_bad_params_are_refused(params, message) -> None:
    with pytest.raises(InvalidJobParams) as info:
        analytics_backfill_replay.spec.clean_params(params)
    assert message in str(info.value)
