"""The email channel: batches over one SMTP connection, bounce classification, suppression.

A batch opens Django's mail connection once and sends each message over it separately,
so one recipient's refusal is that message's outcome and the batch goes on. A server
that cannot be reached at all raises SmtpUnavailable (retryable): nothing was sent, and
the caller leaves its work for the next attempt.
"""

from __future__ import annotations

import contextlib
import smtplib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.mail import EmailMessage, get_connection
from django.utils import timezone

from automation.errors import RetryableJobError
from communities.models import Community, Member

from .models import EmailBounce, EmailSuppression

SENT = "sent"
HARD_BOUNCE = "hard_bounce"
SOFT_BOUNCE = "soft_bounce"
FAILED = "failed"  # refused for another reason (e.g. content rejected at DATA)


class SmtpUnavailable(RetryableJobError):
    """The SMTP server could not be reached or dropped the connection for good."""


@dataclass(frozen=True)
class SendResult:
    outcome: str  # SENT, HARD_BOUNCE, SOFT_BOUNCE or FAILED
    latency_ms: float
    smtp_code: int | None = None
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.outcome == SENT

    @property
    def bounced(self) -> bool:
        return self.outcome in (HARD_BOUNCE, SOFT_BOUNCE)

    @property
    def retryable(self) -> bool:
        """Another attempt later may succeed (soft bounce, 4xx at DATA)."""
        return self.outcome == SOFT_BOUNCE or (
            self.outcome == FAILED and self.smtp_code is not None and 400 <= self.smtp_code < 500
        )


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _server_label() -> str:
    return f"{settings.EMAIL_HOST}:{settings.EMAIL_PORT}"


def classify_smtp_error(exc: smtplib.SMTPException, latency_ms: float) -> SendResult:
    """Map a per-message SMTP exception to an outcome (connection loss is handled apart)."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        # One recipient per message, so the first refusal is the answer for this message.
        code, reply = next(iter(exc.recipients.values()), (None, b""))
        message = f"{code} {_text(reply)}".strip()
        if isinstance(code, int) and 500 <= code < 600:
            return SendResult(HARD_BOUNCE, latency_ms, code, message)
        return SendResult(SOFT_BOUNCE, latency_ms, code if isinstance(code, int) else None,
                          message)
    if isinstance(exc, smtplib.SMTPResponseException):
        return SendResult(FAILED, latency_ms, exc.smtp_code,
                          f"{exc.smtp_code} {_text(exc.smtp_error)}")
    return SendResult(FAILED, latency_ms, None, f"{type(exc).__name__}: {exc}")


class EmailBatch:
    """One SMTP connection reused for a batch of messages.

    Use as a context manager; `send(message)` returns a SendResult and never raises for a
    single recipient's refusal. If the connection drops mid-batch it is reopened once; if
    that fails too, SmtpUnavailable is raised.
    """

    def __init__(self) -> None:
        self.connection = get_connection(fail_silently=False)
        self.opened = False
        self.sent = 0

    def __enter__(self) -> EmailBatch:
        self._open()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _open(self) -> None:
        try:
            self.connection.open()
        except (OSError, smtplib.SMTPException) as exc:
            raise SmtpUnavailable(
                f"SMTP server {_server_label()} unavailable: {type(exc).__name__}: {exc}"
            ) from exc
        self.opened = True

    def close(self) -> None:
        if not self.opened:
            return
        self.opened = False
        # Closing a connection the server already dropped may fail; it is gone either way.
        with contextlib.suppress(OSError, smtplib.SMTPException):
            self.connection.close()

    def send(self, message: EmailMessage) -> SendResult:
        message.connection = self.connection
        for attempt in (1, 2):
            started = time.monotonic()
            try:
                self.connection.send_messages([message])
            except (smtplib.SMTPServerDisconnected, ConnectionError, TimeoutError) as exc:
                # The connection is gone, not the recipient: reconnect once and resend.
                self.close()
                if attempt == 2:
                    raise SmtpUnavailable(
                        f"SMTP server {_server_label()} dropped the connection: {exc}"
                    ) from exc
                self._open()
                continue
            except smtplib.SMTPException as exc:
                return classify_smtp_error(exc, (time.monotonic() - started) * 1000)
            self.sent += 1
            return SendResult(SENT, (time.monotonic() - started) * 1000)
        raise AssertionError("unreachable")  # pragma: no cover


# --- suppression and bounces --------------------------------------------------------


def normalise(email: str) -> str:
    return email.strip().lower()


def suppressed_among(emails: Iterable[str]) -> set[str]:
    """The lower-cased addresses among `emails` that no mail may go to."""
    wanted = {normalise(e) for e in emails if e}
    if not wanted:
        return set()
    return set(EmailSuppression.objects.filter(email__in=wanted).values_list("email", flat=True))


def is_suppressed(email: str) -> bool:
    return bool(suppressed_among([email]))


def record_bounce(community: Community, member: Member | None, email: str, result: SendResult,
                  *, source: str, clock: Callable[[], datetime] = timezone.now) -> EmailBounce:
    """Record a bounce; a hard one also suppresses the address from now on."""
    at = clock()
    kind = EmailBounce.Kind.HARD if result.outcome == HARD_BOUNCE else EmailBounce.Kind.SOFT
    bounce = EmailBounce.objects.create(
        community=community, member=member, email=normalise(email), kind=kind,
        smtp_code=result.smtp_code, message=result.error[:2000], source=source[:64],
        occurred_at=at,
    )
    if kind == EmailBounce.Kind.HARD:
        EmailSuppression.objects.get_or_create(
            email=normalise(email),
            defaults={"reason": EmailSuppression.Reason.HARD_BOUNCE, "community": community,
                      "bounce": bounce, "detail": result.error[:2000], "created_at": at},
        )
    return bounce
