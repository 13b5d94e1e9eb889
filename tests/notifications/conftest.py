"""Fixtures of the notifications tests: members with preferences, a day of content, push."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from communities.models import Community, Event, Member, Post
from notifications.models import PushDevice

# 12:00 in New York (EDT, UTC-4) on Wednesday 1 July 2026: the digest's cron slot.
SLOT = datetime(2026, 7, 1, 16, 0, tzinfo=UTC)
LONG_AGO = datetime(2025, 1, 1, tzinfo=UTC)
PUSH_TOKEN = "push-provider-secret"


@dataclass
class Cast:
    ada: Member  # admin; email and push (one device)
    bob: Member  # email only (the default)
    cy: Member  # opted out of email
    dee: Member  # email, and push without a device
    bea: Member  # joined during the digest's day


def make_member(community: Community, name: str, *, joined_at: datetime = LONG_AGO,
                role: str = Member.Role.MEMBER, **prefs: bool) -> Member:
    return Member.objects.create(
        community=community, email=f"{name}@{community.slug}.example",
        display_name=name.capitalize(), role=role, joined_at=joined_at,
        notification_preferences={"digest_email": True, "digest_push": False, **prefs},
    )


@pytest.fixture
def cast(community: Community) -> Cast:
    ada = make_member(community, "ada", role=Member.Role.ADMIN, digest_push=True)
    PushDevice.objects.create(member=ada, token="ada-phone-token",
                              platform=PushDevice.Platform.ANDROID)
    return Cast(
        ada=ada,
        bob=make_member(community, "bob"),
        cy=make_member(community, "cy", digest_email=False),
        dee=make_member(community, "dee", digest_push=True),
        bea=make_member(community, "bea", joined_at=SLOT - timedelta(hours=5)),
    )


@dataclass
class Content:
    top: Post
    second: Post
    deleted: Post
    old: Post
    event: Event
    far_event: Event


def add_day_of_content(community: Community, author: Member, slot: datetime) -> Content:
    """Posts of the day before `slot` (one deleted, one too old) and events around it."""
    return Content(
        top=Post.objects.create(community=community, author=author,
                                title="Laser cutter tips & tricks", reaction_count=30,
                                comment_count=4, created_at=slot - timedelta(hours=3)),
        second=Post.objects.create(community=community, author=author,
                                   title="Welcome thread", reaction_count=2,
                                   comment_count=1, created_at=slot - timedelta(hours=20)),
        deleted=Post.objects.create(community=community, author=author, title="Spam post",
                                    reaction_count=500, created_at=slot - timedelta(hours=2),
                                    deleted_at=slot - timedelta(hours=1)),
        old=Post.objects.create(community=community, author=author, title="Last week's news",
                                reaction_count=900, created_at=slot - timedelta(days=2)),
        # 23:00 UTC = 19:00 EDT the next day
        event=Event.objects.create(community=community, title="Monthly meetup",
                                   location="Hall B", starts_at=slot + timedelta(hours=31)),
        far_event=Event.objects.create(community=community, title="Winter party",
                                       starts_at=slot + timedelta(days=9)),
    )


@pytest.fixture
def content(community: Community, cast: Cast) -> Content:
    return add_day_of_content(community, cast.ada, SLOT)


@pytest.fixture
def push_provider(settings, receiver):
    """The `receiver` HTTP server acting as the push provider."""
    settings.WEBHOOKS_ALLOW_LOOPBACK = True  # the receiver listens on loopback
    settings.PUSH_PROVIDER_URL = f"{receiver.base_url}/v1/send"
    settings.PUSH_PROVIDER_TOKEN = PUSH_TOKEN
    return receiver
