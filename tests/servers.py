"""Local servers speaking the real protocols our jobs talk: SMTP, HTTP and S3."""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller

# --- SMTP ---------------------------------------------------------------------------


@dataclass
class ReceivedMail:
    peer: tuple
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    def part(self, content_type: str) -> str:
        for part in self.message.walk():
            if part.get_content_type() == content_type:
                return part.get_content()
        raise KeyError(content_type)


class SmtpHandler:
    """Accepts mail, except for addresses told to answer with an SMTP error."""

    def __init__(self) -> None:
        self.mails: list[ReceivedMail] = []
        # address -> SMTP reply, e.g. "550 5.1.1 mailbox unavailable" (hard bounce)
        # or "451 4.3.0 try again later" (soft bounce)
        self.reject: dict[str, str] = {}
        # Seconds each message takes to accept: a slow server, so a run can be hit mid-send.
        self.delay = 0.0
        self.lock = threading.Lock()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        reply = self.reject.get(address.lower())
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.delay:
            await asyncio.sleep(self.delay)
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.lock:
            self.mails.append(ReceivedMail(session.peer, envelope.mail_from,
                                           list(envelope.rcpt_tos), message))
        return "250 Message accepted for delivery"

    def to(self, address: str) -> list[ReceivedMail]:
        return [m for m in self.mails if address in m.rcpt_tos]

    @property
    def connections(self) -> int:
        """Distinct client connections that delivered mail (batches reuse one)."""
        return len({m.peer for m in self.mails})


class SmtpServer:
    def __init__(self) -> None:
        self.handler = SmtpHandler()
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=free_port())

    def start(self) -> SmtpServer:
        self.controller.start()
        return self

    @property
    def port(self) -> int:
        return self.controller.port

    def stop(self) -> None:
        self.controller.stop()


# --- HTTP ---------------------------------------------------------------------------


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


Responder = Callable[[Request], tuple[int, dict[str, str], bytes]]


@dataclass
class Receiver:
    """A programmable HTTP endpoint: records every request, answers as told.

    By default it answers `status` (after `delay`), or redirects to `redirect_to`; set
    `respond` to compute the answer per request.
    """

    base_url: str = ""
    requests: list[Request] = field(default_factory=list)
    status: int = 200
    delay: float = 0.0
    redirect_to: str | None = None
    respond: Responder | None = None

    def answer(self, request: Request) -> tuple[int, dict[str, str], bytes]:
        time.sleep(self.delay)
        if self.respond is not None:
            return self.respond(request)
        if self.redirect_to:
            return 307, {"Location": self.redirect_to}, b""
        return self.status, {}, b""


class HttpServer:
    def __init__(self, state: Receiver | None = None) -> None:
        self.state = state or Receiver()
        state = self.state

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def handle_any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                request = Request(self.command, self.path, dict(self.headers),
                                  self.rfile.read(length))
                state.requests.append(request)
                status, headers, body = state.answer(request)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_DELETE = handle_any

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        state.base_url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> HttpServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def json_response(status: int, payload: Any,
                  headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    return status, {"Content-Type": "application/json", **(headers or {})}, \
        json.dumps(payload).encode()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def closed_port_url() -> str:
    """A URL on which nothing listens: a service that is down."""
    return f"http://127.0.0.1:{free_port()}"
