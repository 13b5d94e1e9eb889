"""Every registered job's params form is a strict boundary, for any params at all.

The jobs come from the registry, not a list here, and the values from each form's own
fields, so a new job is covered the day it is registered. For whatever a JSON body, a
command line or an admin field can carry (text with NUL and control characters, huge and
negative numbers, values of the wrong JSON type, dates and datetimes from year 1 to 9999
with any offset, names nobody declared), `JobSpec.clean_params` either refuses it with
InvalidJobParams whose messages are storable text, or returns a dict that is JSON, cleans
to itself again, and runs through the platform's run path without a params failure.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest
from django import forms
from django.core.validators import RegexValidator
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analytics.models import EventType
from automation.errors import InvalidJobParams
from automation.input_limits import (
    EARLIEST,
    EARLIEST_DATE,
    LATEST,
    LATEST_DATE,
    has_control_characters,
)
from automation.models import JobRun
from automation.params import FORM_FAILED
from automation.registry import JobSpec, all_jobs
from automation.runs import run_inline
from communities.models import Community

JOBS = all_jobs()
# Jobs of the "testing" category exist to misbehave (sleep, fail, ignore time limits):
# their params are checked like every other job's, but they are not run here.
RUNNABLE = [spec for spec in JOBS if spec.category != "testing"]
NOW = datetime(2026, 2, 1, 12, tzinfo=UTC)
MODES = [{"partial": False, "defaults": True}, {"partial": True, "defaults": False}]

# --- values ----------------------------------------------------------------------------

CONTROL = ["\x00", "\x01", "\x08", "\x0b", "\x1b", "\x7f", "\x85", "\x9f"]
control_text = st.builds(lambda head, char, tail: head + char + tail,
                         st.text(max_size=8), st.sampled_from(CONTROL), st.text(max_size=8))
huge_text = st.builds(lambda char, n: char * n, st.characters(codec="utf-8"),
                      st.integers(1_001, 20_000))
huge_numbers = st.sampled_from([2**63, -(2**63) - 1, 10**30, -(10**30), 10**400, 10**5000,
                                1e308, -1e308, float("inf"), float("-inf"), float("nan")])
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                  max_size=3),
    max_leaves=8)


def nested(depth: int) -> Any:
    value: Any = 1
    for n in range(depth):
        value = [value] if n % 2 else {"k": value}
    return value


hostile = st.one_of(control_text, huge_text, huge_numbers, json_values,
                    st.integers(9, 60).map(nested), st.just("2026-01\ud800"),
                    st.integers(1_001, 5_000).map(lambda n: list(range(n))))

EDGE_DATES = [date.min, date.max, EARLIEST_DATE, LATEST_DATE,
              EARLIEST_DATE - timedelta(days=1), LATEST_DATE + timedelta(days=1),
              date(2026, 1, 5)]
EDGE_YEARS = [0, 1, 1999, 2000, 2026, 2099, 2100, 9999]
OFFSETS = [UTC, timezone(timedelta(hours=14)), timezone(-timedelta(hours=12)),
           timezone(timedelta(hours=5, minutes=30)),
           timezone(timedelta(hours=23, minutes=59)), timezone(-timedelta(hours=23, minutes=59))]
BAD_DATETIMES = ["2026-01-05T00:00:00+24:00", "2026-01-05T00:00:00+99:99",
                 "0000-01-01T00:00:00Z", "10000-01-01T00:00:00Z", "2026-02-30T00:00:00Z",
                 "2026-01-05T24:00:00Z", "9999-12-31T23:59:59.999999-23:59",
                 "0001-01-01T00:00:00+23:59"]


def shifted(anchor: datetime, hours: int) -> datetime:
    try:
        return anchor + timedelta(hours=hours)
    except OverflowError:
        return anchor


def with_offset(moment: datetime, tz: timezone | None) -> str:
    return moment.replace(tzinfo=tz).isoformat()


anchors = st.sampled_from([EARLIEST.replace(tzinfo=None), LATEST.replace(tzinfo=None),
                           datetime(2026, 1, 5), datetime.min, datetime.max])
moments = st.one_of(st.builds(shifted, anchors, st.integers(-48, 48)), st.datetimes())
# The datetime fields of one example mostly lie near one moment, so that two of them make
# a window (in order, short enough) often enough to be accepted, at the ends of the range
# too; each is written with its own offset.
near_one_moment = st.builds(lambda base, hours, tz: with_offset(shifted(base, hours), tz),
                            st.shared(moments, key="moment"), st.integers(-72, 72),
                            st.sampled_from([*OFFSETS, None]))
# The range's ends written with every offset: as wall-clock times there (some then lie
# past the end in UTC) and as the same instants.
EDGE_DATETIMES = sorted({text for edge in (EARLIEST, LATEST) for tz in OFFSETS
                         for text in (with_offset(edge.replace(tzinfo=None), tz),
                                      edge.astimezone(tz).isoformat())})
datetime_texts = st.one_of(
    near_one_moment, near_one_moment, st.sampled_from(EDGE_DATETIMES),
    st.builds(with_offset, moments, st.sampled_from([*OFFSETS, None])),
    st.sampled_from(BAD_DATETIMES),
)
date_texts = st.one_of(st.sampled_from(EDGE_DATES), st.dates()).map(date.isoformat)
years = st.one_of(st.sampled_from(EDGE_YEARS), st.integers(0, 9999))
calendar_labels = st.one_of(
    st.builds("{:04d}-{:02d}".format, years, st.integers(0, 13)),
    st.builds("{:04d}-W{:02d}".format, years, st.integers(0, 54)),
)


def around(low: float | None, high: float | None) -> st.SearchStrategy:
    """Numbers inside a field's bounds, and just past them."""
    edges = [edge + step for edge in (low, high) if edge is not None for step in (-1, 0, 1)]
    inside = st.integers(int(low if low is not None else -(2**40)),
                         int(high if high is not None else 2**40))
    return st.one_of(inside, st.sampled_from(edges)) if edges else inside


