"""Per-community API keys: stored hashed, shown once, revocable, audited."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, models, transaction

from automation import audit
from communities.models import Community

KEY_TAG = "cak_"  # "community API key": tells a key from the operator token at a glance
PREFIX_LENGTH = 8
# last_used_at is a hint for admins, not an access log: one write a minute per key at most.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def hash_key(raw: str) -> str:
    """SHA-256 suffices: the secret has 256 bits of entropy, nothing to brute-force."""
    return hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()


def split_key(raw: str) -> str | None:
    """The lookup prefix of a well-formed key, else None."""
    if not raw.startswith(KEY_TAG):
        return None
    prefix = raw[len(KEY_TAG):len(KEY_TAG) + PREFIX_LENGTH]
    separator = raw[len(KEY_TAG) + PREFIX_LENGTH:len(KEY_TAG) + PREFIX_LENGTH + 1]
    if len(prefix) != PREFIX_LENGTH or separator != "_":
        return None
    return prefix


class ApiKey(models.Model):
    """A key that reaches one community's automation endpoints and nothing else."""

    community = models.ForeignKey(Community, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100, help_text="What the key is for, e.g. 'CI' or "
                                                      "'community admin dashboard'.")
    prefix = models.CharField(max_length=PREFIX_LENGTH, unique=True, editable=False,
                              help_text="The key's first characters after 'cak_': identifies "
                                        "it without revealing it.")
    secret_hash = models.CharField(max_length=64, editable=False)
    created_at = models.DateTimeField(editable=False)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                   on_delete=models.SET_NULL, related_name="+", editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        db_table = "api_keys"
        ordering = ["community", "-created_at"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({KEY_TAG}{self.prefix}…)"

    @property
    def label(self) -> str:
        """How the key appears in the audit trail."""
        return f"api-key:{self.prefix}"

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    def assign_secret(self) -> str:
        """Give an unsaved key its prefix and hash; returns the full key (shown once)."""
        self.prefix = secrets.token_hex(PREFIX_LENGTH // 2)
        raw = f"{KEY_TAG}{self.prefix}_{secrets.token_urlsafe(32)}"
        self.secret_hash = hash_key(raw)
        return raw

    @classmethod
    def issue(cls, community: Community, name: str, *, now: datetime,
              created_by: Any = None) -> tuple[ApiKey, str]:
        """Create a key and return it with its full text, which is stored nowhere."""
        key = cls(community=community, name=name, created_by=created_by)
        raw = key.save_new(now)
        return key, raw

    def save_new(self, now: datetime) -> str:
        self.created_at = now
        for attempt in range(5):  # a 32-bit prefix may collide, rarely; draw again
            raw = self.assign_secret()
            try:
                with transaction.atomic():
                    self.save()
                break
            except IntegrityError:
                if attempt == 4:
                    raise
        audit.record("api_key.create", community=self.community, target=str(self),
                     after={"prefix": self.prefix, "name": self.name}, at=now)
        return raw

    def revoke(self, now: datetime) -> bool:
        """Revoke for good; False when it already was."""
        if self.is_revoked:
            return False
        self.revoked_at = now
        self.save(update_fields=["revoked_at"])
        audit.record("api_key.revoke", community=self.community, target=str(self),
                     before={"revoked_at": None}, after={"revoked_at": now.isoformat()}, at=now)
        return True

    @classmethod
    def authenticate(cls, raw: str, now: datetime) -> ApiKey | None:
        """The live key with this full text, or None (unknown, malformed or revoked)."""
        prefix = split_key(raw)
        if prefix is None:
            return None
        key = cls.objects.select_related("community").filter(prefix=prefix).first()
        if key is None or not hmac.compare_digest(key.secret_hash, hash_key(raw)):
            return None
        if key.is_revoked:
            return None
        if key.last_used_at is None or now - key.last_used_at >= LAST_USED_RESOLUTION:
            cls.objects.filter(pk=key.pk).update(last_used_at=now)
            key.last_used_at = now
        return key
