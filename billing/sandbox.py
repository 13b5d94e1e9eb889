"""Local Stripe sandbox for tests and the demo. NOT used in production.

A small HTTP server that speaks the part of Stripe's API our billing code uses, so the real
`stripe` SDK can be pointed at it (settings.STRIPE_API_BASE):

- `POST /v1/invoices/{id}/pay` (form-encoded), answering a Stripe invoice object, or
  Stripe's error JSON: 402 `card_error`/`card_declined` with a `decline_code`, 400
  "Invoice is already paid", 500/503 in outage mode.
- Idempotency-Key replay as Stripe does it: the first execution's response is stored under
  the key and returned again (with `Idempotent-Replayed: true`) without a second charge; the
  same key with other parameters is refused (400 `idempotency_error`); a key still executing
  answers 409. Outage answers are not stored (the request never executed), so a retry with
  the same key executes once the outage is over.

Outcomes are configured per invoice (`StripeSandbox.configure`) or per customer
(`decline_customer`). Invoices nobody configured follow a naming convention, which is what
the demo relies on: an id containing "outage" answers 500, "insufficient" declines with
`insufficient_funds`, "decline" declines with `generic_decline`, anything else pays.

Run it standalone: `python -m billing.sandbox --port 8098 [--api-key sk_test_...]`; in
tests: `StripeSandbox().serve()` (a thread on a free port) and `.url` as the API base.
`sign_webhook_payload` signs a webhook body the way Stripe does (t=...,v1=HMAC-SHA256).
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

PAY_PATH = re.compile(r"^/v1/invoices/(?P<id>in_[A-Za-z0-9_-]{1,240})/pay$")
DECLINE_MESSAGES = {
    "generic_decline": "Your card was declined.",
    "insufficient_funds": "Your card has insufficient funds.",
    "lost_card": "Your card was declined.",
    "expired_card": "Your card has expired.",
}

Response = tuple[int, dict[str, str], bytes]


@dataclass
class SandboxInvoice:
    id: str
    amount_due: int = 0
    currency: str = "usd"
    customer: str = ""
    status: str = "open"
    outcome: str = "pay"  # pay | decline | error
    decline_code: str = "generic_decline"
    attempt_count: int = 0
    charge_id: str = ""
    payment_intent_id: str = ""
    paid_at: int | None = None


@dataclass(frozen=True)
class Charge:
    """One execution of a payment (a replay is not one)."""

    invoice_id: str
    idempotency_key: str
    charge_id: str
    amount: int
    succeeded: bool


@dataclass
class SandboxRequest:
    """A request as received; status and replayed are filled in once it is answered."""

    method: str
    path: str
    idempotency_key: str | None
    params: dict[str, str]
    status: int = 0
    replayed: bool = False


@dataclass
class _Stored:
    fingerprint: str
    status: int
    body: bytes


Outcome = tuple[int, bytes, bool]  # status, body, flag (replayed / store under the key)


def _error(status: int, type_: str, message: str, flag: bool = False, **extra: Any) -> Outcome:
    """Stripe's error JSON shape: {"error": {"type", "message", "code", ...}}."""
    body = {"error": {"type": type_, "message": message, **extra}}
    return status, json.dumps(body).encode(), flag


def _new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