def typed_values(field: forms.Field) -> st.SearchStrategy:
    """Values of the field's own kind, dense at its bounds and at the calendar's ends."""
    if isinstance(field, forms.BooleanField):
        return st.booleans()
    if isinstance(field, forms.FloatField | forms.DecimalField):
        low, high = field.min_value, field.max_value
        return st.one_of(around(low, high), around(low, high).map(str),
                         st.floats(min_value=low, max_value=high, allow_nan=False))
    if isinstance(field, forms.IntegerField):
        numbers = around(field.min_value, field.max_value)
        return st.one_of(numbers, numbers.map(str), numbers.map(float))
    if isinstance(field, forms.DateTimeField):
        return datetime_texts
    if isinstance(field, forms.DateField):
        return date_texts
    if isinstance(field, forms.JSONField):
        # Objects keyed by event types (weights) as well as any JSON.
        keys = st.sampled_from([*EventType.values, "posts", ""])
        points = st.one_of(st.integers(-5, 1_005), json_values)
        return st.one_of(st.dictionaries(keys, points, max_size=4), json_values)
    if isinstance(field, forms.ChoiceField) and field.choices:
        return st.sampled_from([choice for choice, _ in field.choices])
    if isinstance(field, forms.CharField):
        patterns = [st.from_regex(v.regex, fullmatch=True) for v in field.validators
                    if isinstance(v, RegexValidator) and not v.inverse_match]
        return st.one_of(calendar_labels, st.text(max_size=20), *patterns)
    return json_values


def value_for(field: forms.Field) -> st.SearchStrategy:
    typed = typed_values(field)
    return st.one_of(typed, typed, hostile)


@functools.cache
def declared(spec: JobSpec, values: Any) -> st.SearchStrategy:
    fields = spec.params_form().fields
    return st.fixed_dictionaries({}, optional={name: values(field)
                                               for name, field in fields.items()})


@functools.cache
def any_params(spec: JobSpec) -> st.SearchStrategy:
    """Mostly the form's own names with any values; sometimes extra names, or no object."""
    known = declared(spec, value_for)
    names = st.one_of(st.text(max_size=12), control_text, huge_text)
    extra = st.dictionaries(names, json_values, min_size=1, max_size=3)
    odd_names = st.dictionaries(st.integers() | st.none(), json_values, min_size=1, max_size=2)
    not_an_object = st.one_of(st.lists(json_values, max_size=3), st.text(max_size=10),
                              st.integers(), st.floats(), st.booleans(), st.none())
    return st.one_of(known, known, known,
                     st.builds(lambda given, more: {**more, **given}, known, extra),
                     st.builds(lambda given, more: {**given, **more}, known, odd_names),
                     not_an_object)


# --- checks ----------------------------------------------------------------------------


