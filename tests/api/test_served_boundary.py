"""The body limit as deployed: gunicorn in front, real sockets, chunked and lying lengths.

Django's test client hands the app a complete body; a real server hands it a socket. Here
the app runs under gunicorn (as in the Procfile) and requests are written byte by byte, so
what is proved is what a client on the network meets.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from automation.models import CommunityAutomationSetting
from communities.models import Community

from ..conftest import ROOT, _database_url
from .conftest import OPERATOR_TOKEN

LIMIT = 2_000
JOB = "/api/communities/acme/jobs/test_sleep"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def server(django_db_setup, django_db_blocker) -> Iterator[int]:
    """gunicorn serving the app against the test database; yields its port."""
    port = free_port()
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings",
           "DATABASE_URL": _database_url(), "CONN_MAX_AGE": "0",
           "AUTOMATION_API_TOKEN": OPERATOR_TOKEN, "API_MAX_BODY_BYTES": str(LIMIT)}
    (ROOT / "var").mkdir(exist_ok=True)
    log = open(ROOT / "var" / "test-gunicorn.log", "w")  # noqa: SIM115 - closed at teardown
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "config.wsgi", "--bind", f"127.0.0.1:{port}",
         "--workers", "1", "--timeout", "20"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while True:
        try:
            if exchange(port, b"GET /api/whoami HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")[0]:
                break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"gunicorn did not start: see {log.name}") from None
            time.sleep(0.1)
    yield port
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


def exchange(port: int, head: bytes, body: bytes = b"", *, close_after: bool = False
             ) -> tuple[int, dict]:
    """Write a raw request, optionally end our side, and read (status, JSON body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(head + body)
        if close_after:
            conn.shutdown(socket.SHUT_WR)
        response = http.client.HTTPResponse(conn)
        response.begin()
        payload = response.read()
    return response.status, json.loads(payload) if payload.strip() else {}


def request_head(method: str, path: str, **headers: str) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1",
             f"Authorization: Bearer {OPERATOR_TOKEN}", "Content-Type: application/json",
             *(f"{name.replace('_', '-')}: {value}" for name, value in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def chunks(body: bytes, size: int = 500) -> bytes:
    parts = [body[i:i + size] for i in range(0, len(body), size)]
    return b"".join(f"{len(part):x}\r\n".encode() + part + b"\r\n" for part in parts) + \
        b"0\r\n\r\n"


@pytest.fixture
def acme(transactional_db) -> Community:
    """Committed, so the server process sees it."""
    return Community.objects.create(name="Acme Makers", slug="acme", timezone="UTC")


def cron_of(community: Community) -> str:
    return CommunityAutomationSetting.objects.get(community=community,
                                                  job_name="test_sleep").cron_override


def test_a_chunked_body_within_the_limit_is_read(server: int, acme: Community) -> None:
    body = json.dumps({"cron_override": "7 * * * *"}).encode().ljust(LIMIT, b" ")
    status, answer = exchange(server, request_head("PATCH", JOB, Transfer_Encoding="chunked"),
                              chunks(body))
    assert status == 200, answer
    assert cron_of(acme) == "7 * * * *"


def test_a_chunked_body_over_the_limit_is_413(server: int, acme: Community) -> None:
    body = json.dumps({"cron_override": "7 * * * *"}).encode().ljust(LIMIT + 1, b" ")
    status, answer = exchange(server, request_head("PATCH", JOB, Transfer_Encoding="chunked"),
                              chunks(body))
    assert (status, answer["code"]) == (413, "too_large")
    assert cron_of(acme) == ""


def test_a_length_over_the_limit_is_413_before_the_body_is_sent(server: int,
                                                               acme: Community) -> None:
    """The answer comes without the server waiting for the 10 MB announced."""
    started = time.monotonic()
    status, answer = exchange(server, request_head("PATCH", JOB, Content_Length="10000000"),
                              b'{"cron_override": ')
    assert (status, answer["code"]) == (413, "too_large")
    assert time.monotonic() - started < 5


def test_a_body_shorter_than_its_length_is_400(server: int, acme: Community) -> None:
    body = json.dumps({"cron_override": "7 * * * *"}).encode()
    status, answer = exchange(server, request_head("PATCH", JOB, Content_Length=str(LIMIT)),
                              body, close_after=True)
    assert (status, answer["code"]) == (400, "bad_request")
    assert cron_of(acme) == ""


def test_a_body_longer_than_its_length_is_cut_at_the_length(server: int,
                                                            acme: Community) -> None:
    """What follows the announced length is never read as this request's body."""
    body = json.dumps({"cron_override": "7 * * * *"}).encode()
    status, answer = exchange(server, request_head("PATCH", JOB, Content_Length=str(len(body) - 2)),
                              body + b" " * 50_000)
    assert (status, answer["code"]) == (400, "parse_error")
    assert cron_of(acme) == ""