@dataclass
class StripeSandbox:
    """State of the sandbox; every change goes through `lock` (handlers run in threads)."""

    api_key: str | None = None  # when set, requests must carry this bearer key
    invoices: dict[str, SandboxInvoice] = field(default_factory=dict)
    declining_customers: dict[str, str] = field(default_factory=dict)  # customer -> code
    outage_status: int | None = None  # 500 or 503: every request fails, nothing executes
    response_delay: float = 0.0  # pause after executing, before answering (a lost response)
    delay_once: bool = True  # the pause applies to the next execution only
    requests: list[SandboxRequest] = field(default_factory=list)
    charges: list[Charge] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _stored: dict[str, _Stored] = field(default_factory=dict, repr=False)
    _in_flight: set[str] = field(default_factory=set, repr=False)
    url: str = ""

    # --- configuration -----------------------------------------------------------------

    def configure(self, invoice_id: str, *, outcome: str | None = None,
                  decline_code: str | None = None, amount_due: int | None = None,
                  currency: str | None = None, customer: str | None = None,
                  status: str | None = None) -> SandboxInvoice:
        """Register an invoice or change how its next payment goes."""
        if outcome is not None and outcome not in ("pay", "decline", "error"):
            raise ValueError("outcome must be pay, decline or error")
        with self.lock:
            invoice = self.invoices.get(invoice_id) or self._by_convention(invoice_id)
            for name, value in (("outcome", outcome), ("decline_code", decline_code),
                                ("amount_due", amount_due), ("currency", currency),
                                ("customer", customer), ("status", status)):
                if value is not None:
                    setattr(invoice, name, value)
            self.invoices[invoice_id] = invoice
            return invoice

    def decline_customer(self, customer: str, decline_code: str = "generic_decline") -> None:
        with self.lock:
            self.declining_customers[customer] = decline_code

    # --- what happened -----------------------------------------------------------------

    def charges_for(self, invoice_id: str, *, succeeded: bool = True) -> int:
        """Executed payments of an invoice (successful ones unless succeeded=False)."""
        return sum(1 for c in self.charges
                   if c.invoice_id == invoice_id and (c.succeeded or not succeeded))

    def keys_for(self, invoice_id: str) -> list[str | None]:
        """Idempotency keys sent for an invoice's payment, in order (replays included)."""
        return [r.idempotency_key for r in self.requests if f"/{invoice_id}/" in r.path]

    # --- HTTP ----------------------------------------------------------------------------

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Response:
        lower = {k.lower(): v for k, v in headers.items()}
        key = lower.get("idempotency-key")
        try:
            params = dict(parse_qsl(body.decode(), keep_blank_values=True))
        except UnicodeDecodeError:
            params = {}
        request = SandboxRequest(method, path, key, params)
        with self.lock:
            self.requests.append(request)
        status, payload, replayed = self._answer(method, path, lower, key, params)
        request.status, request.replayed = status, replayed
        response_headers = {"Content-Type": "application/json",
                            "Request-Id": _new_id("req")}
        if key:
            response_headers["Idempotency-Key"] = key
        if replayed:
            response_headers["Idempotent-Replayed"] = "true"
        return status, response_headers, payload

    def _answer(self, method: str, path: str, headers: dict[str, str], key: str | None,
                params: dict[str, str]) -> Outcome:
        auth = headers.get("authorization", "")
        if not auth.startswith("Bearer ") or (
            self.api_key is not None and not hmac.compare_digest(auth[7:], self.api_key)
        ):
            return _error(401, "invalid_request_error", "Invalid API Key provided.")
        if self.outage_status:
            return _error(self.outage_status, "api_error", "The sandbox is in outage mode.")
        match = PAY_PATH.match(path)
        if method != "POST" or not match:
            return _error(404, "invalid_request_error",
                          f"Unrecognized request URL ({method}: {path}).")
        fingerprint = f"{method} {path} {json.dumps(params, sort_keys=True)}"
        if key:
            with self.lock:
                stored = self._stored.get(key)
                if stored is None and key in self._in_flight:
                    return _error(
                        409, "idempotency_error",
                        "There is currently another in-progress request using this "
                        "Stripe API key and idempotency key.")
                if stored is None:
                    self._in_flight.add(key)
            if stored is not None:
                if stored.fingerprint != fingerprint:
                    return _error(
                        400, "idempotency_error",
                        "Keys for idempotent requests can only be used with the same "
                        "parameters they were first used with.")
                return stored.status, stored.body, True
        try:
            status, body, store = self._pay(match["id"], key or "")
            if key and store:
                with self.lock:
                    self._stored[key] = _Stored(fingerprint, status, body)
        finally:
            if key:
                with self.lock:
                    self._in_flight.discard(key)
        with self.lock:
            delay = self.response_delay
            if self.delay_once:
                self.response_delay = 0.0
        if delay:
            time.sleep(delay)
        return status, body, False

    def _pay(self, invoice_id: str, key: str) -> Outcome:
        """Execute one payment; returns (status, body, store under the key)."""
        with self.lock:
            invoice = self.invoices.get(invoice_id)
            if invoice is None:
                invoice = self.invoices[invoice_id] = self._by_convention(invoice_id)
            if invoice.outcome == "error":
                # A server failure before execution: nothing charged, nothing stored.
                return _error(500, "api_error", "An unknown error occurred.")
            if invoice.status != "open":
                return _error(400, "invalid_request_error",
                              f"Invoice is already {invoice.status}.", True)
            invoice.attempt_count += 1
            charge_id = _new_id("ch")
            invoice.payment_intent_id = invoice.payment_intent_id or _new_id("pi")
            decline_code = (self.declining_customers.get(invoice.customer)
                            if invoice.customer else None)
            if decline_code is None and invoice.outcome == "decline":
                decline_code = invoice.decline_code
            self.charges.append(Charge(invoice_id, key, charge_id, invoice.amount_due,
                                       succeeded=decline_code is None))
            if decline_code is not None:
                message = DECLINE_MESSAGES.get(decline_code, "Your card was declined.")
                return _error(
                    402, "card_error", message, True,
                    code="card_declined", decline_code=decline_code, charge=charge_id,
                    payment_intent={"id": invoice.payment_intent_id,
                                    "object": "payment_intent",
                                    "status": "requires_payment_method"},
                    doc_url="https://stripe.com/docs/error-codes/card-declined")
            invoice.status = "paid"
            invoice.charge_id = charge_id
            invoice.paid_at = int(time.time())
            return 200, json.dumps(self._invoice_object(invoice)).encode(), True

    @staticmethod
    def _by_convention(invoice_id: str) -> SandboxInvoice:
        invoice = SandboxInvoice(id=invoice_id)
        if "outage" in invoice_id:
            invoice.outcome = "error"
        elif "insufficient" in invoice_id:
            invoice.outcome, invoice.decline_code = "decline", "insufficient_funds"
        elif "decline" in invoice_id:
            invoice.outcome = "decline"
        return invoice

    @staticmethod
    def _invoice_object(invoice: SandboxInvoice) -> dict[str, Any]:
        paid = invoice.status == "paid"
        return {
            "id": invoice.id, "object": "invoice", "livemode": False,
            "customer": invoice.customer or None, "status": invoice.status,
            "amount_due": invoice.amount_due,
            "amount_paid": invoice.amount_due if paid else 0,
            "amount_remaining": 0 if paid else invoice.amount_due,
            "currency": invoice.currency, "attempted": invoice.attempt_count > 0,
            "attempt_count": invoice.attempt_count, "paid": paid,
            "charge": invoice.charge_id or None,
            "payment_intent": invoice.payment_intent_id or None,
            "status_transitions": {"paid_at": invoice.paid_at},
        }

    def serve(self, port: int = 0, host: str = "127.0.0.1", log: bool = False) -> SandboxServer:
        """Start answering on host:port (0: a free port) in a daemon thread."""
        return SandboxServer(self, host, port, log=log).start()


