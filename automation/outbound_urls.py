"""The outbound-URL guard: every URL a tenant or an operator configures is checked here.

A URL passes when its scheme is http(s), it carries no credentials, its host is a name or
a canonical IP literal, its port is 80, 443 or unprivileged, and every address the host
resolves to is globally routable (`address_refusal`). The caller then connects to the
address that was checked (`OutboundTarget.pool`), so a second DNS answer cannot send it
elsewhere, and it follows no redirect it has not checked the same way.

`settings.WEBHOOKS_ALLOW_LOOPBACK` (development, tests, the demo) lets 127.0.0.0/8 and ::1
through as they are, never an IPv6 form embedding a loopback address: the local receivers
those runs use are reached by the plain address, so nothing needs the embedded forms.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

import urllib3
from django.conf import settings
from django.core.exceptions import ValidationError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

DEFAULT_PORTS = {"http": 80, "https": 443}
METADATA_ADDRESSES = frozenset(ipaddress.ip_address(a) for a in (
    "169.254.169.254", "fd00:ec2::254", "100.100.100.200", "192.0.0.192"))
METADATA_HOSTNAMES = frozenset({"metadata.google.internal", "metadata.goog", "metadata",
                                "instance-data", "instance-data.ec2.internal"})

# Our own table rather than only `is_global`: the stdlib's answer changed between patch
# releases (3.11.7 calls 100.64.0.0/10's neighbours, 6to4, NAT64 and ::/96 global), and the
# guard must not move with the interpreter. `is_global` is still consulted as a backstop.
# First match names the reason (IANA special-purpose address registries).
_IPV4_REFUSED = tuple((ipaddress.IPv4Network(net), reason) for net, reason in (
    ("255.255.255.255/32", "the broadcast address"),
    ("0.0.0.0/8", "an unspecified address"),
    ("10.0.0.0/8", "a private address"),
    ("100.64.0.0/10", "a shared (carrier-grade NAT) address"),
    ("127.0.0.0/8", "a loopback address"),
    ("169.254.0.0/16", "a link-local address"),
    ("172.16.0.0/12", "a private address"),
    ("192.0.0.0/24", "an IETF protocol address"),
    ("192.0.2.0/24", "a documentation address"),
    ("192.88.99.0/24", "a 6to4 relay address"),
    ("192.168.0.0/16", "a private address"),
    ("198.18.0.0/15", "a benchmarking address"),
    ("198.51.100.0/24", "a documentation address"),
    ("203.0.113.0/24", "a documentation address"),
    ("224.0.0.0/4", "a multicast address"),
    ("240.0.0.0/4", "a reserved address"),
))
# IPv6 forms whose traffic goes to the IPv4 address in their last 32 bits: judged by it.
_IPV4_CARRIERS = tuple((ipaddress.IPv6Network(net), form) for net, form in (
    ("::ffff:0:0/96", "an IPv4-mapped address"),
    ("64:ff9b::/96", "a NAT64 address"),
))
# Refused whatever they embed: tunnelling and translation forms that are deprecated or
# local (no webhook host publishes them), plus the non-routable special-purpose blocks.
_IPV6_REFUSED = tuple((ipaddress.IPv6Network(net), reason) for net, reason in (
    ("::/128", "an unspecified address"),
    ("::1/128", "a loopback address"),
    ("::ffff:0:0:0/96", "an IPv4-translated address"),
    ("::/96", "an IPv4-compatible address"),
    ("64:ff9b:1::/48", "a local-use NAT64 address"),
    ("100::/64", "a discard-only address"),
    ("2001::/32", "a Teredo address"),
    ("2001::/23", "an IETF protocol address"),
    ("2001:db8::/32", "a documentation address"),
    ("2002::/16", "a 6to4 address"),
    ("3fff::/20", "a documentation address"),
    ("5f00::/16", "an SRv6 segment address"),
    ("fc00::/7", "a private address"),
    ("fe80::/10", "a link-local address"),
    ("fec0::/10", "a site-local address"),
    ("ff00::/8", "a multicast address"),
))
_IPV6_GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")
_LOCAL_USE_NAT64 = ipaddress.IPv6Network("64:ff9b:1::/48")
_LITERAL_LOOPBACK = (ipaddress.IPv4Network("127.0.0.0/8"), ipaddress.IPv6Network("::1/128"))

# Parsers disagree on these (urlsplit drops tabs and newlines, browsers read "\" as "/"),
# so a URL holding one may mean a different host to someone else.
_AMBIGUOUS_CHARACTERS = re.compile(r"[\x00-\x20\x7f\\]")
# WHATWG's "ends in a number": such a host is an IPv4 address in some notation
# (2130706433, 0x7f.1, 0177.0.0.1, 127.1) that resolvers read differently.
_NUMERIC_LABEL = re.compile(r"[0-9]+|0x[0-9a-f]*")


class OutboundURLRefused(ValidationError):
    """The URL, or an address its host resolves to, may not be connected to."""


def _embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses a tunnelling or translation form carries (for the message)."""
    if address.teredo:
        return list(address.teredo)  # server, then the de-obfuscated client
    if address.sixtofour:
        return [address.sixtofour]
    value = int(address)
    if address in _LOCAL_USE_NAT64:
        # RFC 6052 /48 layout: bits 48-63 and 72-87, around the zero u-octet.
        return [ipaddress.IPv4Address(((value >> 64) & 0xFFFF) << 16 | (value >> 40) & 0xFFFF)]
    if value >> 32 in (0, 0xFFFF0000) and value > 1:  # ::/96 and ::ffff:0:0:0/96
        return [ipaddress.IPv4Address(value & 0xFFFFFFFF)]
    return []


