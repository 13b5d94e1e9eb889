"""The outbound-URL guard: every hostile URL form is refused at save and at call.

Each case is tried against the guard, against the model validation of a tenant's webhook
and Slack URL, and against every caller with the URL already stored (written past
validation, or an operator's setting): the webhook health check, the Slack escalation
(community and platform URL), the platform alert and the push provider. The resolver is
the test's own (a hostile name answers the case's addresses; no real DNS is asked) and
every `connect()` is recorded: a refused URL must cause none. Connects that would stay on
this machine (loopback, 0.0.0.0) really happen, to a listener on 127.0.0.1 and ::1 at the
cases' port, so a guard letting one through would also show there; other addresses are
never dialled.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.db import transaction

from automation.errors import PermanentJobError, RetryableJobError
from automation.outbound_urls import OutboundURLRefused, address_refusal, check_url
from communities.models import Community, Member, Post
from integrations.delivery import DeliveryRefused, post_signed
from integrations.jobs.webhook_health_monitor import webhook_health_monitor
from integrations.models import Webhook
from moderation.jobs.moderation_sla_checker import moderation_sla_checker
from moderation.models import Escalation, Flag, ModerationPolicy, Severity
from monitoring.notify import Notice, deliver
from notifications.delivery import deliver_pending
from notifications.models import Channel, Notification, PushDevice

from ..servers import HttpServer, Receiver

HOSTILE = "hook.hostile.test"  # answers the case's addresses
PUBLIC = "hooks.public.test"
PUBLIC_ADDRESS = "93.184.215.14"
SLOT = datetime(2026, 7, 1, 16, 0, tzinfo=UTC)


# --- the network as the test sees it -------------------------------------------------


def _stays_local(host: str) -> bool:
    """Addresses a connect() would reach on this machine: let those really happen."""
    address = ipaddress.ip_address(host.split("%", 1)[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return address.is_loopback or address.is_unspecified


@dataclass
class FakeNetwork:
    """A resolver table, and a record of every name looked up and every connect()."""

    answers: dict[str, list[list[str]]] = field(default_factory=dict)
    lookups: list[str] = field(default_factory=list)
    connects: list[tuple] = field(default_factory=list)

    def answer(self, name: str, *addresses: str) -> None:
        self.answers[name] = [list(addresses)]

    def answer_in_turn(self, name: str, *answers: list[str]) -> None:
        """Successive lookups get successive answers (the last repeats): DNS rebinding."""
        self.answers[name] = [list(a) for a in answers]

    def forget(self) -> None:
        """Back to the start, as a test of its own sees it: nothing asked, nothing dialled."""
        self.answers.clear()
        self.answer("localhost", "127.0.0.1", "::1")
        self.lookups.clear()
        self.connects.clear()


@pytest.fixture
def network(monkeypatch) -> FakeNetwork:
    net = FakeNetwork()
    net.forget()
    real_getaddrinfo = socket.getaddrinfo
    real_connect = socket.socket.connect

    def getaddrinfo(host: Any, port: Any, family: int = 0, type: int = 0, proto: int = 0,
                    flags: int = 0) -> list:
        name = host.decode() if isinstance(host, bytes) else str(host)
        try:
            ipaddress.ip_address(name)
        except ValueError:
            pass
        else:  # a literal: no lookup happens
            return real_getaddrinfo(host, port, family, type, proto, flags)
        net.lookups.append(name)
        answers = net.answers.get(name)
        if not answers:
            raise socket.gaierror(socket.EAI_NONAME, f"test resolver does not know {name}")
        addresses = answers.pop(0) if len(answers) > 1 else answers[0]
        return [(socket.AF_INET6, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (a, port, 0, 0))
                if ":" in a else
                (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (a, port))
                for a in addresses]

    def connect(sock: socket.socket, address: Any) -> None:
        net.connects.append(address)
        if _stays_local(address[0]):
            return real_connect(sock, address)
        raise ConnectionRefusedError(f"test network: {address[0]} is not dialled")

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", connect)
    return net


class LoopbackListener:
    """TCP listeners on 127.0.0.1 and ::1 at one port, counting what they accept."""

    def __init__(self) -> None:
        self.accepted = 0
        self._stop = threading.Event()
        for _ in range(20):
            v4 = socket.socket(socket.AF_INET)
            v4.bind(("127.0.0.1", 0))
            self.port = v4.getsockname()[1]
            v6 = socket.socket(socket.AF_INET6)
            v6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                v6.bind(("::1", self.port))
            except OSError:
                v4.close()
                v6.close()
                continue
            break
        else:
            raise RuntimeError("no port free on both 127.0.0.1 and ::1")
        self._sockets = [v4, v6]
        self._threads = [threading.Thread(target=self._serve, args=(s,), daemon=True)
                         for s in self._sockets]
        for sock, thread in zip(self._sockets, self._threads, strict=True):
            sock.listen(16)
            sock.settimeout(0.1)
            thread.start()

    def _serve(self, sock: socket.socket) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()
        for sock in self._sockets:
            sock.close()


@pytest.fixture(scope="module")
def listener() -> Iterator[LoopbackListener]:
    server = LoopbackListener()
    yield server
    server.close()


# --- the table -------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    id: str
    url: str  # "{port}" is the listener's port, "{host}" the hostile name
    reason: str  # a fragment of the refusal message
    resolves_to: tuple[str, ...] = ()  # what the hostile name answers
    loopback: bool = False  # a plain loopback address, which the allowance lets through


def case(id: str, url: str, reason: str, *resolves_to: str, loopback: bool = False) -> Any:
    return pytest.param(Case(id, url, reason, resolves_to, loopback), id=id)


def via_name(id: str, address: str, reason: str) -> Any:
    return case(id, "http://{host}:{port}/hook", reason, address)


CASES = [
    # Shared address space (carrier-grade NAT), the first finding.
    case("shared-literal", "http://100.64.0.1:{port}/hook", "a shared (carrier-grade NAT)"),
    via_name("shared-top", "100.127.255.254", "a shared (carrier-grade NAT)"),
    via_name("alibaba-metadata", "100.100.100.200", "a cloud metadata address"),
    # 6to4 embedding loopback and metadata, the second finding; 6to4 is refused outright.
    via_name("6to4-loopback", "2002:7f00:0001::", "a 6to4 address (2002::/16) embedding "
                                                   "127.0.0.1"),
    case("6to4-metadata-literal", "http://[2002:a9fe:a9fe::1]:{port}/hook",
         "a 6to4 address (2002::/16) embedding 169.254.169.254"),
    via_name("6to4-relay-v4", "192.88.99.1", "a 6to4 relay address"),
    # NAT64 is judged by the IPv4 address it carries; its local-use prefix is refused.
    case("nat64-loopback-literal", "http://[64:ff9b::127.0.0.1]:{port}/hook",
         "a NAT64 address (64:ff9b::/96) of 127.0.0.1, a loopback address"),
    via_name("nat64-metadata", "64:ff9b::a9fe:a9fe", "of 169.254.169.254, a cloud metadata"),
    via_name("nat64-private", "64:ff9b::10.0.0.1", "of 10.0.0.1, a private address"),
    via_name("nat64-shared", "64:ff9b::100.64.0.1", "of 100.64.0.1, a shared"),
    via_name("nat64-local-use", "64:ff9b:1:a00:0:100::",
             "a local-use NAT64 address (64:ff9b:1::/48) embedding 10.0.0.1"),
    # IPv4-mapped (judged by the IPv4), -compatible and -translated (refused outright).
    case("mapped-loopback-literal", "http://[::ffff:127.0.0.1]:{port}/hook",
         "an IPv4-mapped address (::ffff:0:0/96) of 127.0.0.1, a loopback address"),
    via_name("mapped-metadata", "::ffff:169.254.169.254", "of 169.254.169.254, a cloud metadata"),
    via_name("mapped-private", "::ffff:192.168.1.1", "of 192.168.1.1, a private address"),
    via_name("mapped-unspecified", "::ffff:0.0.0.0", "of 0.0.0.0, an unspecified address"),
    case("compatible-loopback-literal", "http://[::127.0.0.1]:{port}/hook",
         "an IPv4-compatible address (::/96) embedding 127.0.0.1"),
    via_name("translated-metadata", "::ffff:0:a9fe:a9fe",
             "an IPv4-translated address (::ffff:0:0:0/96) embedding 169.254.169.254"),
    # Teredo: server and de-obfuscated client are named; refused outright.
    via_name("teredo-private-client", "2001:0:4136:e378:8000:63bf:f5ff:fffe",
             "a Teredo address (2001::/32) embedding 65.54.227.120, 10.0.0.1"),
    via_name("teredo-loopback-server", "2001:0:7f00:1::", "a Teredo address (2001::/32) "
                                                          "embedding 127.0.0.1"),
    # IPv4 special-purpose blocks.
    case("unspecified-v4", "http://0.0.0.0:{port}/hook", "an unspecified address"),
    via_name("this-network", "0.1.2.3", "an unspecified address (0.0.0.0/8)"),
    case("ietf-protocol", "http://192.0.0.8:{port}/hook", "an IETF protocol address"),
    via_name("oracle-metadata", "192.0.0.192", "a cloud metadata address"),
    case("documentation-1", "http://192.0.2.1:{port}/hook", "a documentation address"),
    via_name("documentation-2", "198.51.100.7", "a documentation address"),
    via_name("documentation-3", "203.0.113.9", "a documentation address"),
    case("benchmarking", "http://198.18.0.1:{port}/hook", "a benchmarking address"),
    case("reserved", "http://240.0.0.1:{port}/hook", "a reserved address"),
    case("broadcast", "http://255.255.255.255:{port}/hook", "the broadcast address"),
    via_name("multicast-local", "224.0.0.251", "a multicast address"),
    via_name("multicast-global", "224.0.1.1", "a multicast address"),  # is_global says True
    case("private-10", "http://10.1.2.3:{port}/hook", "a private address (10.0.0.0/8)"),
    via_name("private-172-low", "172.16.0.1", "a private address (172.16.0.0/12)"),
    via_name("private-172-high", "172.31.255.254", "a private address (172.16.0.0/12)"),
    case("private-192-168", "http://192.168.0.1:{port}/hook", "a private address"),
    case("metadata-v4", "http://169.254.169.254:{port}/latest", "a cloud metadata address"),
    via_name("link-local-v4", "169.254.1.1", "a link-local address"),
    # IPv6 special-purpose blocks.
    case("unspecified-v6", "http://[::]:{port}/hook", "an unspecified address (::/128)"),
    via_name("unique-local", "fc00::1", "a private address (fc00::/7)"),
    via_name("metadata-v6", "fd00:ec2::254", "a cloud metadata address"),
    case("link-local-v6", "http://[fe80::1]:{port}/hook", "a link-local address"),
    via_name("site-local", "fec0::1", "a site-local address"),
    via_name("multicast-v6-link", "ff02::1", "a multicast address"),
    via_name("multicast-v6-global", "ff0e::1", "a multicast address"),  # is_global says True
    case("documentation-v6", "http://[2001:db8::1]:{port}/hook", "a documentation address"),
    via_name("documentation-v6-new", "3fff::1", "a documentation address"),
    via_name("ietf-protocol-v6", "2001:2::1", "an IETF protocol address"),
    via_name("discard-only", "100::1", "a discard-only address"),
    via_name("srv6", "5f00::1", "an SRv6 segment address"),
    via_name("unassigned-v6", "4000::1", "an unassigned address"),
    # One bad answer among good ones is enough.
    case("mixed-answers", "http://{host}:{port}/hook", "a private address",
         PUBLIC_ADDRESS, "10.0.0.1"),
    # Loopback as such: refused unless the allowance is on.
    case("loopback-literal", "http://127.0.0.1:{port}/hook", "a loopback address",
         loopback=True),
    case("loopback-other", "http://127.8.9.10:{port}/hook", "a loopback address",
         loopback=True),
    case("loopback-v6", "http://[::1]:{port}/hook", "a loopback address (::1/128)",
         loopback=True),
    case("localhost", "http://localhost:{port}/hook", "a loopback address", loopback=True),
    case("loopback-via-name", "http://{host}:{port}/hook", "a loopback address", "127.0.0.1",
         loopback=True),
    # Metadata hosts by name (refused before any lookup).
    case("gcp-metadata", "http://metadata.google.internal/computeMetadata/v1/",
         "a cloud metadata host"),
    case("gcp-metadata-short", "http://metadata/computeMetadata/v1/", "a cloud metadata host"),
    case("aws-instance-data", "http://instance-data.:{port}/latest", "a cloud metadata host"),
    # IPv4 in other notations: resolvers read them as 127.0.0.1 or 169.254.169.254.
    case("decimal", "http://2130706433:{port}/hook", "not a dotted-quad IPv4 address"),
    case("hex-parts", "http://0x7f.1:{port}/hook", "not a dotted-quad IPv4 address"),
    case("octal", "http://0177.0.0.1:{port}/hook", "not a dotted-quad IPv4 address"),
    case("short", "http://127.1:{port}/hook", "not a dotted-quad IPv4 address"),
    case("hex-whole", "http://0x7f000001:{port}/hook", "not a dotted-quad IPv4 address"),
    case("octal-metadata", "http://0251.0376.0251.0376/latest", "not a dotted-quad IPv4"),
    # URL tricks.
    case("zone-id", "http://[fe80::1%25lo]:{port}/hook", "zone identifiers are not allowed"),
    case("userinfo", "http://public.example@127.0.0.1:{port}/hook", "Credentials in the URL"),
    case("empty-userinfo", "http://@127.0.0.1:{port}/hook", "Credentials in the URL"),
    case("backslash", "http://127.0.0.1:{port}\\@hooks.public.test/hook", "a backslash"),
    case("tab-in-host", "http://127.0.0.1\t:{port}/hook", "whitespace, control characters"),
    case("ftp", "ftp://hooks.public.test/file", "Only http and https"),
    case("file", "file:///etc/passwd", "Only http and https"),
    case("gopher", "gopher://127.0.0.1:{port}/_stats", "Only http and https"),
    case("privileged-port", "http://hooks.public.test:22/", "Port 22 is not allowed"),
    case("port-zero", "http://hooks.public.test:0/", "Port 0 is not allowed"),
]


def _url(case: Case, listener: LoopbackListener, network: FakeNetwork) -> str:
    network.answer(PUBLIC, PUBLIC_ADDRESS)
    if case.resolves_to:
        network.answer(HOSTILE, *case.resolves_to)
    return case.url.format(host=HOSTILE, port=listener.port)


def test_the_table_is_large_and_covers_the_findings() -> None:
    """At least 40 forms, the tester's findings among them."""
    ids = {p.id for p in CASES}
    assert len(ids) == len(CASES) >= 40
    assert [c.id for c in FORMS] == [p.id for p in CASES]  # the looping tests try them all
    assert {"shared-literal", "shared-top", "6to4-loopback", "6to4-metadata-literal",
            "nat64-loopback-literal", "nat64-metadata", "mapped-loopback-literal",
            "compatible-loopback-literal", "teredo-private-client"} <= ids


