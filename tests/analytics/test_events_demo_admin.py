"""The event store's writer, the demo seed, and the admin pages of every analytics model."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest
from django.apps import apps
from django.core.exceptions import ValidationError
from django.urls import reverse

from analytics import demo
from analytics.events import record_event
from analytics.jobs.analytics_backfill_replay import analytics_backfill_replay
from analytics.jobs.analytics_hourly_rollup import analytics_hourly_rollup
from analytics.jobs.weekly_leaderboard_recalculate import weekly_leaderboard_recalculate
from analytics.models import ActivityEvent, Backfill, BackfillChunk, DailyRollup, EventType
from communities.models import Member

from .conftest import make_member

NOW = datetime(2026, 3, 4, 15, tzinfo=UTC)


def test_record_event_validates_what_it_stores(community, other_community) -> None:
    ann = make_member(community, "Ann")
    event = record_event(community, "post", member=ann, occurred_at=NOW, payload={"id": 7})
    assert (event.type, event.member, event.payload) == ("post", ann, {"id": 7})
    with pytest.raises(ValidationError, match="unknown event type 'like'"):
        record_event(community, "like", occurred_at=NOW)
    with pytest.raises(ValidationError, match="timezone-aware"):
        record_event(community, "post", occurred_at=datetime(2026, 3, 4, 15))
    with pytest.raises(ValidationError, match="does not belong to community kolkata"):
        record_event(other_community, "post", member=ann, occurred_at=NOW)
    # A deleted member's events stay, unattributed.
    ann.delete()
    event.refresh_from_db()
    assert event.member is None


def seed_members(community) -> None:
    for n in range(10):
        Member.objects.create(community=community, email=f"m{n}@{community.slug}.example",
                              display_name=f"Member {n}", joined_at=datetime(2025, 1, 1,
                                                                             tzinfo=UTC))


def test_demo_seed_is_idempotent_and_gives_the_jobs_work(community, settings,
                                                         tmp_path) -> None:
    seed_members(community)
    demo.seed(community, NOW, random.Random(1))
    count = ActivityEvent.objects.filter(community=community).count()
    assert count > 200
    assert not ActivityEvent.objects.filter(occurred_at__gte=NOW).exists()
    demo.seed(community, NOW, random.Random(2))
    assert ActivityEvent.objects.filter(community=community).count() == count

    board = weekly_leaderboard_recalculate(community, NOW, notify=False)
    assert board["members_scored"] >= 5
    rollup = analytics_hourly_rollup(community, NOW, hours=24 * 14)
    assert rollup["events_counted"] > 50
    assert DailyRollup.objects.filter(community=community).count() > 14
    settings.STORAGES = {**settings.STORAGES, "warehouse": {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(tmp_path), "allow_overwrite": True}}}
    replay = analytics_backfill_replay(community, NOW, start=datetime(2026, 3, 1, tzinfo=UTC),
                                       end=datetime(2026, 3, 3, tzinfo=UTC))
    assert replay["rows_written"] > 0 and replay["mismatched"] == 0


def test_admin_pages_of_every_model(admin_client, community) -> None:
    ann = make_member(community, "Ann")
    record_event(community, "login", member=ann, occurred_at=NOW)
    backfill = Backfill.objects.create(community=community, start=NOW, end=NOW.replace(hour=16),
                                       created_at=NOW, last_run_at=NOW)
    BackfillChunk.objects.create(backfill=backfill, hour=NOW, key="events/x.jsonl")
    for model in apps.get_app_config("analytics").get_models():
        name = model._meta.model_name
        response = admin_client.get(reverse(f"admin:analytics_{name}_changelist"))
        assert response.status_code == 200, name
    page = admin_client.get(reverse("admin:analytics_backfill_change", args=[backfill.pk]))
    assert page.status_code == 200 and b"events/x.jsonl" in page.content


def test_posts_and_comments_are_recorded_as_activity(community) -> None:
    from communities.models import Comment, Post

    author = Member.objects.create(community=community, email="a@acme.example",
                                   display_name="A")
    post = Post.objects.create(community=community, author=author, title="Hello")
    Comment.objects.create(community=community, post=post, author=author, body="Hi")
    post.title = "Hello again"
    post.save()  # an edit is not new activity
    events = ActivityEvent.objects.filter(community=community).order_by("pk")
    assert [(e.type, e.member_id, e.payload.get("post_id")) for e in events] == [
        (EventType.POST, author.pk, post.pk), (EventType.COMMENT, author.pk, post.pk)]
