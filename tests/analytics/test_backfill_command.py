"""manage.py analytics_backfill_replay: argument checks, progress, and a real replay."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from analytics.models import Backfill

from .conftest import add, make_member

START = datetime(2026, 1, 5, tzinfo=UTC)


@pytest.fixture
def sink_dir(settings, tmp_path):
    settings.STORAGES = {**settings.STORAGES, "warehouse": {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(tmp_path), "allow_overwrite": True}}}
    return tmp_path


def command(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("analytics_backfill_replay", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_replays_with_a_progress_bar(community, sink_dir) -> None:
    ann = make_member(community, "Ann")
    add(community, ann, "post", START + timedelta(minutes=1), count=2)
    out, err = command("--community", "acme", "--start", "2026-01-05T00:00:00Z",
                       "--end", "2026-01-05T02:00:00Z")
    assert "backfill acme 2026-01-05T00:00:00+00:00 → 2026-01-05T02:00:00+00:00" in out
    assert "chunks=2, replayed=2, skipped_done=0, failed=0" in out
    assert "reconciled=2, mismatched=0" in out
    assert "replay: 100%" in err and "2/2" in err
    key = sink_dir / "events/community=acme/date=2026-01-05/hour=00/part-0000.jsonl"
    assert key.read_text().count("\n") == 2
    # By id as well; a second run resumes (nothing left to do).
    out, _ = command("--community", str(community.pk), "--start", "2026-01-05T00:00:00Z",
                     "--end", "2026-01-05T02:00:00Z", "--no-progress")
    assert "replayed=0, skipped_done=2" in out


def test_dry_run_says_what_it_would_do(community, sink_dir) -> None:
    add(community, None, "login", START)
    out, _ = command("--community", "acme", "--start", "2026-01-05T00:00:00",
                     "--end", "2026-01-05T05:00:00", "--dry-run", "--no-progress")
    assert out.startswith("dry run of backfill acme")
    assert "chunks=5, replayed=0, would_replay=5" in out and "rows_to_write=1" in out
    assert not Backfill.objects.exists()
    assert list(sink_dir.iterdir()) == []


def test_mismatch_fails_the_command_with_advice(community, sink_dir) -> None:
    add(community, None, "login", START)
    args = ("--community", "acme", "--start", "2026-01-05T00:00:00Z",
            "--end", "2026-01-05T01:00:00Z", "--no-progress")
    command(*args)
    (sink_dir / "events/community=acme/date=2026-01-05/hour=00/part-0000.jsonl").unlink()
    with pytest.raises(CommandError, match="1 hour\\(s\\) do not match the source; run the "
                                           "same command again"):
        command(*args)
    out, _ = command(*args)
    assert "replayed=1" in out and "mismatched=0" in out


@pytest.mark.parametrize(("args", "message"), [
    (["--community", "nope", "--start", "2026-01-05T00:00:00Z", "--end",
      "2026-01-06T00:00:00Z"], "no community with id or slug 'nope'"),
    (["--community", "acme", "--start", "5 Jan", "--end", "2026-01-06T00:00:00Z"],
     "start must be an ISO 8601 datetime such as 2026-01-05T00:00:00Z"),
    (["--community", "acme", "--start", "2026-01-06T00:00:00Z", "--end",
      "2026-01-05T00:00:00Z"], "end (2026-01-05T00:00:00+00:00) must be after start"),
    (["--community", "acme", "--start", "2025-01-01T00:00:00Z", "--end",
      "2026-01-01T00:00:00Z"], "the window spans 365.0 days; at most 92 days"),
    (["--community", "acme", "--start", "2026-01-05T00:00:00Z"],
     "the following arguments are required: --end"),
    # Near the end of the calendar, rounding the window out to whole hours would overflow.
    (["--community", "acme", "--start", "9999-12-31T20:00:00Z", "--end",
      "9999-12-31T23:59:59Z"],
     "start 9999-12-31 is out of range; dates must be between 2000-01-01 and 2099-12-31; "
     "end 9999-12-31 is out of range"),
    (["--community", "acme", "--start", "0001-01-01T00:00:00+05:00", "--end",
      "2026-01-01T00:00:00Z"], "start 0001-01-01 is out of range"),
    (["--community", "acme", "--start", "", "--end", ""],
     "--start and --end must be given, as ISO 8601 datetimes"),
    (["--community", "acme", "--start", "2026-01-05T00:00:00Z\x00", "--end",
      "2026-01-06T00:00:00Z"], "--start contains a control character (U+0000) at position 20"),
    (["--community", "ac\x00me", "--start", "2026-01-05T00:00:00Z", "--end",
      "2026-01-06T00:00:00Z"], "--community contains a control character (U+0000)"),
])
def test_bad_arguments_are_refused(community, sink_dir, args, message) -> None:
    with pytest.raises(CommandError) as info:
        command(*args)
    assert message in str(info.value)
    assert not Backfill.objects.exists()
