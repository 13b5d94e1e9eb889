"""A job's params as its form cleans them: the one boundary for params from anywhere.

API bodies, admin fields, command lines and stored settings all reach a job through
`JobSpec.clean_params`, which is `clean_params` here with the job's form: values of the
wrong shape are refused before the form sees them, the form judges the rest, and what
comes back is JSON that cleans to itself again.
"""

from __future__ import annotations

import logging
import math
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any
from uuid import UUID

from django import forms
from django.core.exceptions import ValidationError

from .errors import InvalidJobParams
from .input_limits import check_date, check_text

logger = logging.getLogger(__name__)

# Limits on what any param may hold, whatever its form says: far above every real value
# (an invoice id, an ISO date, a dict of event weights), far below what makes parsing,
# storing or echoing it in a message costly.
MAX_PARAM_TEXT = 1_000
MAX_PARAM_ITEMS = 1_000  # values inside one structured (JSON) param, at every depth
MAX_PARAM_DEPTH = 8
MAX_PARAM_INT = 2**63 - 1  # float() of a longer int overflows; no field's bounds come near
FORM_FAILED = "the job's params form could not check this value"


def clean_params(form_class: type[forms.Form], params: Any, *, partial: bool = False,
                 defaults: bool = True, job_name: str = "") -> dict[str, Any]:
    """The params as the job's form cleans them, in their JSON form; else InvalidJobParams.

    Promises, for any value at all (what a JSON body, a command line or an admin field
    can hold, or anything else): the answer is a cleaned dict or InvalidJobParams whose
    field names and messages are plain text, never another exception. The cleaned dict
    is JSON-serialisable (dates and datetimes as ISO 8601 text, datetimes in UTC;
    Decimals and UUIDs as text) and is a fixed point: cleaning it again, with the same
    `partial` and `defaults`, gives the same dict. It is what callers store (a
    setting's params, a run's) and what the job function receives.

    Refused before the form sees them: a params value that is not a dict, names that
    are not text or not the form's fields, values of the wrong JSON type for their
    field, text with NUL or other control characters or longer than MAX_PARAM_TEXT,
    integers beyond 64 bits, non-finite numbers, deep or huge structures. Dates and
    datetimes the form cleans must lie in the platform's range (input_limits).

    `partial` validates only the params given: a community's stored defaults may leave
    out what each run must supply (an on-demand job's window, say); the full set is
    validated again when a run merges them. `defaults` adds the form's initial values
    for params not given (what a run uses); without it only the params given are
    returned (what a stored setting keeps). A param given empty (null, "", [], {}) is
    not given: it means the default. The form always judges the params with the
    defaults filled in, as a run will use them.
    """
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise InvalidJobParams({"__all__": [
            f"params must be a JSON object of name → value, not {_json_type(params)}"]})
    fields = form_class.base_fields
    initials = {name: fld.initial() if callable(fld.initial) else fld.initial
                for name, fld in fields.items()}
    given = {name for name, fld in fields.items()
             if name in params and params[name] not in fld.empty_values}
    # The form judges what a run will use: a param not given (or given empty) is its
    # default, so rules between params hold for the defaults too.
    data = {**params, **{name: initial for name, initial in initials.items()
                         if initial is not None and name not in given}}
    form = form_class(data=data)
    errors: dict[str, list[str]] = {}
    strange = [name for name in params if not isinstance(name, str)]
    unknown = [name for name in params
               if isinstance(name, str) and name not in form.fields]
    if strange:
        errors["__all__"] = ["param names must be text, not "
                             + ", ".join(sorted({_json_type(n) for n in strange}))]
    if unknown:
        errors.setdefault("__all__", []).append(f"unknown params: {_names(unknown)}")
    for name, fld in form.fields.items():
        if name in params:
            problem = _value_problem(name, fld, params[name])
            if problem:
                errors[name] = [problem]
    if set(errors) - {"__all__"}:
        # The form never sees a value of the wrong shape: its parsers assume text.
        raise InvalidJobParams(errors)

    if partial:
        for name, fld in form.fields.items():
            if name not in params:
                fld.required = False
    try:
        valid = form.is_valid()
    except (TypeError, ValueError, ArithmeticError, AttributeError, RecursionError) as exc:
        # A form that raises is a bug to fix in the form, but the sender still gets an
        # answer about their params, not a server error.
        failed = _failed_field(exc)
        logger.warning("job %s: params form raised %s on %s", job_name,
                       type(exc).__name__, failed, exc_info=True)
        errors.setdefault(failed, []).append(f"{FORM_FAILED} ({type(exc).__name__})")
        raise InvalidJobParams(errors) from exc
    if not valid:
        for name, msgs in form.errors.items():
            errors.setdefault(name, []).extend(msgs)
    for name, value in (form.cleaned_data.items() if valid else ()):
        # Every date a form lets through is in range, declared with a bounded field or
        # not: past it, a day's or a week's arithmetic overflows. A datetime is also
        # checked in UTC, the form it is returned in, so that it cleans the same again.
        if isinstance(value, date) and name not in errors:
            try:
                check_date(value, label=name)
                if isinstance(value, datetime) and value.utcoffset() is not None:
                    check_date(value.astimezone(UTC), label=f"{name} (in UTC)")
            except ValidationError as exc:
                errors[name] = exc.messages
    if errors:
        raise InvalidJobParams(errors)

    cleaned: dict[str, Any] = {}
    for name in form.fields:
        if name not in given and not (defaults and initials.get(name) is not None):
            continue
        value = form.cleaned_data.get(name)
        if value is None:
            continue
        try:
            cleaned[name] = _as_json(value)
        except TypeError:
            raise InvalidJobParams({name: [
                f"{name}: the form cleaned it to {type(value).__name__}, which cannot "
                "be stored as JSON"]}) from None
    return cleaned


