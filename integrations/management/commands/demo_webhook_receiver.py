"""Local HTTP endpoints for the demo: tenant webhooks (healthy, slow, broken paths), the
Trust & Safety Slack webhook (/slack) and the push provider (/push)."""

import json
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from django.core.management.base import CommandError, CommandParser
from django.db import close_old_connections
from django.utils import timezone

from automation.commands import OperatorCommand, check_integer
from integrations.delivery import verify_signature
from integrations.models import Webhook

RESPONSES = {"/hooks/healthy": (200, 0.0), "/hooks/slow": (200, 1.5), "/hooks/broken": (500, 0.0)}
# Operator-configured services the demo points at this receiver; they are not signed.
SERVICE_PATHS = ("/slack", "/push")


class DemoReceiver(BaseHTTPRequestHandler):
    server_version = "DemoReceiver/1"

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path in SERVICE_PATHS:
            self._service(body)
            return
        status, pause = RESPONSES.get(self.path, (404, 0.0))
        verified = self._verified(body)
        if status == 200 and not verified:
            status = 401
        time.sleep(pause)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(json.dumps({"verified": verified}).encode())

    def _service(self, body: bytes) -> None:
        try:
            payload = json.loads(body)
        except ValueError:
            self.send_response(400)
            self.end_headers()
            return
        summary = payload.get("text") or payload.get("title") or ""
        self.server.command.stdout.write(f"receiver: {self.path} {str(summary)[:160]}")
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"ok": true}')

    def _verified(self, body: bytes) -> bool:
        close_old_connections()
        try:
            webhook_id = json.loads(body)["webhook_id"]
            secret = Webhook.objects.values_list("signing_secret", flat=True).get(pk=webhook_id)
        except (ValueError, KeyError, TypeError, Webhook.DoesNotExist):
            return False
        return verify_signature(
            secret, self.headers.get("X-Webhook-Signature", ""), body, now=timezone.now()
        )

    def log_message(self, format: str, *args) -> None:
        self.server.command.stdout.write(f"receiver: {self.address_string()} {format % args}")


class Command(OperatorCommand):
    help = "Serve the demo's webhook endpoints on 127.0.0.1 (verifies signatures)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=8099, help="1 to 65535")

    def handle(self, *args: Any, port: int, **options: Any) -> None:
        check_integer(port, "--port", minimum=1, maximum=65535)
        try:
            server = ThreadingHTTPServer(("127.0.0.1", port), DemoReceiver)
        except OSError as exc:  # in use, or a privileged port
            raise CommandError(f"cannot listen on 127.0.0.1:{port}: "
                               f"{exc.strerror or exc}") from None
        server.command = self
        self.stdout.write(f"demo webhook receiver on http://127.0.0.1:{port}/hooks/")
        try:
            server.serve_forever()
        finally:  # Ctrl-C included: the port is free again at once
            server.server_close()