def _ipv6_refusal(address: ipaddress.IPv6Address) -> str | None:
    for network, form in _IPV4_CARRIERS:
        if address in network:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
            reason = address_refusal(embedded)
            return f"{form} ({network}) of {embedded}, {reason}" if reason else None
    for network, reason in _IPV6_REFUSED:
        if address in network:
            carried = ", ".join(str(a) for a in _embedded_ipv4(address))
            return f"{reason} ({network})" + (f" embedding {carried}" if carried else "")
    if address not in _IPV6_GLOBAL_UNICAST:
        return f"an unassigned address (outside {_IPV6_GLOBAL_UNICAST})"
    return None


def address_refusal(address: IPAddress, *, allow_loopback: bool = False) -> str | None:
    """Why `address` may not be connected to, or None when it may.

    `allow_loopback` lets 127.0.0.0/8 and ::1 through, and nothing that merely embeds them.
    """
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if allow_loopback and any(address in network for network in _LITERAL_LOOPBACK):
        return None
    if isinstance(address, ipaddress.IPv4Address):
        reason = next((f"{reason} ({network})" for network, reason in _IPV4_REFUSED
                       if address in network), None)
    else:
        reason = _ipv6_refusal(address)
        if reason is None and any(address in network for network, _ in _IPV4_CARRIERS):
            return None  # judged by the IPv4 address it carries, which passed
    if reason is None and (not address.is_global or address.is_multicast):
        reason = "not a globally routable address"
    return reason