# --- the guard -------------------------------------------------------------------------


@pytest.mark.parametrize("allow_loopback", [False, True], ids=["strict", "loopback-allowed"])
@pytest.mark.parametrize("case", CASES)
def test_guard_refuses(case: Case, allow_loopback: bool, network: FakeNetwork,
                       listener: LoopbackListener) -> None:
    """The guard refuses the form, says why, and opens no connection.

    With the loopback allowance on, only plain loopback addresses pass: never a form that
    embeds one.
    """
    url = _url(case, listener, network)
    if allow_loopback and case.loopback:
        assert check_url(url, allow_loopback=True).address in ("127.0.0.1", "127.8.9.10",
                                                                "::1")
        return
    with pytest.raises(OutboundURLRefused) as info:
        check_url(url, allow_loopback=allow_loopback)
    assert case.reason in " ".join(info.value.messages)
    assert network.connects == []


@pytest.mark.parametrize("address", [
    PUBLIC_ADDRESS, "8.8.8.8", "1.1.1.1", "100.63.255.255", "100.128.0.1", "172.32.0.1",
    "192.0.1.1", "192.169.0.1", "198.20.0.1", "223.255.255.254",
    "2606:2800:220:1:248:1893:25c8:1946", "2a00:1450:4001:82b::200e",
    "::ffff:93.184.215.14", "64:ff9b::93.184.215.14",
])
def test_guard_passes_global_addresses(address: str) -> None:
    """Globally routable addresses, including the edges of refused blocks, pass."""
    assert address_refusal(ipaddress.ip_address(address)) is None


