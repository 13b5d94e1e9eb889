"""A real local HTTP server that plays a tenant's webhook endpoint."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


@dataclass
class Receiver:
    base_url: str
    requests: list[dict] = field(default_factory=list)
    status: int = 200
    delay: float = 0.0
    redirect_to: str | None = None


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver(base_url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            state.requests.append({"path": self.path, "headers": dict(self.headers),
                                   "body": body})
            time.sleep(state.delay)
            if state.redirect_to:
                self.send_response(307)
                self.send_header("Location", state.redirect_to)
            else:
                self.send_response(state.status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()
