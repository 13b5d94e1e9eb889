"""Members' notification preferences and the signed unsubscribe links that turn them off.

Preferences live in Member.notification_preferences (JSON); the keys this app reads are
below, with defaults from communities.models.default_notification_preferences.
An unsubscribe token is a django.core.signing value (HMAC with SECRET_KEY and a salt of
its own, verified in constant time by signing) naming the member and one preference, so a
link can only ever turn off what it was issued for.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.core import signing
from django.urls import reverse

from communities.models import Member

DIGEST_EMAIL = "digest_email"
DIGEST_PUSH = "digest_push"
PREFERENCE_LABELS = {
    DIGEST_EMAIL: "the daily digest by email",
    DIGEST_PUSH: "the daily digest as push notifications",
}
UNSUBSCRIBE_SALT = "notifications.unsubscribe.v1"


class InvalidUnsubscribeToken(Exception):
    """The token was tampered with, truncated, or names something that no longer exists."""


@dataclass(frozen=True)
class UnsubscribeRequest:
    member: Member
    preference: str

    @property
    def label(self) -> str:
        return PREFERENCE_LABELS[self.preference]


def set_preference(member: Member, preference: str, value: bool) -> bool:
    """Store one preference; returns True when it changed."""
    if preference not in PREFERENCE_LABELS:
        raise ValueError(f"unknown preference {preference!r}")
    prefs = dict(member.notification_preferences or {})
    if preference in prefs and bool(prefs[preference]) == value:
        return False
    prefs[preference] = value
    member.notification_preferences = prefs
    member.save(update_fields=["notification_preferences"])
    return True


def make_unsubscribe_token(member: Member, preference: str) -> str:
    if preference not in PREFERENCE_LABELS:
        raise ValueError(f"unknown preference {preference!r}")
    return signing.dumps({"m": member.pk, "p": preference}, salt=UNSUBSCRIBE_SALT,
                         compress=True)


def unsubscribe_url(member: Member, preference: str) -> str:
    path = reverse("notifications:unsubscribe",
                   kwargs={"token": make_unsubscribe_token(member, preference)})
    return settings.SITE_URL.rstrip("/") + path


def read_unsubscribe_token(token: str) -> UnsubscribeRequest:
    """Verify a token and resolve it; raises InvalidUnsubscribeToken with a clear message."""
    try:
        payload = signing.loads(token, salt=UNSUBSCRIBE_SALT)
    except signing.BadSignature as exc:
        raise InvalidUnsubscribeToken(
            "This unsubscribe link is not valid: it was changed or cut short. "
            "Open the link from the email again, or change your settings in the community."
        ) from exc
    if not isinstance(payload, dict) or payload.get("p") not in PREFERENCE_LABELS \
            or not isinstance(payload.get("m"), int):
        raise InvalidUnsubscribeToken("This unsubscribe link is not valid.")
    member = Member.objects.select_related("community").filter(pk=payload["m"]).first()
    if member is None:
        raise InvalidUnsubscribeToken(
            "This unsubscribe link belongs to a membership that no longer exists."
        )
    return UnsubscribeRequest(member=member, preference=payload["p"])