def _accepted(fld: forms.Field) -> tuple[tuple[type, ...], str]:
    """The types a field's parser is written for (JSON's, and Python's own for dates given
    by code), and how to name them to a person."""
    if isinstance(fld, forms.BooleanField):
        return (bool,), "true or false"
    if isinstance(fld, forms.FloatField | forms.DecimalField):
        return (int, float, Decimal, str), "a number"
    if isinstance(fld, forms.IntegerField):
        return (int, float, str), "a whole number"
    if isinstance(fld, forms.DateTimeField):
        return (str, date), "an ISO 8601 datetime such as 2026-01-05T00:00:00Z"
    if isinstance(fld, forms.DateField):
        return (str, date), "an ISO 8601 date such as 2026-01-05"
    if isinstance(fld, forms.TimeField):
        return (str, time), "a time such as 13:30"
    if isinstance(fld, forms.JSONField):
        # Not text: the field would parse it as JSON a second time.
        return (dict, list, int, float, bool), "a JSON object, list or number"
    if isinstance(fld, forms.MultipleChoiceField):
        return (list,), "a list"
    if isinstance(fld, forms.ChoiceField):
        return (str, int, float), "one of its choices"
    if isinstance(fld, forms.CharField):
        return (str,), "text"
    return (str, int, float, bool), "a single value"


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float | Decimal):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return f"a {type(value).__name__}"


def _names(names: list[str], shown: int = 10) -> str:
    # Unknown names are echoed back, so long or unprintable ones are quoted and cut.
    listed = [name if name.isprintable() and len(name) <= 40 else ascii(name[:40])
              for name in sorted(names)[:shown]]
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(listed) + more


def _value_problem(name: str, fld: forms.Field, value: Any) -> str | None:
    """Why `value` cannot be handed to `fld` at all, or None; the form judges the rest."""
    if value is None:
        return None  # null means the default
    accepted, expected = _accepted(fld)
    if (isinstance(value, bool) and bool not in accepted) or not isinstance(value, accepted):
        return f"{name} must be {expected}, not {_json_type(value)}"
    budget = MAX_PARAM_ITEMS
    pending: list[tuple[Any, int]] = [(value, 0)]
    while pending:
        item, depth = pending.pop()
        budget -= 1
        if budget < 0:
            return f"{name} holds more than {MAX_PARAM_ITEMS} values"
        if isinstance(item, str):
            if len(item) > MAX_PARAM_TEXT:
                return f"{name} is longer than {MAX_PARAM_TEXT} characters"
            try:
                check_text(item, label=name)
                item.encode("utf-8")
            except ValidationError as exc:
                return exc.messages[0]
            except UnicodeEncodeError:
                return f"{name} holds an unpaired surrogate, which is not text"
        elif isinstance(item, bool) or item is None:
            continue
        elif isinstance(item, int):
            if abs(item) > MAX_PARAM_INT:
                bound = getattr(fld, "max_value" if item > 0 else "min_value", None)
                if depth == 0 and bound is not None:
                    return f"{name} must be {'at most' if item > 0 else 'at least'} {bound}"
                return f"{name} holds a number out of range"
        elif isinstance(item, float | Decimal):
            if not math.isfinite(item):
                return f"{name} must be a finite number"
        elif isinstance(item, list | tuple | dict):
            if depth >= MAX_PARAM_DEPTH:
                return f"{name} is nested more than {MAX_PARAM_DEPTH} levels deep"
            if isinstance(item, dict):
                if not all(isinstance(key, str) for key in item):
                    return f"{name}: names inside it must be text"
                pending.extend((key, depth + 1) for key in item)
                pending.extend((member, depth + 1) for member in item.values())
            else:
                pending.extend((member, depth + 1) for member in item)
        elif not isinstance(item, date | time):
            return f"{name} cannot be {_json_type(item)}"
    return None


def _failed_field(exc: BaseException) -> str:
    """The field whose cleaning raised `exc`, or "__all__" (the form's own clean)."""
    # Django's BaseForm._clean_fields holds the field it is cleaning in its local `name`;
    # should that change, the error is reported on the whole form instead.
    failed = "__all__"
    frame = exc.__traceback__
    while frame is not None:
        if frame.tb_frame.f_code.co_name == "_clean_fields":
            name = frame.tb_frame.f_locals.get("name")
            failed = name if isinstance(name, str) else failed
        frame = frame.tb_next
    return failed


def _as_json(value: Any) -> Any:
    """A cleaned value in the JSON form its field parses back to the same value."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return value
    if isinstance(value, str):
        return str(value)
    if isinstance(value, datetime):
        aware = value.utcoffset() is not None
        return (value.astimezone(UTC) if aware else value).isoformat()
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, Decimal | UUID):
        return str(value)
    if isinstance(value, list | tuple):
        return [_as_json(item) for item in value]
    if isinstance(value, dict) and all(isinstance(key, str) for key in value):
        return {key: _as_json(item) for key, item in value.items()}
    raise TypeError(f"{type(value).__name__} has no JSON form")
