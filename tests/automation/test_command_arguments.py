"""Every management command the project ships answers any arguments without a traceback.

The commands are discovered (those whose module lives in one of the project's apps) and
each one's arguments are generated from its own parser (its options, choices and nargs),
so a new command or option is covered the day it is added. For text with NUL and other
control characters, dates from year 1 to 9999 and impossible ones, huge, negative and
non-finite numbers, JSON of the wrong shape, unknown slugs and job names, a command
succeeds (exit 0), refuses its usage (exit 2, argparse's usage line) or refuses the values
with one line on stderr (exit 1) that its own validation wrote — not the safety net,
which is tested on its own. Subprocess tests show the real CLI output for the cases a
tester reported.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from celery import Task
from django.apps import apps
from django.conf import settings
from django.core.management import call_command, get_commands, load_command_class
from django.core.management.base import BaseCommand, CommandError, CommandParser, OutputWrapper
from hypothesis import HealthCheck, assume, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from automation.commands import OperatorCommand
from automation.models import JobRun
from automation.registry import all_jobs
from communities.models import Community

# The commands commit (and run_from_argv closes the connection): transactional tests.
uses_database = pytest.mark.django_db(transaction=True)
ROOT = Path(settings.BASE_DIR).resolve()


def project_commands() -> dict[str, str]:
    """name → app of every command whose module lives in one of the project's apps (not
    Django's, not an installed package's)."""
    installed = Path(sys.prefix).resolve()
    ours = {config.name for config in apps.get_app_configs()
            if Path(config.path).resolve().is_relative_to(ROOT)
            and not Path(config.path).resolve().is_relative_to(installed)}
    return {name: app for name, app in sorted(get_commands().items()) if app in ours}


COMMANDS = project_commands()


@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str


def run_in_process(name: str, *args: str) -> Outcome:
    """`manage.py name args` as the command line runs it (run_from_argv): output captured,
    the exit code read from SystemExit. Any other exception propagates: a traceback."""
    command = load_command_class(COMMANDS[name], name)
    out, err = StringIO(), StringIO()
    command.stdout, command.stderr = OutputWrapper(out), OutputWrapper(err)
    code = 0
    with redirect_stdout(out), redirect_stderr(err):  # argparse writes to sys.std*
        try:
            command.run_from_argv(["manage.py", name, *args])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    return Outcome(code, out.getvalue(), err.getvalue())


def database_url() -> str:
    db = settings.DATABASES["default"]
    return f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


def start_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """`python manage.py args` against the test database, started, not waited for."""
    return subprocess.Popen(
        [sys.executable, "manage.py", *args], cwd=ROOT, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings",
             "DATABASE_URL": database_url(), "CONN_MAX_AGE": "0", **(env or {})})


@pytest.fixture
def inactive_community(db) -> Community:
    return Community.objects.create(name="Sleepy Hollow", slug="sleepy", timezone="UTC",
                                    is_active=False)


@pytest.fixture
def no_broker(monkeypatch) -> list[tuple[str, dict[str, Any]]]:
    """Runs are recorded but neither published nor executed (an inline run would take the
    job's own time); returns the calls."""
    calls: list[tuple[str, dict[str, Any]]] = []
    monkeypatch.setattr(Task, "apply_async",
                        lambda self, *args, **kwargs: calls.append((self.name, kwargs)))
    monkeypatch.setattr(Task, "apply",
                        lambda self, *args, **kwargs: calls.append((self.name, kwargs)))
    return calls


# --- the commands ----------------------------------------------------------------------


def test_discovery_sees_the_project_commands_and_only_them() -> None:
    """The property below covers what discovery finds: the commands of several project
    apps, none of Django's or of installed packages."""
    assert set(COMMANDS.values()) >= {"automation", "analytics", "communities", "dashboard",
                                      "integrations"}
    assert "automation_run" in COMMANDS and "migrate" not in COMMANDS
    assert "runserver" not in COMMANDS and "celery" not in COMMANDS


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_project_command_has_the_safety_net(name: str) -> None:
    assert isinstance(load_command_class(COMMANDS[name], name), OperatorCommand)


# --- the property ----------------------------------------------------------------------

BASE_OPTIONS = {action.dest for action in
                BaseCommand().create_parser("manage.py", "base")._actions}
CONTROL = ["\x00", "a\x00b", "\x07", "\x1b[31m", "\x7f", "\x85", "\x9f", "\udc80",
           "line\nbreak", "tab\there", "\u2028", "\u202e", "\ufeff"]
# Valid: the range's edges, and instants close enough to each other for short windows.
VALID_DATES = ["2000-01-01T00:00:00+00:00", "2099-12-31T23:00:00+00:00",
               "2099-12-31T23:59:59+00:00", "2026-07-01T15:47:00+00:00", "2026-01-05",
               "2026-01-05T00:00:00Z", "2026-01-05T01:30:00", "2026-01-05T02:00:00+00:00",
               "2026-01-05T03:00:00+01:00", "2026-01-05T06:00:00Z", "2026-01-06T00:00:00-05:00"]
DATES = ["0001-01-01", "0001-01-01T00:00:00+05:00", "9999-12-31", "9999-12-31T23:59:59",
         "9999-12-31T23:59:59Z", "9999-12-31T20:00:00+00:00", "2026-13-45T00:00:00",
         "2026-02-30T00:00:00Z", "1999-12-31T23:59:59Z", "2099-12-31T23:00:00-05:00",
         "2000-01-01T00:00:00+14:00", "2026-07-01T15:47:00+99:00", "now", "", *VALID_DATES]
NUMBERS = ["0", "1", "7", "-1", "-2147483649", "65536", "99999999", "2147483648",
           str(2**63), str(10**30), "1" * 5000, "1e3", "0x10", "١٢", "nan", "inf", "-inf",
           "1e308", "1e-320", "0.5", "3650", "99999"]
JSON = ["{}", "null", "[]", '"text"', "1", '{"seconds": 0}', '{"seconds": "5"}',
        '{"seconds": 1e400}', '{"seconds": NaN}', '{"seconds": null}',
        '{"start": 5, "end": [1]}', '{"start": "9999-12-31T23:59:59Z", "end": "9999-12-31"}',
        '{"start": "2026-01-05T00:00:00Z", "end": "2026-01-05T02:00:00Z"}',
        '{"failures": "\\u0000"}', '{"\\u0000": 1}', '{"unknown": 1}',
        '{"seconds": {"a": [1, {"b": null}]}}', "[" * 5000, "{x", '{"seconds": 1}' * 2]
URLS = ["http://127.0.0.1:8099", "http://127.0.0.1:8099/", "http://10.0.0.1:8099",
        "http://169.254.169.254", "ftp://127.0.0.1", "http://user:pw@127.0.0.1:8099",
        "http://[::1]:8099", "http://0x7f.1:8099", "http://127.0.0.1:99999",
        "http://localhost:8099", "http://" + "a" * 300, "not a url", "http://", ""]
PEOPLE = ["admin", "ada", "a b", "x" * 151, "admin@localhost", "ada@example.com", "nope@",
          "correct horse battery", "short", "é" * 9]
# Generated as placeholders and filled in when run, so that the examples (derandomized)
# do not depend on the ids the database hands out.
IDS = {"<id of acme>": "acme", "<id of sleepy>": "sleepy"}
COMMUNITY_REFERENCES = ["acme", "sleepy", "ACME", " acme ", *IDS, "0", "-1", "nope", "9" * 19]
JOB_NAMES = [spec.name for spec in all_jobs()] + ["nope", "TEST_SLEEP", "test_sleep "]
HINTS = {  # words of an option's name → values worth trying for it
    frozenset({"community", "communities", "slug", "tenant"}): COMMUNITY_REFERENCES,
    frozenset({"job", "jobs"}): JOB_NAMES,
    frozenset({"now", "start", "end", "date", "since", "until", "at", "day"}):
        DATES + VALID_DATES,
    frozenset({"params", "json"}): JSON,
    frozenset({"url", "receiver"}): URLS,
    frozenset({"username", "password", "email", "user"}): PEOPLE,
}

junk_text = st.one_of(
    st.text(max_size=24),
    st.builds(lambda head, char, tail: head + char + tail,
              st.text(max_size=6), st.sampled_from(CONTROL), st.text(max_size=6)),
    st.text(min_size=200, max_size=400),
)


def parses(value: str, kind: Callable[[str], Any]) -> bool:
    try:
        kind(value)
    except (ValueError, TypeError):
        return False
    return True


def values_for(action: Any) -> st.SearchStrategy[str]:
    """One value for `action`: three times in four a plausible one for its kind (its
    choices, numbers its type parses, values for the words of its name), else random
    text or any interesting value."""
    hostile = st.one_of(junk_text, st.sampled_from(sorted(
        {*CONTROL, *DATES, *NUMBERS, *JSON, *URLS, *PEOPLE, *COMMUNITY_REFERENCES,
         *JOB_NAMES})))
    plausible = [str(choice) for choice in action.choices or ()]
    if action.type in (int, float):
        plausible += [value for value in NUMBERS if parses(value, action.type)]
    words = set(re.split(r"[_\W]+", action.dest.lower()))
    for hint, pool in HINTS.items():
        if words & hint:
            plausible += pool
    if not plausible:
        return hostile
    choice = st.sampled_from(plausible)
    return st.sampled_from([True, True, True, False]).flatmap(
        lambda is_plausible: choice if is_plausible else hostile)


def arity(action: Any) -> st.SearchStrategy[int]:
    nargs = action.nargs
    if nargs is None:
        return st.just(1)
    if isinstance(nargs, int):
        return st.just(nargs)
    return {"?": st.integers(0, 1), "*": st.integers(0, 2), "+": st.integers(1, 2)}.get(
        nargs, st.integers(0, 2))


@st.composite
def arguments(draw: st.DrawFn, parser: CommandParser) -> list[str]:
    """An argument list for the command's own options (Django's common ones left out):
    required ones usually given, others sometimes, in any order, as `--opt value` or
    `--opt=value`, sometimes repeated, sometimes with a stray extra argument."""
    own = [action for action in parser._actions if action.dest not in BASE_OPTIONS]
    argv: list[str] = []
    for action in (action for action in own if not action.option_strings):
        if draw(st.integers(0, 9)) < 9:
            argv += [draw(values_for(action)) for _ in range(draw(arity(action)))]
    optionals = [action for action in own if action.option_strings]
    for action in draw(st.permutations(optionals)):
        if draw(st.integers(0, 9)) >= (9 if action.required else 4):
            continue
        for _ in range(draw(st.sampled_from([1, 1, 1, 2]))):
            option = draw(st.sampled_from(action.option_strings))
            values = [draw(values_for(action)) for _ in range(draw(arity(action)))]
            if len(values) == 1 and draw(st.booleans()):
                argv.append(f"{option}={values[0]}")
            else:
                argv += [option, *values]
    if draw(st.integers(0, 19)) == 0:
        argv.append(draw(junk_text))
    return argv


def parsed(parser: CommandParser, argv: list[str]) -> Any | None:
    """The options argparse makes of `argv`, or None if it refuses them."""
    try:
        with redirect_stdout(StringIO()), redirect_stderr(StringIO()):
            return parser.parse_args(argv)
    except (CommandError, SystemExit):
        return None


# Arguments that are valid and only slow (seeding millions of runs is what the command is
# for): such examples are skipped, not run. Everything else runs for real.
SLOW: dict[str, Callable[[Any], bool]] = {
    "dashboard_seed_runs": lambda options: not options.delete and options.runs > 5_000,
}


def assert_answered(name: str, argv: list[str], outcome: Outcome) -> None:
    shown = f"manage.py {name} {argv!r} → exit {outcome.code}\nstderr: {outcome.stderr!r}"
    assert outcome.code in (0, 1, 2), shown
    assert "Traceback" not in outcome.stderr + outcome.stdout, shown
    if outcome.code == 0:
        return
    lines = outcome.stderr.strip().splitlines()
    assert lines, shown
    if outcome.code == 1:
        # One line of the command's own validation (Django: "CommandError: <message>"),
        # not the safety net's catch-all.
        assert re.search(r"CommandError: \S", lines[-1]), shown
        assert "--traceback for details" not in outcome.stderr, shown
    else:
        assert f"usage: manage.py {name}" in outcome.stderr, shown
        assert f"manage.py {name}: error: " in lines[-1], shown


# More for a deeper search: COMMAND_ARGUMENT_EXAMPLES=500 pytest -k any_arguments
EXAMPLES = int(os.environ.get("COMMAND_ARGUMENT_EXAMPLES", "100"))


@uses_database
@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_any_arguments_get_an_answer_not_a_traceback(
        name: str, community: Community, inactive_community: Community, no_broker,
        monkeypatch, settings) -> None:
    """For any argument list built from the command's own parser: exit 0, 1 or 2, never a
    traceback, and a refusal is a line on stderr — argparse's usage error (2) or the
    command's own one-line CommandError (1)."""
    settings.WEBHOOKS_ALLOW_LOOPBACK = False  # seed_demo refuses its receiver: no seeding
    # A server that would start is stopped at once: its port was still bound (or not).
    monkeypatch.setattr(ThreadingHTTPServer, "serve_forever", lambda self, *args: None)
    parser = load_command_class(COMMANDS[name], name).create_parser("manage.py", name)
    ids = {placeholder: str(Community.objects.get(slug=slug).pk)
           for placeholder, slug in IDS.items()}

    @hypothesis_settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                         database=None, suppress_health_check=[HealthCheck.too_slow,
                                                               HealthCheck.data_too_large])
    @given(argv=arguments(parser))
    def answers(argv: list[str]) -> None:
        argv = [ids.get(arg, arg) for arg in argv]
        options = parsed(parser, argv)
        assume(options is None or not SLOW.get(name, lambda _: False)(options))
        # System checks are not about arguments and take most of an example's time.
        assert_answered(name, argv, run_in_process(name, *argv, "--skip-checks"))

    answers()


