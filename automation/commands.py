"""What the project's management commands share: arguments checked where they enter, and
failures reported as one line on stderr with exit code 1, never a traceback.

Each `check_*` function takes a raw argument and returns it parsed, or raises CommandError
with a message naming the option (Django prints it as one line and exits 1). What the
checks miss, `OperatorCommand.execute` still turns into one line; `--traceback` shows the
whole trace instead.
"""

from __future__ import annotations

import json
import math
import re
import sys
from datetime import UTC, datetime
from typing import Any, NoReturn

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from communities.lookup import CommunityNotFound, find_community
from communities.models import Community

from .errors import InvalidJobParams
from .input_limits import check_date, check_text
from .registry import JobSpec, UnknownJob, get_job

# Bytes of the command line that are not UTF-8 reach Python as lone surrogates
# (surrogateescape); no database column or output stream can hold them.
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_MESSAGE_LIMIT = 500


def one_line(text: str) -> str:
    """`text` on one line: whitespace runs collapsed, control characters escaped, cut short."""
    text = " ".join(text.split())
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return text if len(text) <= _MESSAGE_LIMIT else text[:_MESSAGE_LIMIT - 1] + "…"


class OperatorCommand(BaseCommand):
    """A project command: an unexpected exception becomes one line and exit code 1.

    A usage error stays argparse's (the usage, then one line, exit code 2), with the
    arguments it quotes escaped. Run from the command line, an unexpected error prints
    `error: <type>: <message>; run again with --traceback for details`; through
    call_command it raises CommandError with that message (chained to the original).
    With --traceback the original propagates, so Django shows the full trace. Ctrl-C
    stops a command quietly with exit code 130.
    """

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        usage_error = parser.error

        def error(message: str) -> NoReturn:
            # argparse quotes arguments as typed, newlines and terminal escapes included.
            usage_error(one_line(message))

        parser.error = error  # type: ignore[method-assign]
        return parser

    def execute(self, *args: Any, **options: Any) -> str | None:
        try:
            return super().execute(*args, **options)
        except CommandError:
            raise
        except KeyboardInterrupt:
            if options.get("traceback") or not self._called_from_command_line:
                raise
            self.stderr.write("interrupted")
            sys.exit(130)
        except Exception as exc:
            if options.get("traceback"):
                raise
            detail = one_line(str(exc))
            message = (f"{type(exc).__name__}{': ' + detail if detail else ''}; "
                       "run again with --traceback for details")
            if self._called_from_command_line:
                self.stderr.write(f"error: {message}")
                sys.exit(1)
            raise CommandError(message) from exc


def _refusal(exc: ValidationError) -> CommandError:
    return CommandError(" ".join(exc.messages))


def check_argument_text(value: str, option: str) -> str:
    """`value` if it is text a database can store: no control characters, valid UTF-8."""
    try:
        check_text(value, label=option)
    except ValidationError as exc:
        raise _refusal(exc) from None
    if _SURROGATE.search(value):
        raise CommandError(f"{option} is not valid UTF-8 text")
    return value


def check_instant(value: str, option: str) -> datetime:
    """An ISO 8601 instant with an offset, within the platform's range both as written
    and in UTC."""
    text = check_argument_text(value, option).strip()
    try:
        moment = parse_datetime(text)
    except ValueError as exc:  # well-formed but not a real date: 2026-13-45
        raise CommandError(f"{option} {text!r} is not a valid date and time: {exc}") from None
    if moment is None or timezone.is_naive(moment):
        raise CommandError(f"{option} must be an ISO 8601 instant with offset, e.g. "
                           f"2026-01-05T00:00:00+00:00, not {text!r}")
    try:
        # As written first: far outside the range, converting to UTC would overflow.
        check_date(moment, label=option)
        check_date(moment.astimezone(UTC), label=f"{option} (in UTC)")
    except ValidationError as exc:
        raise _refusal(exc) from None
    return moment


def check_integer(value: int, option: str, *, minimum: int, maximum: int) -> int:
    if not minimum <= value <= maximum:
        raise CommandError(f"{option} must be ≥ {minimum} and ≤ {maximum}")
    return value


def check_number(value: float, option: str, *, above: float, maximum: float) -> float:
    if not (math.isfinite(value) and above < value <= maximum):
        raise CommandError(f"{option} must be a number > {above} and ≤ {maximum}")
    return value


def check_community(reference: str, option: str = "--community") -> Community:
    """The community with this id or slug, or CommandError "no community with ..."."""
    try:
        return find_community(check_argument_text(reference, option))
    except CommunityNotFound as exc:
        raise CommandError(str(exc)) from None


def check_job(name: str, option: str = "job") -> JobSpec:
    """The registered job of this name, or CommandError "unknown job ... (registered: ...)"."""
    try:
        return get_job(check_argument_text(name, option))
    except UnknownJob as exc:
        raise CommandError(str(exc)) from None


def check_job_params(spec: JobSpec, text: str, option: str = "--params") -> dict[str, Any]:
    """A JSON object of params that the job's form accepts (`JobSpec.clean_params`).

    Returned as parsed, not as cleaned: the run path (automation.runs.run_params) cleans
    them again merged over the community's stored params and stores that cleaned form,
    and an explicit null, which cleaning drops, must reach it to override a stored value.
    """
    try:
        params = json.loads(check_argument_text(text, option))
    except ValueError as exc:
        raise CommandError(f"{option} is not valid JSON: {exc}") from None
    except RecursionError:
        raise CommandError(f"{option} is nested too deeply") from None
    if not isinstance(params, dict):
        raise CommandError(f"{option} must be a JSON object, e.g. '{{\"key\": 1}}', "
                           f"not {type(params).__name__}")
    try:
        spec.clean_params(params, partial=True, defaults=False)
    except InvalidJobParams as exc:
        raise CommandError(str(exc)) from None
    return params
