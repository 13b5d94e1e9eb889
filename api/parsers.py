"""The API's JSON parser: bounded size and depth, finite numbers, text without control
characters.

Python's json recurses once per nesting level and raises RecursionError near 1000 levels,
so depth is measured first, without recursion, by a scan of the brackets outside strings;
json only ever parses what is within API_MAX_JSON_DEPTH. Every text in the parsed body,
names included, is then checked as automation.input_limits defines text: no NUL (which
PostgreSQL refuses) nor other control character, and no unpaired surrogate (which no UTF-8
column can store); the 400 names where each one is.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import IO, Any

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import QueryDict
from rest_framework.exceptions import ParseError, ValidationError
from rest_framework.parsers import JSONParser

from automation.input_limits import check_text

from .errors import RequestTooLarge, too_large_detail

# A string (escapes skipped; an unterminated one runs to the end) or a bracket. Written
# so that no input makes the regex backtrack.
_TOKEN = re.compile(r'"[^"\\]*(?:\\.?[^"\\]*)*"?|[\[\]{}]', re.DOTALL)
_SURROGATE = re.compile("[\ud800-\udfff]")
MAX_INT = 2**63 - 1  # no field takes more, and PostgreSQL's bigint holds no more
MAX_REPORTED = 10  # text problems named in one answer


def nesting_exceeds(text: str, limit: int) -> bool:
    """Whether the JSON text opens more than `limit` arrays or objects inside each other."""
    if text.count("[") + text.count("{") <= limit:
        return False  # the usual body: no need to tell brackets in strings apart
    depth = 0
    for token in _TOKEN.finditer(text):
        char = text[token.start()]
        if char in "[{":
            depth += 1
            if depth > limit:
                return True
        elif char in "]}":
            depth -= 1
    return False


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]} is out of range")
    return value


def _bounded_int(text: str) -> int:
    digits = text.lstrip("-")
    if len(digits) > 19 or int(digits) > MAX_INT:  # length first: int() of 5000 digits fails
        raise ValueError(f"integer {text[:24]}{'…' if len(text) > 24 else ''} is out of "
                         "range (at most 64 bits)")
    return int(text)


def _strict_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def _printable(text: str) -> str:
    return text if text.isprintable() else ascii(text)[1:-1]


def text_problem(value: str, label: str) -> str | None:
    """Why `value` is not acceptable text, or None."""
    try:
        check_text(value, label=label)
    except DjangoValidationError as exc:
        return exc.messages[0]
    surrogate = _SURROGATE.search(value)
    if surrogate:
        return (f"{label} contains an unpaired surrogate (U+{ord(surrogate.group()):04X}) "
                f"at position {surrogate.start()}, which is not text.")
    return None


def json_texts(data: Any, path: str = "") -> Iterator[tuple[str, str, str]]:
    """(where, label, text) of every string in parsed JSON, names included; no recursion."""
    pending: list[tuple[Any, str]] = [(data, path)]
    while pending:
        item, where = pending.pop()
        if isinstance(item, str):
            yield where or "non_field_errors", where or "the body", item
        elif isinstance(item, Mapping):
            for key, value in item.items():
                child = f"{where}.{_printable(key)}" if where else _printable(key)
                yield child, f"the name {child}", key
                pending.append((value, child))
        elif isinstance(item, list):
            pending.extend((value, f"{where}[{index}]") for index, value in enumerate(item))


def query_texts(query: QueryDict) -> Iterator[tuple[str, str, str]]:
    """(where, label, text) of every name and value of a query string."""
    for name, values in query.lists():
        where = _printable(name)
        yield where, f"the name {where}", name
        yield from ((where, where, value) for value in values)


def text_errors(texts: Iterable[tuple[str, str, str]]) -> dict[str, list[str]]:
    """Messages per place for the texts that are not acceptable text."""
    errors: dict[str, list[str]] = {}
    for where, label, text in texts:
        problem = text_problem(text, label)
        if problem:
            errors.setdefault(where, []).append(problem)
            if len(errors) >= MAX_REPORTED:
                break
    return errors


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
        depth = settings.API_MAX_JSON_DEPTH
        too_deep = f"JSON parse error - nested more than {depth} levels deep."
        if nesting_exceeds(text, depth):
            raise ParseError(too_deep)
        try:
            data = json.loads(text, parse_float=_finite_float, parse_int=_bounded_int,
                              parse_constant=_strict_constant)
        except RecursionError:  # only if the depth limit is set beyond what Python allows
            raise ParseError(too_deep) from None
        except ValueError as exc:
            raise ParseError(f"JSON parse error - {exc}") from None
        errors = text_errors(json_texts(data))
        if errors:
            raise ValidationError(errors)
        return data
