"""SSRF protection for tenant-supplied URLs: checked when saved and again when called."""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError

METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200")
)
METADATA_HOSTNAMES = frozenset({"metadata.google.internal", "metadata", "instance-data"})

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _refusal(address: IPAddress, allow_loopback: bool) -> str | None:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if address.is_loopback:
        return None if allow_loopback else "a loopback address"
    for label, flag in (
        ("an unspecified address", address.is_unspecified),
        ("a private address", address.is_private),
        ("a link-local address", address.is_link_local),
        ("a multicast address", address.is_multicast),
        ("a reserved address", address.is_reserved),
    ):
        if flag:
            return label
    return None


def resolve_safe_addresses(url: str, *, allow_loopback: bool | None = None) -> list[str]:
    """Validate `url` and return the addresses it resolves to, all of them allowed.

    The caller connects to one of these addresses, so the address checked is the address
    called (no second DNS lookup that could answer differently).
    """
    if allow_loopback is None:
        allow_loopback = settings.WEBHOOKS_ALLOW_LOOPBACK
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValidationError("Only http and https URLs are allowed.", code="scheme")
    if not parts.hostname:
        raise ValidationError("The URL has no host.", code="host")
    if parts.username or parts.password:
        raise ValidationError("Credentials in the URL are not allowed.", code="credentials")
    host = parts.hostname.rstrip(".").lower()
    if host in METADATA_HOSTNAMES:
        raise ValidationError("%(host)s is a cloud metadata host.", params={"host": host},
                              code="forbidden")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise ValidationError("The URL has an invalid port.", code="port") from exc
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise ValidationError("%(host)s does not resolve.", params={"host": host},
                              code="dns") from exc
    addresses = []
    for info in infos:
        address = ipaddress.ip_address(info[4][0].split("%", 1)[0])
        reason = _refusal(address, allow_loopback)
        if reason:
            raise ValidationError(
                "%(host)s resolves to %(address)s, %(reason)s; webhooks must point to the "
                "public internet.",
                params={"host": host, "address": address, "reason": reason},
                code="forbidden",
            )
        addresses.append(str(address))
    return list(dict.fromkeys(addresses))


def validate_webhook_url(url: str, *, allow_loopback: bool | None = None) -> None:
    resolve_safe_addresses(url, allow_loopback=allow_loopback)