class SandboxServer:
    def __init__(self, sandbox: StripeSandbox, host: str, port: int, log: bool = False) -> None:
        self.sandbox = sandbox

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out as separate writes

            def handle_any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                status, headers, payload = sandbox.handle(self.command, self.path,
                                                          dict(self.headers), body)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                try:
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up waiting (a timeout test): the answer is lost

            do_GET = do_POST = do_DELETE = handle_any

            def log_message(self, format: str, *args: Any) -> None:
                if log:  # the standalone sandbox logs each request; tests stay quiet
                    super().log_message(format, *args)

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://{host}:{self.httpd.server_address[1]}"
        sandbox.url = self.url
        # A short poll keeps stop() quick (tests start and stop one sandbox each).
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,),
                                       daemon=True, name="stripe-sandbox")

    def start(self) -> SandboxServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def sign_webhook_payload(payload: bytes, secret: str, timestamp: int) -> str:
    """The Stripe-Signature header Stripe would send for this body: t=...,v1=HMAC-SHA256."""
    signed = f"{timestamp}.".encode() + payload
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m billing.sandbox",
        description="Local Stripe sandbox for tests and the demo (never for production).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8098)
    parser.add_argument("--api-key", default=None,
                        help="refuse requests not carrying this secret key (default: any)")
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error("--port must be between 0 and 65535")
    server = StripeSandbox(api_key=args.api_key).serve(args.port, args.host, log=True)
    print(f"Stripe sandbox listening on {server.url} (point STRIPE_API_BASE at it)",
          flush=True)
    try:
        server.thread.join()
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
