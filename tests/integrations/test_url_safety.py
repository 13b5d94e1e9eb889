"""Tenant webhook URLs may not reach loopback, private or metadata addresses."""

import pytest
from django.core.exceptions import ValidationError

from integrations.url_safety import resolve_safe_addresses, validate_webhook_url


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://127.0.0.1/hook", "a loopback address"),
        ("http://localhost:8080/hook", "a loopback address"),
        ("http://[::1]/hook", "a loopback address"),
        ("http://[::ffff:127.0.0.1]/hook", "a loopback address"),
        ("http://2130706433/hook", "a loopback address"),
        ("http://10.0.0.1/hook", "a private address"),
        ("http://192.168.1.20/hook", "a private address"),
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
    """The development switch opens loopback, not private or metadata addresses."""
    settings.WEBHOOKS_ALLOW_LOOPBACK = True
    assert resolve_safe_addresses("http://127.0.0.1:9/x") == ["127.0.0.1"]
    for url in ("http://10.0.0.1/", "http://169.254.169.254/"):
        with pytest.raises(ValidationError):
            validate_webhook_url(url)


def test_public_address_is_allowed(settings) -> None:
    settings.WEBHOOKS_ALLOW_LOOPBACK = False
    assert resolve_safe_addresses("https://93.184.215.14/hook") == ["93.184.215.14"]