def test_guard_returns_what_to_connect_to(network: FakeNetwork) -> None:
    """A public name resolves once; the target holds every address and the request line."""
    network.answer(PUBLIC, PUBLIC_ADDRESS, "2606:2800:220:1:248:1893:25c8:1946")
    target = check_url(f"https://{PUBLIC.upper()}.:8443/hooks/a?b=1#fragment")
    assert target.addresses == (PUBLIC_ADDRESS, "2606:2800:220:1:248:1893:25c8:1946")
    assert (target.host, target.port, target.request_target) == (PUBLIC, 8443, "/hooks/a?b=1")
    assert target.host_header == f"{PUBLIC}:8443"
    assert network.lookups == [PUBLIC]
    assert check_url("http://[2606:2800:220:1:248:1893:25c8:1946]/").host_header == (
        "[2606:2800:220:1:248:1893:25c8:1946]")


# --- every form, one test per layer --------------------------------------------------
#
# The save and call layers try all the forms in one test each: the per-test setup and
# teardown (database transaction, Redis flush, fixtures) cost more than the checks. Each
# form still runs as if alone: in a savepoint rolled back afterwards, against a forgotten
# network, and every problem of every form is collected, so one run names them all.


FORMS: list[Case] = [p.values[0] for p in CASES]


def each_form(network: FakeNetwork, listener: LoopbackListener,
              check: Callable[[Case, str], list[str]]) -> list[str]:
    """The problems `check(case, url)` finds with each form, each line naming its form."""
    failures: list[str] = []
    for case in FORMS:
        network.forget()
        url = _url(case, listener, network)
        try:
            with transaction.atomic():
                problems = check(case, url)
                transaction.set_rollback(True)
        except Exception as exc:  # one form's crash must not hide the other forms' results
            problems = [f"raised {type(exc).__name__}: {exc}"]
        where = f" ({HOSTILE} -> {', '.join(case.resolves_to)})" if case.resolves_to else ""
        failures.extend(f"{case.id} <{url}>{where}: {problem}" for problem in problems)
    return failures


