"""A community's outgoing webhook integrations."""

import secrets

from django.db import models

from communities.models import Community

from .url_safety import validate_webhook_url


def new_signing_secret() -> str:
    return secrets.token_urlsafe(32)


class Webhook(models.Model):
    community = models.ForeignKey(Community, on_delete=models.CASCADE, related_name="webhooks")
    name = models.CharField(max_length=100)
    url = models.URLField(max_length=500, validators=[validate_webhook_url])
    signing_secret = models.CharField(max_length=100, default=new_signing_secret)
    enabled = models.BooleanField(default=True)
    consecutive_failures = models.PositiveIntegerField(default=0)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_latency_ms = models.FloatField(null=True, blank=True)
    last_checked_at = models.DateTimeField(null=True, blank=True)
    last_checked_for = models.DateTimeField(
        null=True, blank=True, help_text="Slot of the last health check (re-runs skip it)."
    )
    last_error = models.TextField(blank=True)
    disabled_reason = models.TextField(blank=True)
    disabled_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["community", "name"]
        indexes = [models.Index(fields=["community", "enabled"])]

    def __str__(self) -> str:
        return f"{self.name} ({self.community})"

    def save(self, *args, **kwargs) -> None:
        # A tenant-supplied URL is checked on every write of it, not only in forms.
        update_fields = kwargs.get("update_fields")
        if update_fields is None or "url" in update_fields:
            validate_webhook_url(self.url)
        super().save(*args, **kwargs)
