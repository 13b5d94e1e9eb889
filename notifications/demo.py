"""Demo data for notifications: a mix of digest preferences and push devices.

With the demo's posts and events (communities.demo) the noon digest has something to say;
this gives it both channels to say it on: most members take email, a third also push (with
a registered device at the demo receiver's /push), and a few have opted out of email.
"""

from __future__ import annotations

import random
from datetime import datetime

from communities.models import Community

from .models import PushDevice
from .preferences import DIGEST_EMAIL, DIGEST_PUSH


def seed(community: Community, now: datetime, rng: random.Random) -> None:
    """Idempotent: preferences are set to fixed values, devices are get_or_create'd."""
    members = list(community.members.filter(is_active=True).order_by("pk"))
    for i, member in enumerate(members):
        wanted = {DIGEST_EMAIL: i % 5 != 4, DIGEST_PUSH: i % 3 == 0}
        prefs = dict(member.notification_preferences or {})
        if any(prefs.get(key) != value for key, value in wanted.items()):
            member.notification_preferences = {**prefs, **wanted}
            member.save(update_fields=["notification_preferences"])
        if wanted[DIGEST_PUSH]:
            PushDevice.objects.get_or_create(
                token=f"demo-{community.slug}-{member.pk}",
                defaults={"member": member,
                          "platform": rng.choice(list(PushDevice.Platform.values))},
            )