# --- the safety net --------------------------------------------------------------------


def test_an_unexpected_error_is_one_line_and_exit_1(monkeypatch) -> None:
    """What validation misses is still one line, naming the exception, with the way to
    see the trace; through call_command it is a CommandError chained to the original."""
    def boom(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("boom\n  on a second line\x00")

    monkeypatch.setattr("automation.management.commands.automation_sync.sync_schedules",
                        boom)
    outcome = run_in_process("automation_sync")
    assert outcome.code == 1
    assert outcome.stderr == ("error: RuntimeError: boom on a second line\\x00; run again "
                              "with --traceback for details\n")
    with pytest.raises(CommandError, match=r"^RuntimeError: boom") as info:
        call_command("automation_sync")
    assert isinstance(info.value.__cause__, RuntimeError)


def test_traceback_option_still_shows_the_original_error(monkeypatch) -> None:
    def boom(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr("automation.management.commands.automation_sync.sync_schedules",
                        boom)
    with pytest.raises(RuntimeError, match="boom"):
        run_in_process("automation_sync", "--traceback")


def test_ctrl_c_stops_a_command_quietly(monkeypatch) -> None:
    def interrupted(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("automation.management.commands.automation_sync.sync_schedules",
                        interrupted)
    assert run_in_process("automation_sync") == Outcome(130, "", "interrupted\n")


# --- automation_run and an inactive community --------------------------------------------


@uses_database
def test_run_command_refuses_an_inactive_community(inactive_community: Community,
                                                   no_broker) -> None:
    """Like the API: no run is queued for an inactive community, with a message that says
    why."""
    outcome = run_in_process("automation_run", "test_sleep", "--community", "sleepy")
    assert outcome.code == 1
    assert outcome.stderr == ("CommandError: community sleepy is inactive: its jobs cannot "
                              "be run until it is reactivated\n")
    assert not JobRun.objects.exists() and not no_broker


@uses_database
def test_run_command_params_reach_the_run_cleaned(community: Community, no_broker) -> None:
    """--params are validated by the job's form and stored as it cleans them (JSON form,
    in UTC); an explicit null overrides the community's stored value with the default."""
    setting = community.automation_settings.get(job_name="test_sleep")
    setting.params = {"seconds": 5}
    setting.save()
    assert run_in_process("automation_run", "test_sleep", "--community", "acme",
                          "--params", '{"seconds": null}').code == 0
    assert JobRun.objects.get().params == {"seconds": 0.0}
    assert run_in_process(
        "automation_run", "analytics_backfill_replay", "--community", "acme", "--params",
        '{"start": "2026-01-05T00:00:00+01:00", "end": "2026-01-05T03:00:00Z"}').code == 0
    assert JobRun.objects.get(job_name="analytics_backfill_replay").params == {
        "start": "2026-01-04T23:00:00+00:00", "end": "2026-01-05T03:00:00+00:00"}


# --- the real command line -------------------------------------------------------------

REPORTED = [  # (arguments, the one line on stderr)
    (["automation_schedule_list", "--now", "2026-13-45T00:00:00"],
     "CommandError: --now '2026-13-45T00:00:00' is not a valid date and time: month must "
     "be in 1..12"),
    (["automation_schedule_list", "--now", "9999-12-31T23:59:59+00:00"],
     "CommandError: --now 9999-12-31 is out of range; dates must be between 2000-01-01 "
     "and 2099-12-31."),
    (["automation_run", "test_sleep", "--community", "acme", "--params",
      '{"seconds": "\\u0000"}'],
     "CommandError: invalid params: seconds: seconds contains a control character "
     "(U+0000) at position 0."),
    (["automation_run", "analytics_backfill_replay", "--community", "acme", "--params",
      '{"start": 5, "end": [1]}'],
     "CommandError: invalid params: start: start must be an ISO 8601 datetime such as "
     "2026-01-05T00:00:00Z, not a number; end: end must be an ISO 8601 datetime such as "
     "2026-01-05T00:00:00Z, not a list"),
    (["analytics_backfill_replay", "--community", "acme", "--start", "9999-12-31T20:00:00Z",
      "--end", "9999-12-31T23:59:59Z"],
     "CommandError: start 9999-12-31 is out of range; dates must be between 2000-01-01 and "
     "2099-12-31; end 9999-12-31 is out of range; dates must be between 2000-01-01 and "
     "2099-12-31"),
    (["seed_demo", "--receiver-url", "http://10.0.0.1:8099"],
     "CommandError: --receiver-url 'http://10.0.0.1:8099' is refused: 10.0.0.1 resolves "
     "to 10.0.0.1, a private address (10.0.0.0/8); outbound URLs must point to the public "
     "internet."),
    (["automation_run", "test_sleep", "--community", "sleepy"],
     "CommandError: community sleepy is inactive: its jobs cannot be run until it is "
     "reactivated"),
]


@uses_database
def test_reported_cases_through_the_real_command_line(community: Community,
                                                      inactive_community: Community) -> None:
    """`python manage.py ...` for each case the tester reported: exit code 1 and exactly
    one line on stderr, the reason. And the safety net for real: with the database
    unreachable, one line naming the error; --traceback shows the trace. (Started side by
    side: each process spends seconds on Django's start-up.)"""
    unreachable = {"DATABASE_URL": "postgres://postgres@127.0.0.1:1/nowhere"}
    started = [(args, line, start_cli(*args)) for args, line in REPORTED] + [
        (["automation_sync"], None, start_cli("automation_sync", env=unreachable)),
        (["automation_sync", "--traceback"], "Traceback",
         start_cli("automation_sync", "--traceback", env=unreachable)),
    ]
    for args, line, process in started:
        stdout, stderr = process.communicate(timeout=120)
        shown = f"manage.py {' '.join(args)} → {process.returncode}\n{stderr}"
        assert process.returncode == 1, shown
        if line == "Traceback":
            assert "Traceback (most recent call last):" in stderr, shown
            assert "django.db.utils.OperationalError: connection failed" in stderr, shown
        elif line is None:
            assert re.fullmatch(r"error: OperationalError: connection failed: [^\n]*; run "
                                r"again with --traceback for details\n", stderr), shown
        else:
            assert stderr == line + "\n", shown
        assert "Traceback" not in stdout
    assert not JobRun.objects.exists()
    assert not Community.objects.exclude(slug__in=["acme", "sleepy"]).exists()