def _report(failures: list[str]) -> str:
    return f"{len(failures)} problems among the {len(FORMS)} forms:\n" + "\n".join(failures)


# --- at save ---------------------------------------------------------------------------


def _refusal_of(error: ValidationError, field_name: str) -> str:
    return " ".join(error.message_dict[field_name]) if hasattr(error, "error_dict") else (
        " ".join(error.messages))


def _refused_at_save(case: Case, url: str, model: type, field_name: str, network: FakeNetwork,
                     **fields: Any) -> list[str]:
    """Model validation (admin forms) and save() both refuse `url`, and nothing is stored."""
    problems = []
    try:
        model(**fields, **{field_name: url}).full_clean()
    except ValidationError as exc:
        if case.reason not in (refusal := _refusal_of(exc, field_name)):
            problems.append(f"full_clean() refused it, but not for {case.reason!r}: {refusal}")
    else:
        problems.append("full_clean() accepted it")
    try:
        model.objects.create(**fields, **{field_name: url})
    except ValidationError as exc:
        if case.reason not in (refusal := " ".join(exc.messages)):
            problems.append(f"save() refused it, but not for {case.reason!r}: {refusal}")
    else:
        problems.append("save() accepted it")
    if model.objects.exists():
        problems.append(f"a {model.__name__} row was stored")
    if network.connects:
        problems.append(f"connects attempted: {network.connects}")
    return problems