def assert_readable(exc: InvalidJobParams) -> None:
    """Messages a person can read and a text column can store, from the form's own rules."""
    assert exc.errors
    for name, messages in exc.errors.items():
        assert isinstance(name, str) and messages
        for message in messages:
            assert isinstance(message, str) and message
            assert not has_control_characters(message), message
            message.encode("utf-8")  # no unpaired surrogates
            assert FORM_FAILED not in message, "the params form raised; fix the form"
    str(exc).encode("utf-8")


def clean_or_refuse(spec: JobSpec, params: Any, **mode: bool) -> dict[str, Any] | None:
    try:
        cleaned = spec.clean_params(params, **mode)
    except InvalidJobParams as exc:
        assert_readable(exc)
        return None
    assert isinstance(cleaned, dict)
    return cleaned


def ids(specs: list[JobSpec]) -> list[str]:
    return [spec.name for spec in specs]


def test_every_job_is_covered() -> None:
    """The registry holds the platform's jobs (and the tests' own), so a job added later
    is iterated here rather than forgotten in a list."""
    assert {"analytics_backfill_replay", "daily_community_digest",
            "subscription_delinquency_retry"} <= {spec.name for spec in RUNNABLE}


@pytest.mark.parametrize("spec", JOBS, ids=ids(JOBS))
def test_every_number_param_is_bounded(spec: JobSpec) -> None:
    """No number param without min_value and max_value: a job's loops, timeouts and
    sizes come from them."""
    for name, field in spec.params_form().fields.items():
        if isinstance(field, forms.IntegerField):  # FloatField and DecimalField too
            assert field.min_value is not None and field.max_value is not None, (
                f"{spec.name}.{name} needs min_value and max_value")


def alone(spec: JobSpec, name: str) -> JobSpec:
    """The job with a form of this one field: its own checks (clean_<name>) kept, the
    rules between fields set aside, so each field's accepted values are searched densely."""

    class OneField(spec.params_form):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.fields = {name: self.fields[name]}

        def clean(self) -> dict[str, Any]:
            return self.cleaned_data

    return dataclasses.replace(spec, params_form=OneField)


FIELDS = [(spec, name) for spec in JOBS for name in spec.params_form.base_fields]


EDGE_LABELS = [f"{year:04d}-{month:02d}" for year in EDGE_YEARS for month in (0, 1, 12, 13)] + [
    f"{year:04d}-W{week:02d}" for year in EDGE_YEARS for week in (0, 1, 52, 53)]


def edge_values(field: forms.Field) -> list[Any]:
    """The values at the ends of what a field of this kind can be given, and just past."""
    wrong = [None, True, [], {}, "", "\x00", "x" * 1_001, 2**63, -(2**63) - 1, float("inf")]
    if isinstance(field, forms.DateTimeField):
        return [*EDGE_DATETIMES, *BAD_DATETIMES, *wrong]
    if isinstance(field, forms.DateField):
        return [*(day.isoformat() for day in EDGE_DATES), *wrong]
    if isinstance(field, forms.IntegerField):
        low, high = field.min_value, field.max_value
        edges = [edge + step for edge in (low, high) if edge is not None for step in (-1, 0, 1)]
        return [*edges, *(str(edge) for edge in edges), *wrong]
    if isinstance(field, forms.CharField):
        return [*EDGE_LABELS, *wrong]
    return wrong


@pytest.mark.parametrize(("spec", "name"), FIELDS,
                         ids=[f"{spec.name}.{name}" for spec, name in FIELDS])
def test_each_field_alone_at_its_edges(spec: JobSpec, name: str) -> None:
    """Every edge of every field, not left to the search: refused cleanly, or cleaned to a
    fixed point (a datetime in range where it was written may lie past the range in UTC,
    where it is stored)."""
    single = alone(spec, name)
    for value in edge_values(spec.params_form.base_fields[name]):
        for mode in MODES:
            cleaned = clean_or_refuse(single, {name: value}, **mode)
            if cleaned is not None:
                stored = json.loads(json.dumps(cleaned, allow_nan=False))
                assert single.clean_params(stored, **mode) == cleaned, value


@pytest.mark.parametrize(("spec", "name"), FIELDS,
                         ids=[f"{spec.name}.{name}" for spec, name in FIELDS])
