"""Tenant webhook URLs: `validate_webhook_url`, the path the migrations name, is the guard.

The table of every hostile form, at save and at call, is tests/automation/test_outbound_urls.py.
"""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.db.migrations.writer import MigrationWriter

from integrations.models import Webhook
from integrations.url_safety import validate_webhook_url
from moderation.models import ModerationPolicy


def test_models_validate_through_the_path_their_migrations_name() -> None:
    """Moving the rule to the core changed no migration: the validator path is unchanged."""
    for field in (Webhook._meta.get_field("url"),
                  ModerationPolicy._meta.get_field("slack_webhook_url")):
        assert validate_webhook_url in field.validators
    path, imports = MigrationWriter.serialize(validate_webhook_url)
    assert path == "integrations.url_safety.validate_webhook_url"
    assert imports == {"import integrations.url_safety"}


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://127.0.0.1/hook", "a loopback address"),
        ("http://localhost:8080/hook", "a loopback address"),
        ("http://[::1]/hook", "a loopback address"),
        ("http://[::ffff:127.0.0.1]/hook", "a loopback address"),
        ("http://2130706433/hook", "not a dotted-quad IPv4 address"),
        ("http://10.0.0.1/hook", "a private address"),
        ("http://192.168.1.20/hook", "a private address"),
        ("http://100.64.0.1/hook", "a shared (carrier-grade NAT) address"),
        ("http://[2002:7f00:1::]/hook", "a 6to4 address (2002::/16) embedding 127.0.0.1"),
        ("http://169.254.169.254/latest/meta-data", "a cloud metadata address"),
        ("http://metadata.google.internal/computeMetadata/v1/", "cloud metadata host"),
        ("http://0.0.0.0/", "an unspecified address"),
        ("ftp://example.com/file", "Only http and https"),
        ("http:///nohost", "has no host"),
        ("http://user:pw@example.com/", "Credentials in the URL"),
    ],
)
def test_forbidden_urls_are_refused_with_a_reason(url: str, message: str, settings) -> None:
    """Each forbidden destination is refused, and the message says why."""
    settings.WEBHOOKS_ALLOW_LOOPBACK = False
    with pytest.raises(ValidationError) as info:
        validate_webhook_url(url)
    assert message in " ".join(info.value.messages)


def test_loopback_only_when_allowed_and_private_never(settings) -> None:
    """The development switch opens plain loopback, not private, metadata or embedded forms."""
    settings.WEBHOOKS_ALLOW_LOOPBACK = True
    validate_webhook_url("http://127.0.0.1:9999/x")
    validate_webhook_url("http://[::1]:9999/x")
    for url in ("http://10.0.0.1/", "http://169.254.169.254/", "http://0.0.0.0:9999/",
                "http://[::ffff:127.0.0.1]:9999/", "http://[64:ff9b::7f00:1]:9999/"):
        with pytest.raises(ValidationError):
            validate_webhook_url(url)


def test_public_address_is_allowed(settings) -> None:
    settings.WEBHOOKS_ALLOW_LOOPBACK = False
    validate_webhook_url("https://93.184.215.14/hook")
    validate_webhook_url("https://[2606:2800:220:1:248:1893:25c8:1946]:8443/hook")
