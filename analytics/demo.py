"""Demo activity: four weeks of logins, posts, comments and reactions for each member."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from communities.models import Community

from .models import ActivityEvent, EventType
from .periods import local_date, local_midnight

DEMO_DAYS = 28
# How likely each member is to show up on a given day: a few regulars, some lurkers.
ACTIVITY_LEVELS = [0.9, 0.75, 0.6, 0.5, 0.4, 0.3, 0.25, 0.2, 0.15, 0.1]
EMOJI = ["👍", "🎉", "❤️", "🚀", "👀"]


def seed(community: Community, now: datetime, rng: random.Random) -> None:
    """Events for the last DEMO_DAYS local days up to `now`; days already seeded are kept.

    Each (member, day) draws from its own seeded generator rather than `rng`, so seeding
    again adds nothing, not even to days that came out quiet the first time.
    """
    tz = community.tzinfo
    members = list(community.members.filter(is_active=True).order_by("pk"))
    today = local_date(now, tz)
    seeded = set(
        ActivityEvent.objects.filter(community=community, payload__demo=True)
        .values_list("member_id", "payload__day")
    )
    events: list[ActivityEvent] = []
    for index, member in enumerate(members):
        level = ACTIVITY_LEVELS[index % len(ACTIVITY_LEVELS)]
        joined = local_date(member.joined_at, tz)
        for back in range(DEMO_DAYS, -1, -1):
            day = today - timedelta(days=back)
            if day < joined or (member.pk, day.isoformat()) in seeded:
                continue
            day_rng = random.Random(f"{community.slug}:{member.email}:{day.isoformat()}")
            if day_rng.random() > level:
                continue
            start = local_midnight(day, tz)

            def at(start: datetime = start, day_rng: random.Random = day_rng) -> datetime:
                return start + timedelta(seconds=day_rng.randint(6 * 3600, 23 * 3600))

            base = {"demo": True, "day": day.isoformat()}
            kinds = [(EventType.LOGIN, {"client": day_rng.choice(["web", "ios", "android"])})]
            if day_rng.random() < 0.3:
                kinds.append((EventType.POST, {"title": f"Notes from {day:%A}"}))
            kinds += [(EventType.COMMENT, {}) for _ in range(day_rng.randint(0, 3))]
            kinds += [(EventType.REACTION, {"emoji": day_rng.choice(EMOJI)})
                      for _ in range(day_rng.randint(0, 6))]
            if day_rng.random() < 0.05:
                kinds.append((EventType.EVENT_RSVP, {"answer": "yes"}))
            for event_type, extra in kinds:
                occurred = at()
                if occurred >= now:
                    continue
                events.append(ActivityEvent(community=community, member=member,
                                            type=event_type, occurred_at=occurred,
                                            payload={**base, **extra}))
    ActivityEvent.objects.bulk_create(events, batch_size=1000)
