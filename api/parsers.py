"""The API's JSON parser: bounded size, then automation.bounded_json's bounds (depth,
finite numbers, 64-bit integers, text without control characters or unpaired surrogates);
the 400 names where each problem is.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import IO, Any

from django.conf import settings
from django.http import QueryDict
from rest_framework.exceptions import ParseError, ValidationError
from rest_framework.parsers import JSONParser

from automation.bounded_json import JSONRefused, json_texts, loads, printable, text_errors

from .errors import RequestTooLarge, too_large_detail


def query_texts(query: QueryDict) -> Iterator[tuple[str, str, str]]:
    """(where, label, text) of every name and value of a query string."""
    for name, values in query.lists():
        where = printable(name)
        yield where, f"the name {where}", name
        yield from ((where, where, value) for value in values)


class BoundedJSONParser(JSONParser):
    """DRF's JSON parser with the limits above; the same errors, as 400 or 413."""

    def parse(self, stream: IO[bytes] | None, media_type: str | None = None,
              parser_context: Mapping[str, Any] | None = None) -> Any:
        limit = settings.API_MAX_BODY_BYTES
        # api.middleware has bounded the body already; this holds without it too.
        raw = stream.read(limit + 1) if stream is not None else b""
        if len(raw) > limit:
            raise RequestTooLarge(too_large_detail(limit))
        encoding = (parser_context or {}).get("encoding") or settings.DEFAULT_CHARSET
        try:
            text = raw.decode(encoding)
        except (UnicodeDecodeError, LookupError) as exc:
            raise ParseError(f"JSON parse error - the body is not {encoding} text "
                             f"({exc.reason if isinstance(exc, UnicodeDecodeError) else exc})."
                             ) from None
        try:
            data = loads(text, max_depth=settings.API_MAX_JSON_DEPTH)
        except JSONRefused as exc:
            raise ParseError(f"JSON parse error - {exc}") from None
        errors = text_errors(json_texts(data))
        if errors:
            raise ValidationError(errors)
        return data
