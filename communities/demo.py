"""Demo content: recent posts with comments and reactions, and upcoming events."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from .models import Comment, Community, Event, Post

POST_TITLES = [
    "Welcome thread: introduce yourself", "Show and tell: what did you build this week?",
    "Meetup recap and photos", "Question: best tools for beginners?",
    "Poll: next month's theme", "Tips from the last workshop", "Looking for a project buddy",
    "Release notes and what changed", "Weekend challenge results", "Ask me anything",
]
EVENT_TITLES = ["Monthly meetup", "Beginner workshop", "Online office hours", "Community AMA"]


def seed(community: Community, now: datetime, rng: random.Random) -> None:
    """Posts spread over the last three days, comments on them, events in the next week."""
    members = list(community.members.filter(is_active=True).order_by("pk"))
    if not members:
        return
    for i, title in enumerate(POST_TITLES):
        author = members[i % len(members)]
        post, created = Post.objects.get_or_create(
            community=community, title=title,
            defaults={
                "author": author,
                "body": f"{title} — posted by {author.display_name}.",
                "created_at": now - timedelta(hours=rng.randint(1, 72)),
                "reaction_count": rng.randint(0, 40),
            },
        )
        if not created:
            continue
        for n in range(rng.randint(0, 4)):
            Comment.objects.create(
                community=community, post=post, author=members[(i + n + 1) % len(members)],
                body=f"Reply {n + 1} to “{title}”", created_at=post.created_at
                + timedelta(minutes=10 * (n + 1)),
            )
        post.comment_count = post.comments.count()
        post.save(update_fields=["comment_count"])
    for i, title in enumerate(EVENT_TITLES):
        Event.objects.get_or_create(
            community=community, title=title,
            defaults={"starts_at": now + timedelta(days=i * 2 + 1, hours=rng.randint(0, 6)),
                      "location": "Online" if i % 2 else "Community hall"},
        )