def test_refused_when_a_webhook_is_saved(community: Community, settings, network: FakeNetwork,
                                         listener: LoopbackListener) -> None:
    """Model validation (admin forms) and save() both refuse the tenant's webhook URL."""
    settings.WEBHOOKS_ALLOW_LOOPBACK = False
    failures = each_form(network, listener, lambda case, url: _refused_at_save(
        case, url, Webhook, "url", network, community=community, name="hostile"))
    assert failures == [], _report(failures)


def test_refused_when_a_slack_url_is_saved(community: Community, settings,
                                           network: FakeNetwork,
                                           listener: LoopbackListener) -> None:
    """Model validation and save() both refuse the community's Trust & Safety Slack URL."""
    settings.WEBHOOKS_ALLOW_LOOPBACK = False
    failures = each_form(network, listener, lambda case, url: _refused_at_save(
        case, url, ModerationPolicy, "slack_webhook_url", network, community=community))
    assert failures == [], _report(failures)


# --- at call, with the URL already stored ----------------------------------------------
#
# A caller is set up once per test (the rows it needs, written past validation); the
# function it returns stores the URL and calls: it returns the error the call recorded.

Call = Callable[[str], str]
UNUSED_URL = f"https://{PUBLIC}/not-called"  # replaced before every call


def _breached_flag(community: Community) -> Flag:
    post = Post.objects.create(community=community, title="reported post")
    return Flag.objects.create(community=community, post=post, severity=Severity.CRITICAL,
                               reason="rule break", created_at=SLOT - timedelta(hours=2))


