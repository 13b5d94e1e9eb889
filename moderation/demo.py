"""Demo flags: open flags of every severity and age, a few already past their SLA."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from communities.models import Comment, Community, Member, Post

from .models import Flag, Severity

# (severity, age in minutes, status, on a comment?, reason). With the default SLAs
# (critical 1h, high 4h, medium 1d, low 3d) four of the open ones are past their SLA.
DEMO_FLAGS = [
    (Severity.CRITICAL, 20, Flag.Status.OPEN, False, "Doxxing: posts a member's home address"),
    (Severity.CRITICAL, 95, Flag.Status.OPEN, True, "Threat of violence in a reply"),
    (Severity.HIGH, 150, Flag.Status.OPEN, False, "Hate speech in the title"),
    (Severity.HIGH, 9 * 60, Flag.Status.OPEN, True, "Harassment of a new member"),
    (Severity.MEDIUM, 5 * 60, Flag.Status.OPEN, False, "Spam link to a crypto giveaway"),
    (Severity.MEDIUM, 2 * 1440 + 30, Flag.Status.OPEN, True, "Off-topic flame war"),
    (Severity.LOW, 4 * 1440, Flag.Status.OPEN, False, "Duplicate of an older thread"),
    (Severity.LOW, 6 * 1440, Flag.Status.RESOLVED, True, "Mild profanity"),
]


def seed(community: Community, now: datetime, rng: random.Random) -> None:
    """Idempotent: flags are found again by their reason, posts by their title."""
    members = list(community.members.filter(anonymized_at__isnull=True).order_by("pk"))
    author = members[-1] if members else None
    reporters = [m for m in members if m.role != Member.Role.ADMIN] or [None]
    for n, (severity, minutes, status, on_comment, reason) in enumerate(DEMO_FLAGS, start=1):
        if Flag.objects.filter(community=community, reason=reason).exists():
            continue
        created = now - timedelta(minutes=minutes)
        post, _ = Post.objects.get_or_create(
            community=community, title=f"Reported thread #{n}",
            defaults={"author": author, "body": "Content that someone reported.",
                      "created_at": created - timedelta(hours=1)},
        )
        comment = None
        if on_comment:
            comment, _ = Comment.objects.get_or_create(
                community=community, post=post, body=f"Reported reply on thread #{n}",
                defaults={"author": author, "created_at": created - timedelta(minutes=30)},
            )
        Flag.objects.create(
            community=community,
            post=None if comment else post,
            comment=comment,
            reporter=rng.choice(reporters),
            reason=reason,
            severity=severity,
            status=status,
            created_at=created,
            resolved_at=created + timedelta(hours=2) if status != Flag.Status.OPEN else None,
        )
