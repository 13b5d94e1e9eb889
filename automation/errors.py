"""How a job's failure is classified: retry it, or fail the run at once."""

import socket

import redis
import urllib3.exceptions


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
    """The job's params do not validate; carries the per-field messages."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        self.errors = errors
        detail = "; ".join(f"{field}: {' '.join(msgs)}" for field, msgs in errors.items())
        super().__init__(f"invalid params: {detail}")


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


def is_retryable(exc: BaseException) -> bool:
    if isinstance(exc, PermanentJobError):
        return False
    return isinstance(exc, RETRYABLE_EXCEPTIONS)


def is_retryable_status(status: int) -> bool:
    """HTTP statuses worth another attempt: rate limits and server errors."""
    return status == 429 or status >= 500