def _escalate(community: Community, flag: Flag) -> str:
    # Nothing is delivered, so the run fails or retries; the escalation row says why.
    with contextlib.suppress(PermanentJobError, RetryableJobError):
        moderation_sla_checker(community, SLOT, timeout_seconds=2)
    return Escalation.objects.get(flag=flag).error


def call_webhook(community: Community, settings) -> Call:
    """The health check of a webhook whose URL was written past validation."""
    [webhook] = Webhook.objects.bulk_create([Webhook(community=community, name="stored",
                                                     url=UNUSED_URL)])

    def call(url: str) -> str:
        Webhook.objects.filter(pk=webhook.pk).update(url=url)
        [outcome] = webhook_health_monitor(community, SLOT, timeout_seconds=2)["webhooks"]
        return outcome["error"]

    return call


def call_slack_community(community: Community, settings) -> Call:
    """An escalation to the community's Slack URL, written past validation."""
    settings.TRUST_SAFETY_SLACK_WEBHOOK_URL = ""
    [policy] = ModerationPolicy.objects.bulk_create([ModerationPolicy(
        community=community, slack_webhook_url=UNUSED_URL)])
    flag = _breached_flag(community)

    def call(url: str) -> str:
        ModerationPolicy.objects.filter(pk=policy.pk).update(slack_webhook_url=url)
        return _escalate(community, flag)

    return call


def call_slack_platform(community: Community, settings) -> Call:
    """An escalation to the operator's TRUST_SAFETY_SLACK_WEBHOOK_URL."""
    flag = _breached_flag(community)

    def call(url: str) -> str:
        settings.TRUST_SAFETY_SLACK_WEBHOOK_URL = url
        return _escalate(community, flag)

    return call


def call_alert(community: Community, settings) -> Call:
    """A platform alert to the operator's ALERT_SLACK_WEBHOOK_URL."""
    settings.ALERT_EMAILS = []
    settings.ALERT_HTTP_TIMEOUT_SECONDS = 2

    def call(url: str) -> str:
        settings.ALERT_SLACK_WEBHOOK_URL = url
        result = deliver([Notice("opened", "failure", "some_job", "", 1, "it broke")])
        assert result.slack is False, f"the alert went to Slack: {result}"
        return " ".join(result.errors)

    return call


def call_push(community: Community, settings) -> Call:
    """A push notification sent through the operator's PUSH_PROVIDER_URL."""
    member = Member.objects.create(community=community, email="ada@acme.example",
                                   display_name="Ada")
    PushDevice.objects.create(member=member, token="ada-phone-token")
    notification = Notification.objects.create(
        community=community, member=member, channel=Channel.PUSH, kind="test",
        dedup_key="outbound-guard", subject="hello", body="hello")

    def call(url: str) -> str:
        settings.PUSH_PROVIDER_URL = url
        deliver_pending(ids=[notification.pk])
        notification.refresh_from_db()
        assert notification.status != Notification.Status.SENT, "the push was sent"
        assert PushDevice.objects.get(member=member).is_active, "the device was deactivated"
        return notification.last_error

    return call


CALLERS = [pytest.param(f, id=f.__name__.removeprefix("call_")) for f in (
    call_webhook, call_slack_community, call_slack_platform, call_alert, call_push)]


