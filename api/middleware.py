"""The API's outer boundary: the body's size, and JSON for the errors Django answers itself.

Under /api/ the body is read here, at most the limit, before any middleware, DRF or parser
touches it: a Content-Length over the limit is answered 413 without reading a byte, a
chunked body (no Content-Length; gunicorn decodes the chunks) is read up to one byte past
the limit, and a body shorter than its Content-Length is refused. What follows sees the
body already in memory. Errors that Django answers before or around DRF (a bad Host
header, an exception in a middleware) come back as HTML; here they become the API's JSON.
"""

from __future__ import annotations

from collections.abc import Callable
from io import BytesIO
from typing import IO

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.core.handlers.wsgi import LimitedStream
from django.http import HttpRequest, HttpResponse, JsonResponse

from .errors import error_body, status_code_name, too_large

API_PREFIX = "/api/"
# Headers of Django's own error answers that the JSON one keeps.
KEPT_HEADERS = ("Allow", "WWW-Authenticate", "Retry-After")


def body_limit() -> int:
    """The largest body the API reads: its own limit, or Django's if that is lower."""
    django_limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    limit = settings.API_MAX_BODY_BYTES
    return min(limit, django_limit) if django_limit is not None else limit


class ApiBoundaryMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not request.path_info.startswith(API_PREFIX):
            return self.get_response(request)
        refusal = read_body(request, body_limit())
        if refusal is not None:
            # Answered before CommonMiddleware, which would have set it.
            refusal["Content-Length"] = str(len(refusal.content))
            return refusal
        return as_json_error(self.get_response(request))


def read_body(request: HttpRequest, limit: int) -> JsonResponse | None:
    """Read the body into memory if it is within `limit`; else the error answer."""
    meta = request.META
    if "chunked" in meta.get("HTTP_TRANSFER_ENCODING", "").lower():
        # Django reads a body without Content-Length as empty; the server must have
        # decoded the chunks and mark the input as ending where the body ends.
        if not meta.get("wsgi.input_terminated"):
            return JsonResponse(error_body(
                "Send Content-Length: this server cannot read a chunked body.",
                "length_required"), status=411)
        data = read_at_most(meta["wsgi.input"], limit + 1)
        if len(data) > limit:
            return too_large(limit)
        meta["CONTENT_LENGTH"] = str(len(data))
        # The request built its stream from the Content-Length it saw (none): give it the
        # body that was read instead.
        request._stream = LimitedStream(BytesIO(data), len(data))
        return None
    declared = meta.get("CONTENT_LENGTH") or "0"
    if not (declared.isascii() and declared.isdigit()):
        return JsonResponse(error_body(f"Content-Length {declared[:40]!r} is not a number "
                                       "of bytes.", "bad_request"), status=400)
    if int(declared) > limit:
        return too_large(limit)
    try:
        body = request.body  # reads Content-Length bytes at most
    except RequestDataTooBig:
        return too_large(limit)
    if len(body) < int(declared):
        return JsonResponse(error_body(f"The body ended after {len(body)} of the {declared} "
                                       "bytes its Content-Length announced.", "bad_request"),
                            status=400)
    return None


def read_at_most(stream: IO[bytes], size: int) -> bytes:
    """Up to `size` bytes, however few a single read of the server's input returns."""
    chunks: list[bytes] = []
    left = size
    while left > 0:
        chunk = stream.read(left)
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def as_json_error(response: HttpResponse) -> HttpResponse:
    """An error answer that is not JSON (Django's own pages) as the API's JSON error."""
    content_type = response.get("Content-Type", "")
    if response.status_code < 400 or content_type.startswith("application/json"):
        return response
    answer = JsonResponse(error_body(response.reason_phrase, status_code_name(
        response.status_code)), status=response.status_code)
    for header in KEPT_HEADERS:
        if header in response:
            answer[header] = response[header]
    answer["Content-Length"] = str(len(answer.content))
    return answer
