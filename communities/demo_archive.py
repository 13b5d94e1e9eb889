"""Demo data for data_cleanup_archiver: long-inactive members and old soft-deleted content."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from .models import Comment, Community, Member, Post


def seed(community: Community, now: datetime, rng: random.Random) -> None:
    """Idempotent: members are found again by email, posts by title, comments by body."""
    member_days = community.member_retention_days
    content_days = community.content_retention_days
    # Past retention: two dormant members and one who never came back after joining.
    dormant = [
        ("dormant.one", now - timedelta(days=member_days + 400),
         now - timedelta(days=member_days + 30)),
        ("dormant.two", now - timedelta(days=member_days + 200),
         now - timedelta(days=member_days + rng.randint(1, 90))),
        ("never.active", now - timedelta(days=member_days + 10), None),
    ]
    for handle, joined, last_active in dormant:
        Member.objects.get_or_create(
            community=community, email=f"{handle}@{community.slug}.example",
            defaults={"display_name": handle.replace(".", " ").title(), "joined_at": joined,
                      "last_active_at": last_active,
                      "notification_preferences": {"digest_email": True, "digest_push": True}},
        )
    author = community.members.filter(anonymized_at__isnull=True).order_by("pk").first()
    # Soft-deleted long ago (past retention), with comments that go with them.
    for n in range(1, 4):
        deleted = now - timedelta(days=content_days + 5 * n)
        post, _ = Post.objects.get_or_create(
            community=community, title=f"Old removed thread {n}",
            defaults={"author": author, "body": "Removed by its author.",
                      "created_at": deleted - timedelta(days=10), "deleted_at": deleted},
        )
        for c in range(1, 2 + n % 3):
            Comment.objects.get_or_create(
                community=community, post=post, body=f"Reply {c} in old removed thread {n}",
                defaults={"author": author, "created_at": deleted - timedelta(days=9)},
            )
    # A visible thread with one reply deleted past retention and one deleted recently.
    thread, _ = Post.objects.get_or_create(
        community=community, title="Welcome thread",
        defaults={"author": author, "body": "Say hello!",
                  "created_at": now - timedelta(days=content_days + 60)},
    )
    for body, days in (("A reply removed long ago", content_days + 20),
                       ("A reply removed yesterday", 1)):
        Comment.objects.get_or_create(
            community=community, post=thread, body=body,
            defaults={"author": author, "created_at": now - timedelta(days=days + 1),
                      "deleted_at": now - timedelta(days=days)},
        )