@pytest.mark.parametrize("caller", CALLERS)
def test_refused_at_call_without_connecting(caller: Callable[..., Call], community: Community,
                                            settings, network: FakeNetwork,
                                            listener: LoopbackListener) -> None:
    """Every form, stored, is refused where it is used, and no connection is attempted."""
    settings.WEBHOOKS_ALLOW_LOOPBACK = False
    call = caller(community, settings)
    accepted_before = listener.accepted

    def check(case: Case, url: str) -> list[str]:
        accepted = listener.accepted
        error = call(url)
        problems = []
        if "refused" not in error and "not an http(s) URL" not in error:
            problems.append(f"not refused: {error!r}")
        elif case.reason not in error:
            problems.append(f"refused, but not for {case.reason!r}: {error!r}")
        if network.connects:
            problems.append(f"connects attempted: {network.connects}")
        if listener.accepted != accepted:
            problems.append(f"the loopback listener accepted {listener.accepted - accepted}")
        return problems

    failures = each_form(network, listener, check)
    assert failures == [], _report(failures)
    assert listener.accepted == accepted_before


@pytest.mark.parametrize("caller", CALLERS)
def test_a_global_address_is_called_at_that_address(caller: Callable[..., Call],
                                                    community: Community, settings,
                                                    network: FakeNetwork) -> None:
    """A public name passes, and the one connection goes to the address it resolved to."""
    network.answer(PUBLIC, PUBLIC_ADDRESS)
    error = caller(community, settings)(f"https://{PUBLIC}:8443/hook")
    assert "refused" not in error  # it got as far as the network
    assert network.connects[-1:] == [(PUBLIC_ADDRESS, 8443)]
    assert set(network.connects) == {(PUBLIC_ADDRESS, 8443)}


@pytest.fixture(scope="module")
def http_server() -> Iterator[HttpServer]:
    """One local HTTP server for the module: stopping one takes half a second."""
    server = HttpServer().start()
    yield server
    server.stop()


@pytest.fixture
def receiver(http_server: HttpServer) -> Receiver:
    """The module's server, its record emptied and its answers reset, for this test alone."""
    state = http_server.state
    state.requests = []
    state.status, state.delay, state.redirect_to, state.respond = 200, 0.0, None, None
    return state


@pytest.mark.parametrize("caller", CALLERS)
def test_the_checked_address_is_the_address_called(caller: Callable[..., Call],
                                                   community: Community, settings, receiver,
                                                   network: FakeNetwork) -> None:
    """A name looked up once: a second answer (DNS rebinding to 10.0.0.1) is never asked.

    The request reaches the local receiver under the URL's own Host.
    """
    settings.WEBHOOKS_ALLOW_LOOPBACK = True
    port = int(receiver.base_url.rsplit(":", 1)[1])
    receiver.status = 500  # every caller records a failure, which _escalate and co expect
    network.answer_in_turn("hooks.rebind.test", ["127.0.0.1"], ["10.0.0.1"])
    caller(community, settings)(f"http://hooks.rebind.test:{port}/hook")
    assert network.lookups.count("hooks.rebind.test") == 1
    assert {a[0] for a in network.connects} == {"127.0.0.1"}
    assert [r.headers["Host"] for r in receiver.requests] == [f"hooks.rebind.test:{port}"]


@pytest.mark.parametrize("caller", [p for p in CALLERS if p.id != "webhook"])
def test_redirects_are_not_followed(caller: Callable[..., Call], community: Community,
                                    settings, receiver, network: FakeNetwork) -> None:
    """Slack, alerts and push take a redirect as an answer, never as a place to go."""
    settings.WEBHOOKS_ALLOW_LOOPBACK = True
    receiver.redirect_to = "http://10.0.0.1/internal"
    caller(community, settings)(f"{receiver.base_url}/hook")
    assert len(receiver.requests) == 1
    assert all(a[0] == "127.0.0.1" for a in network.connects)


@pytest.mark.parametrize("case", [p for p in CASES if not p.values[0].loopback and (
    "{host}" in p.values[0].url or p.values[0].id.endswith("literal"))])
def test_webhook_redirect_to_a_hostile_address_is_refused(case: Case, settings, receiver,
                                                          network: FakeNetwork,
                                                          listener: LoopbackListener) -> None:
    """Webhooks follow redirects by checking each hop: a hostile hop is never dialled."""
    settings.WEBHOOKS_ALLOW_LOOPBACK = True
    receiver.redirect_to = _url(case, listener, network)
    with pytest.raises(DeliveryRefused) as info:
        post_signed(f"{receiver.base_url}/hook", {"type": "ping"}, secret="s", timeout=2)
    assert case.reason in str(info.value)
    assert len(receiver.requests) == 1
    assert all(a[0] == "127.0.0.1" for a in network.connects)
