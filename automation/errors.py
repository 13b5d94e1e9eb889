"""How a job's failure is classified: retry it, or fail the run at once."""

import socket

import kombu.exceptions
import redis
import urllib3.exceptions
from django.db import InterfaceError, OperationalError

from .input_limits import has_control_characters


class JobError(Exception):
    """Base class for errors a job raises on purpose."""


class RetryableJobError(JobError):
    """A transient failure (network, 5xx, rate limit): the run is retried with backoff."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentJobError(JobError):
    """A failure that another attempt cannot fix: the run fails at once."""


class InvalidJobParams(PermanentJobError):
    """The job's params do not validate; carries the per-field messages.

    Field names and messages are plain text without control characters: they are shown
    to whoever sent the params and stored on the run (PostgreSQL refuses NUL in text).
    """

    def __init__(self, errors: dict[str, list[str]]) -> None:
        self.errors = {_printable(str(field)): [_printable(str(msg)) for msg in msgs]
                       for field, msgs in errors.items()}
        detail = "; ".join(f"{field}: {' '.join(msgs)}" for field, msgs in self.errors.items())
        super().__init__(f"invalid params: {detail}")


def _printable(text: str) -> str:
    # A message may quote what was sent: escape, rather than carry, its control characters
    # and unpaired surrogates (which no UTF-8 column can store).
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    if not has_control_characters(text):
        return text
    return "".join(f"\\x{ord(c):02x}" if has_control_characters(c) else c for c in text)


RETRYABLE_EXCEPTIONS: tuple[type[BaseException], ...] = (
    RetryableJobError,
    ConnectionError,
    TimeoutError,
    socket.timeout,
    urllib3.exceptions.TimeoutError,
    urllib3.exceptions.ProtocolError,
    urllib3.exceptions.NewConnectionError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
)


# The platform's own infrastructure going away for a while: the database (connection lost,
# server restarting, a serialization failure or deadlock), Redis (locks, leases), the
# broker. Met by the execution path itself, or a database error met inside a job, a run is
# retried on a budget of its own (AUTOMATION_INFRA_MAX_RETRIES), not the job's, and its
# record is written only once the database is back. A job's own Redis or broker calls that
# fail are the job's retryable errors (RETRYABLE_EXCEPTIONS), on the job's budget.
DATABASE_EXCEPTIONS: tuple[type[BaseException], ...] = (OperationalError, InterfaceError)
INFRASTRUCTURE_EXCEPTIONS: tuple[type[BaseException], ...] = (
    *DATABASE_EXCEPTIONS,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    kombu.exceptions.OperationalError,
)


def is_database_error(exc: BaseException) -> bool:
    return isinstance(exc, DATABASE_EXCEPTIONS)


def is_retryable(exc: BaseException) -> bool:
    if isinstance(exc, PermanentJobError):
        return False
    return isinstance(exc, (*RETRYABLE_EXCEPTIONS, *INFRASTRUCTURE_EXCEPTIONS))


def is_retryable_status(status: int) -> bool:
    """HTTP statuses worth another attempt: rate limits and server errors."""
    return status == 429 or status >= 500