@dataclass(frozen=True)
class OutboundTarget:
    """A checked URL: where to connect (`address`) and what to ask for there."""

    scheme: str
    host: str  # ASCII host name or IP literal, no brackets: Host header, SNI, certificate
    port: int
    addresses: tuple[str, ...]  # every address the host resolved to, all allowed
    request_target: str  # path and query

    @property
    def address(self) -> str:
        return self.addresses[0]

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == DEFAULT_PORTS[self.scheme] else f"{host}:{self.port}"

    def pool(self, timeout: urllib3.Timeout) -> urllib3.HTTPConnectionPool:
        """A one-connection pool to the checked address; urllib3 never resolves the name."""
        common = {"port": self.port, "timeout": timeout, "retries": False, "maxsize": 1}
        if self.scheme == "https":
            # The checked address, with SNI and certificate checked for the URL's name.
            return urllib3.HTTPSConnectionPool(self.address, server_hostname=self.host,
                                               assert_hostname=self.host,
                                               cert_reqs="CERT_REQUIRED", **common)
        return urllib3.HTTPConnectionPool(self.address, **common)

    def post(self, pool: urllib3.HTTPConnectionPool, body: bytes,
             headers: dict[str, str]) -> urllib3.BaseHTTPResponse:
        """POST on `pool` with the URL's Host; a redirect is returned, never followed."""
        return pool.urlopen("POST", self.request_target, body=body, redirect=False,
                            assert_same_host=False,
                            headers={**headers, "Host": self.host_header})


def _refuse(message: str, code: str, **params: object) -> OutboundURLRefused:
    return OutboundURLRefused(message, code=code, params=params or None)


def _ascii_host(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, request target) of `url`, refusing every ambiguous form."""
    if _AMBIGUOUS_CHARACTERS.search(url):
        raise _refuse("The URL contains whitespace, control characters or a backslash.",
                      "characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise _refuse("The URL is malformed: %(error)s.", "invalid", error=exc) from exc
    if parts.scheme not in DEFAULT_PORTS:
        raise _refuse("Only http and https URLs are allowed.", "scheme")
    if "@" in parts.netloc:
        raise _refuse("Credentials in the URL are not allowed.", "credentials")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise _refuse("The URL has no host.", "host")
    if "%" in host:
        raise _refuse("IPv6 zone identifiers are not allowed.", "zone")
    if ":" not in host:
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise _refuse("%(host)s is not a valid host name.", "host", host=host) from exc
        if _NUMERIC_LABEL.fullmatch(host.rsplit(".", 1)[-1]):
            try:
                ipaddress.IPv4Address(host)
            except ValueError as exc:
                raise _refuse("%(host)s is not a dotted-quad IPv4 address; write the address "
                              "as a.b.c.d.", "numeric_host", host=host) from exc
    if host in METADATA_HOSTNAMES:
        raise _refuse("%(host)s is a cloud metadata host.", "forbidden", host=host)
    if port is None:
        port = DEFAULT_PORTS[parts.scheme]
    elif port not in (80, 443) and not 1024 <= port <= 65535:
        # Below 1024 live SSH, SMTP, DNS and the like; an HTTP endpoint has no business there.
        raise _refuse("Port %(port)s is not allowed: use 80, 443 or 1024-65535.", "port",
                      port=port)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.scheme, host, port, target


def check_url(url: str, *, allow_loopback: bool | None = None) -> OutboundTarget:
    """Check `url` and resolve its host once; raises OutboundURLRefused.

    Every address the host resolves to must pass `address_refusal`, so whichever one the
    caller connects to was checked. `allow_loopback` defaults to WEBHOOKS_ALLOW_LOOPBACK.
    """
    if allow_loopback is None:
        allow_loopback = settings.WEBHOOKS_ALLOW_LOOPBACK
    scheme, host, port, target = _ascii_host(url)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise _refuse("%(host)s does not resolve.", "dns", host=host) from exc
    addresses: list[str] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        reason = address_refusal(address, allow_loopback=allow_loopback)
        if reason:
            raise _refuse("%(host)s resolves to %(address)s, %(reason)s; outbound URLs must "
                          "point to the public internet.", "forbidden",
                          host=host, address=address, reason=reason)
        addresses.append(str(address))
    if not addresses:
        raise _refuse("%(host)s does not resolve.", "dns", host=host)
    return OutboundTarget(scheme, host, port, tuple(dict.fromkeys(addresses)), target)


def validate_outbound_url(url: str) -> None:
    """Form and model validator: the URL passes the guard (resolved now)."""
    check_url(url)
