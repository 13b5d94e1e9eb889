"""docker-compose.yml publishes the web app only: every other port is bound to 127.0.0.1."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PUBLIC = {"web"}  # the product itself; everything else is for the operators on the host
LOOPBACK = {"127.0.0.1", "::1", "[::1]"}


def _host_ip(port: str | int | dict[str, Any]) -> str:
    """The host address a compose port entry binds; "" means every interface.

    Short syntax is `[HOST_IP:][HOST_PORT:]CONTAINER_PORT[/PROTOCOL]`; long syntax a mapping
    with `host_ip`.
    """
    if isinstance(port, dict):
        return str(port.get("host_ip", ""))
    parts = str(port).split("/", 1)[0].rsplit(":", 2)
    return parts[0] if len(parts) == 3 else ""


def _published(compose: dict[str, Any]) -> dict[str, list[str | int | dict[str, Any]]]:
    return {name: service.get("ports", []) for name, service in compose["services"].items()
            if service.get("ports")}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_only_the_web_app_listens_on_every_interface(compose) -> None:
    """Flower, Prometheus, Grafana and RabbitMQ's management UI: this host only."""
    published = _published(compose)
    assert set(published) >= PUBLIC
    exposed = {f"{name}: {port}" for name, ports in published.items() if name not in PUBLIC
               for port in ports if _host_ip(port) not in LOOPBACK}
    assert not exposed
    # The ones an operator expects to reach on the host are there, on loopback.
    assert {"flower", "prometheus", "grafana", "rabbitmq"} <= set(published)
    assert published["flower"] == ["127.0.0.1:5555:5555"]


def test_data_stores_and_the_broker_are_not_published(compose) -> None:
    """PostgreSQL, Redis and AMQP are reached over the compose network only."""
    published = _published(compose)
    assert "postgres" not in published and "redis" not in published
    # RabbitMQ: its management UI only, not AMQP (5672).
    assert published["rabbitmq"] == ["127.0.0.1:15672:15672"]


def test_flower_never_starts_without_basic_auth(compose) -> None:
    """Compose refuses to start (`:?`) rather than serve Flower's UI without a password."""
    flower = compose["services"]["flower"]["environment"]
    assert flower["FLOWER_BASIC_AUTH"].startswith("${FLOWER_BASIC_AUTH:?")


@pytest.mark.parametrize(("port", "host"), [
    ("5555:5555", ""), ("5555", ""), ("0.0.0.0:5555:5555", "0.0.0.0"),
    ("127.0.0.1:5555:5555", "127.0.0.1"), ("127.0.0.1:5555:5555/tcp", "127.0.0.1"),
    ("[::1]:5555:5555", "[::1]"), (5555, ""),
    ({"target": 5555, "published": 5555}, ""),
    ({"target": 5555, "published": 5555, "host_ip": "127.0.0.1"}, "127.0.0.1"),
])
def test_port_entries_are_read_as_compose_reads_them(port, host: str) -> None:
    assert _host_ip(port) == host
