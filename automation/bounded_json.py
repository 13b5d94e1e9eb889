"""JSON from outside, parsed within bounds: the API's bodies, Stripe's events, admin fields.

Python's json recurses once per nesting level and raises RecursionError near 1000 levels,
so depth is measured first, without recursion, by a scan of the brackets outside strings;
json only ever parses what is within the limit. Numbers must be finite and integers fit in
64 bits (PostgreSQL's bigint, and every field's bounds). Text is checked afterwards, by
`text_errors`, as automation.input_limits defines it, plus no unpaired surrogate (which no
UTF-8 column can store).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from .input_limits import check_text

# A string (escapes skipped; an unterminated one runs to the end) or a bracket. Written
# so that no input makes the regex backtrack.
_TOKEN = re.compile(r'"[^"\\]*(?:\\.?[^"\\]*)*"?|[\[\]{}]', re.DOTALL)
_SURROGATE = re.compile("[\ud800-\udfff]")
MAX_INT = 2**63 - 1
MAX_REPORTED = 10  # text problems named in one answer


class JSONRefused(ValueError):
    """The text is not JSON within the bounds; the message says why, for a person."""


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
        raise JSONRefused(f"number {text[:40]} is out of range")
    return value


def _bounded_int(text: str) -> int:
    digits = text.lstrip("-")
    if len(digits) > 19 or int(digits) > MAX_INT:  # length first: int() of 5000 digits fails
        raise JSONRefused(f"integer {text[:24]}{'…' if len(text) > 24 else ''} is out of "
                          "range (at most 64 bits)")
    return int(text)


def _strict_constant(name: str) -> None:
    raise JSONRefused(f"{name} is not valid JSON")


def loads(text: str, *, max_depth: int, bound_ints: bool = True) -> Any:
    """The JSON value of `text`, or JSONRefused: never RecursionError, NaN or infinity.

    `bound_ints=False` leaves integers whole, for a caller that checks each field's range
    itself and names the field (an integer of thousands of digits is still refused).
    """
    too_deep = f"nested more than {max_depth} levels deep"
    if nesting_exceeds(text, max_depth):
        raise JSONRefused(too_deep)
    try:
        return json.loads(text, parse_float=_finite_float,
                          parse_int=_bounded_int if bound_ints else int,
                          parse_constant=_strict_constant)
    except RecursionError:  # only if the limit is set beyond what Python allows
        raise JSONRefused(too_deep) from None
    except JSONRefused:
        raise
    except ValueError as exc:
        raise JSONRefused(str(exc)[:200]) from None


def printable(text: str) -> str:
    return text if text.isprintable() else ascii(text)[1:-1]


def text_problem(value: str, label: str) -> str | None:
    """Why `value` is not acceptable text, or None."""
    try:
        check_text(value, label=label)
    except ValidationError as exc:
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
                child = f"{where}.{printable(key)}" if where else printable(key)
                yield child, f"the name {child}", key
                pending.append((value, child))
        elif isinstance(item, list):
            pending.extend((value, f"{where}[{index}]") for index, value in enumerate(item))


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


class BoundedJSONFormField(forms.JSONField):
    """Django's JSON form field (admin) with the bounds above: a form error, never a 500."""

    max_depth = 16

    def to_python(self, value: Any) -> Any:
        if self.disabled or not isinstance(value, str) or value in self.empty_values:
            return super().to_python(value)
        try:
            data = loads(value, max_depth=self.max_depth)
        except JSONRefused as exc:
            raise ValidationError("Enter valid JSON: %(reason)s.", code="invalid",
                                  params={"reason": str(exc)}) from None
        problems = text_errors(json_texts(data))
        if problems:
            raise ValidationError([msg for msgs in problems.values() for msg in msgs],
                                  code="invalid")
        return data

    def bound_data(self, data: Any, initial: Any) -> Any:
        # Re-showing the form with its error parses the input again: within bounds too.
        if self.disabled or not isinstance(data, str):
            return super().bound_data(data, initial)
        try:
            return loads(data, max_depth=self.max_depth)
        except JSONRefused:
            return forms.fields.InvalidJSONInput(data)