@given(data=st.data())
@settings(max_examples=40, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
def test_each_field_alone_is_refused_cleanly_or_cleaned_to_a_fixed_point(
        spec: JobSpec, name: str, data: st.DataObject) -> None:
    """Each field searched on its own, with values of its kind and hostile ones: refused
    with readable messages, or cleaned to JSON that cleans to itself again."""
    single = alone(spec, name)
    field = spec.params_form.base_fields[name]
    value = data.draw(value_for(field), label=name)
    for mode in MODES:
        cleaned = clean_or_refuse(single, {name: value}, **mode)
        if cleaned is not None:
            stored = json.loads(json.dumps(cleaned, allow_nan=False))
            assert single.clean_params(stored, **mode) == cleaned


@pytest.mark.parametrize("spec", JOBS, ids=ids(JOBS))
@given(data=st.data())
@settings(max_examples=120, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
def test_any_params_are_refused_cleanly_or_cleaned_to_a_fixed_point(
        spec: JobSpec, data: st.DataObject) -> None:
    """Refused with readable messages, or cleaned to JSON that cleans to itself again,
    as a run uses them (full, with defaults) and as a setting stores them (partial)."""
    params = data.draw(any_params(spec), label="params")
    fields = set(spec.params_form().fields)
    for mode in MODES:
        cleaned = clean_or_refuse(spec, params, **mode)
        if cleaned is None:
            continue
        assert set(cleaned) <= fields
        if not mode["defaults"]:
            assert set(cleaned) <= set(params or {})
        stored = json.loads(json.dumps(cleaned, allow_nan=False))
        assert spec.clean_params(stored, **mode) == cleaned


# Near the range's ends and inside it, written with any offset: two of them make a valid
# window often enough to be found, and the ends are where a window would overflow.
RUN_ANCHORS = [EARLIEST, datetime(2026, 1, 5, tzinfo=UTC), LATEST]
near_anchors = st.builds(lambda anchor, hours, tz: (anchor + timedelta(hours=hours))
                         .astimezone(tz).isoformat(),
                         st.sampled_from(RUN_ANCHORS), st.integers(-6, 6),
                         st.sampled_from(OFFSETS))


def runnable_values(field: forms.Field) -> st.SearchStrategy:
    return near_anchors if isinstance(field, forms.DateTimeField) else typed_values(field)


@functools.cache
def every_field(spec: JobSpec) -> st.SearchStrategy:
    fields = spec.params_form().fields
    return st.fixed_dictionaries({name: runnable_values(field)
                                  for name, field in fields.items()})


def accepted_params(spec: JobSpec, data: st.DataObject) -> dict[str, Any]:
    """Every field given, redrawn until the form accepts it all (a window in order, rising
    thresholds); else the most of the last draw it accepts. Filtering instead would keep
    mostly empty params: they are the ones that pass."""
    for _ in range(30):
        params = data.draw(every_field(spec), label="params")
        if clean_or_refuse(spec, params) is not None:
            return params
    while params:
        try:
            spec.clean_params(params)
            return params
        except InvalidJobParams as exc:
            # Drop the fields refused; a cross-field rule names none, so drop one of them.
            bad = [name for name in exc.errors if name in params] or [
                data.draw(st.sampled_from(sorted(params)), label="dropped")]
            params = {name: value for name, value in params.items() if name not in bad}
    return params


def runs_with_accepted_params(spec: JobSpec, community: Community) -> None:
    @given(data=st.data())
    @settings(max_examples=10, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
    def run_once(data: st.DataObject) -> None:
        params = accepted_params(spec, data)
        if "dry_run" in spec.params_form().fields:
            params = {**params, "dry_run": True}
        run = run_inline(spec, community, trigger=JobRun.Trigger.MANUAL, now=NOW,
                         params=params)
        expected = spec.clean_params(params)
        assert run.params == {name: expected.get(name) for name in params}, spec.name
        assert run.status == JobRun.Status.SUCCEEDED or (
            run.status == JobRun.Status.FAILED and run.error_type == "PermanentJobError"), (
            f"{spec.name}: {run.status} {run.error_type}: {run.error_message}")

    run_once()
    assert JobRun.objects.filter(job_name=spec.name).exists(), f"{spec.name} never ran"


@pytest.mark.django_db(transaction=True)
def test_accepted_params_run_through_the_platform_path(community: Community) -> None:
    """Params the form accepts (edges of every range included) are accepted again by the
    worker, reach the job function in their stored form and do not break it: the run
    succeeds, or fails with the job's own PermanentJobError (an invoice it does not know),
    never with InvalidJobParams or an overflow. A job with a dry_run param runs dry.

    One test for all jobs, a search each: the database is emptied once, not per job."""
    for spec in RUNNABLE:
        runs_with_accepted_params(spec, community)
