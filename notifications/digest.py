"""What goes into a community's daily digest, and how it is rendered per member.

The window is one local day ending at the run's `now`: the same wall-clock time the day
before, to `now`. That is 24 hours except across a DST change (23 or 25), so consecutive
daily digests neither overlap nor leave a gap. Upcoming events are those starting in the
7 local days after `now`. Everything is rendered in the community's timezone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.db.models import F
from django.template.loader import render_to_string
from django.utils import timezone

from communities.models import Community, Event, Member, Post

from .preferences import DIGEST_EMAIL, DIGEST_PUSH, unsubscribe_url

MAX_LISTED = 10  # new members and events shown; the digest gives the total beside them


def local_day_before(community: Community, now: datetime, days: int = 1) -> datetime:
    """The instant `days` local calendar days before/after `now` at the same wall time."""
    tz = community.tzinfo
    wall = now.astimezone(tz).replace(tzinfo=None) - timedelta(days=days)
    # A wall time inside a spring-forward gap resolves forward (fold=0), like cron does.
    return wall.replace(tzinfo=tz).astimezone(UTC)


def local_date_of(community: Community, now: datetime) -> date:
    """The digest's day: the date of `now` in the community's timezone."""
    return now.astimezone(community.tzinfo).date()


def digest_window(community: Community, now: datetime) -> tuple[datetime, datetime]:
    return local_day_before(community, now, 1), now


@dataclass
class DigestContent:
    community: Community
    now: datetime
    local_date: date
    window_start: datetime
    window_end: datetime
    top_posts: list[Post] = field(default_factory=list)
    new_members: list[Member] = field(default_factory=list)
    new_member_count: int = 0
    upcoming_events: list[Event] = field(default_factory=list)
    upcoming_event_count: int = 0

    @property
    def is_empty(self) -> bool:
        return not (self.top_posts or self.new_member_count or self.upcoming_event_count)

    def figures(self) -> dict[str, Any]:
        return {"top_posts": len(self.top_posts), "new_members": self.new_member_count,
                "upcoming_events": self.upcoming_event_count,
                "window_start": self.window_start.isoformat(),
                "window_end": self.window_end.isoformat(),
                "local_date": self.local_date.isoformat()}


def build_digest(community: Community, now: datetime, *, top_posts: int = 5,
                 upcoming_days: int = 7) -> DigestContent:
    start, end = digest_window(community, now)
    posts = list(
        Post.objects.visible()
        .filter(community=community, created_at__gte=start, created_at__lt=end)
        .select_related("author")
        .annotate(score=F("reaction_count") + F("comment_count"))
        .order_by("-score", "-created_at", "pk")[:top_posts]
    )
    joined = (community.members.filter(joined_at__gte=start, joined_at__lt=end, is_active=True,
                                       anonymized_at__isnull=True)
              .order_by("joined_at", "pk"))
    events = Event.objects.filter(
        community=community, starts_at__gte=now,
        starts_at__lt=local_day_before(community, now, -upcoming_days),
    ).order_by("starts_at", "pk")
    return DigestContent(
        community=community, now=now, local_date=local_date_of(community, now),
        window_start=start, window_end=end, top_posts=posts,
        new_members=list(joined[:MAX_LISTED]), new_member_count=joined.count(),
        upcoming_events=list(events[:MAX_LISTED]), upcoming_event_count=events.count(),
    )


def _context(content: DigestContent, member: Member, unsubscribe: str = "") -> dict[str, Any]:
    return {
        "community": content.community,
        "member": member,
        "local_date": content.local_date,
        "top_posts": content.top_posts,
        "new_members": content.new_members,
        "new_member_count": content.new_member_count,
        "more_new_members": content.new_member_count - len(content.new_members),
        "upcoming_events": content.upcoming_events,
        "upcoming_event_count": content.upcoming_event_count,
        "more_events": content.upcoming_event_count - len(content.upcoming_events),
        "unsubscribe_url": unsubscribe,
        "site_url": settings.SITE_URL.rstrip("/"),
    }


def render_email(content: DigestContent, member: Member) -> EmailMultiAlternatives:
    """The member's digest email: text and HTML parts, with a one-click unsubscribe."""
    unsubscribe = unsubscribe_url(member, DIGEST_EMAIL)
    context = _context(content, member, unsubscribe)
    # Dates in the templates are shown in the community's timezone.
    with timezone.override(content.community.tzinfo):
        subject = " ".join(
            render_to_string("notifications/digest/subject.txt", context).split()
        )
        text = render_to_string("notifications/digest/body.txt", context)
        html = render_to_string("notifications/digest/body.html", context)
    message = EmailMultiAlternatives(
        subject, text, to=[member.email],
        headers={
            "List-Unsubscribe": f"<{unsubscribe}>",
            # RFC 8058: mail clients may POST here to unsubscribe without a page.
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            "List-Id": f"{content.community.name} digest <digest.{content.community.slug}>",
            "Auto-Submitted": "auto-generated",
        },
    )
    message.attach_alternative(html, "text/html")
    return message


def render_push(content: DigestContent, member: Member) -> tuple[str, str, dict[str, str]]:
    """Title, body and data of the member's digest push message."""
    context = _context(content, member)
    with timezone.override(content.community.tzinfo):
        body = " ".join(render_to_string("notifications/digest/push.txt", context).split())
    title = f"{content.community.name}: your daily digest"
    data = {"type": "daily_digest", "community": content.community.slug,
            "local_date": content.local_date.isoformat(),
            # The app offers "turn these off" with the same signed link as the email.
            "unsubscribe_url": unsubscribe_url(member, DIGEST_PUSH)}
    return title, body, data
