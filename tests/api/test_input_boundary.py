"""The API's input boundary: body size, JSON depth, text, unknown fields, JSON types, dates
and inactive communities, each answered with a 4xx in the API's JSON error shape, never a
5xx, and never spending a trigger's cooldown.

Each class of input is tried with several values (and, where it matters, on every write
endpoint), so what is proved is the class, not one example.
"""

from __future__ import annotations

import json
from io import BytesIO
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from api.models import ApiKey
from automation import operations
from automation.bounded_json import nesting_exceeds
from automation.connections import get_redis
from automation.input_limits import RANGE_TEXT
from automation.models import AuditEntry, CommunityAutomationSetting, JobRun
from communities.models import Community

from .conftest import OPERATOR_TOKEN, Api

pytestmark = pytest.mark.django_db

JOB = "/api/communities/acme/jobs/test_sleep"
RUN = f"{JOB}/run"
LIMIT = 2_000  # API_MAX_BODY_BYTES in the size tests


def assert_error(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    """The answer is `status` with the API's JSON error shape; returns its body."""
    assert response.status_code == status, (response.status_code, response.content[:300])
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    body = response.json()
    assert isinstance(body["detail"], str) and isinstance(body["code"], str), body
    if code is not None:
        assert body["code"] == code, body
    return body


def padded(body: dict[str, Any], size: int) -> bytes:
    """`body` as JSON of exactly `size` bytes (trailing spaces are valid JSON)."""
    raw = json.dumps(body).encode()
    assert len(raw) <= size
    return raw + b" " * (size - len(raw))


class CountingStream(BytesIO):
    """A request's input that records how many bytes the server read from it."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.taken = 0

    def read(self, size: int | None = -1, /) -> bytes:
        chunk = super().read(size)
        self.taken += len(chunk)
        return chunk


def state(community: Community) -> tuple[Any, ...]:
    """Everything a write through the API could have changed."""
    settings = list(CommunityAutomationSetting.objects.filter(community=community).order_by(
        "job_name").values_list("enabled", "cron_override", "params", "paused_until"))
    return settings, JobRun.objects.count(), AuditEntry.objects.count()


# --- body size -------------------------------------------------------------------------

@pytest.fixture
def small_bodies(settings) -> None:
    settings.API_MAX_BODY_BYTES = LIMIT
    settings.AUTOMATION_TRIGGER_COOLDOWN_SECONDS = 0


@pytest.mark.parametrize("size", [LIMIT - 1, LIMIT])
def test_a_body_up_to_the_limit_is_read(small_bodies, tenant: Api, size: int) -> None:
    """A body of the limit or just under is parsed and acted on."""
    response = tenant.send("POST", RUN, padded({"params": {"seconds": 0.5}}, size))
    assert response.status_code == 202, response.content
    assert JobRun.objects.get().params == {"seconds": 0.5}


@pytest.mark.parametrize("size", [LIMIT + 1, 2 * LIMIT, 3_000_000])
@pytest.mark.parametrize("path", [RUN, JOB, "/api/jobs/test_sleep/toggle", "/api/nowhere"])
def test_a_body_over_the_limit_is_413(small_bodies, tenant: Api, community: Community,
                                      size: int, path: str) -> None:
    """Over the limit by one byte or by megabytes, on any path and method under /api/:
    413 before anything is parsed or changed."""
    before = state(community)
    method = "PATCH" if path == JOB else "POST"
    body = assert_error(tenant.send(method, path, padded({"params": {}}, size)), 413,
                        "too_large")
    assert str(LIMIT) in body["detail"]
    assert state(community) == before


def test_the_default_limit_is_a_megabyte(tenant: Api) -> None:
    """Without settings, a 3 MB body (the tester's) is 413, and one of 1 MB is read."""
    assert_error(tenant.send("POST", RUN, padded({}, 3_000_000)), 413, "too_large")
    response = tenant.send("POST", RUN, padded({"params": {"seconds": 0}}, 1024 * 1024))
    assert response.status_code == 202, response.content


def test_an_announced_length_over_the_limit_is_refused_unread(small_bodies,
                                                              tenant: Api) -> None:
    """A Content-Length over the limit is answered without reading a byte of the body."""
    stream = CountingStream(b"{" * 10_000)
    assert_error(tenant.send("POST", RUN, CONTENT_LENGTH=str(LIMIT + 1), **{
        "wsgi.input": stream}), 413, "too_large")
    assert stream.taken == 0


def test_a_length_that_understates_the_body_bounds_what_is_read(small_bodies,
                                                                tenant: Api) -> None:
    """A Content-Length smaller than the body: only that many bytes are read (the rest is
    never reached), so the limit holds whatever follows."""
    body = json.dumps({"params": {"seconds": 0}}).encode()
    stream = CountingStream(body + b" " * 5_000_000)
    response = tenant.send("POST", RUN, CONTENT_LENGTH=str(len(body)), **{"wsgi.input": stream})
    assert response.status_code == 202, response.content
    assert stream.taken == len(body)
    # A truncating length cuts the JSON short: a parse error, not a server error.
    short = CountingStream(body)
    assert_error(tenant.send("POST", RUN, CONTENT_LENGTH="7", **{"wsgi.input": short}), 400,
                 "parse_error")


@pytest.mark.parametrize("declared", ["100", str(LIMIT)])
def test_a_length_that_overstates_the_body_is_400(small_bodies, tenant: Api,
                                                  community: Community, declared: str) -> None:
    """A body that ends before its Content-Length is incomplete: 400, nothing done."""
    before = state(community)
    body = assert_error(tenant.send("POST", RUN, CONTENT_LENGTH=declared, **{
        "wsgi.input": BytesIO(b'{"params": {}}')}), 400, "bad_request")
    assert declared in body["detail"]
    assert state(community) == before


@pytest.mark.parametrize("declared", ["-1", "ten", "1e3", "٣"])
def test_a_length_that_is_not_a_number_is_400(tenant: Api, declared: str) -> None:
    assert_error(tenant.send("POST", RUN, CONTENT_LENGTH=declared), 400, "bad_request")


def chunked(data: bytes, terminated: bool = True) -> dict[str, Any]:
    """The environ of a chunked body as gunicorn presents it: no Content-Length, the
    decoded body as input, marked as ending where the body ends."""
    stream = CountingStream(data)
    environ = {"CONTENT_LENGTH": "", "HTTP_TRANSFER_ENCODING": "chunked",
               "wsgi.input": stream}
    if terminated:
        environ["wsgi.input_terminated"] = True
    return environ


def test_a_chunked_body_is_read_not_dropped(small_bodies, tenant: Api) -> None:
    """Without Content-Length Django would read an empty body and run with no params; the
    chunked body is read, within the limit, and its params are used."""
    response = tenant.send("POST", RUN, **chunked(padded({"params": {"seconds": 1.5}}, LIMIT)))
    assert response.status_code == 202, response.content
    assert JobRun.objects.get().params == {"seconds": 1.5}


@pytest.mark.parametrize("size", [LIMIT + 1, 5_000_000])
def test_a_chunked_body_over_the_limit_is_413_after_one_byte_more(
        small_bodies, tenant: Api, size: int) -> None:
    environ = chunked(padded({}, size))
    assert_error(tenant.send("POST", RUN, **environ), 413, "too_large")
    assert environ["wsgi.input"].taken == LIMIT + 1
    assert not JobRun.objects.exists()


def test_a_chunked_body_a_server_cannot_end_is_411(tenant: Api) -> None:
    """A server that does not mark where a chunked body ends (Django's runserver): asking
    for Content-Length beats reading until the connection closes."""
    assert_error(tenant.send("POST", RUN, **chunked(b"{}", terminated=False)), 411,
                 "length_required")
    assert not JobRun.objects.exists()


def test_django_upload_limit_below_the_api_limit_is_413_too(settings, tenant: Api) -> None:
    """The lower of API_MAX_BODY_BYTES and DATA_UPLOAD_MAX_MEMORY_SIZE holds: 413, not
    Django's RequestDataTooBig as a 400 page or a 500."""
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 500
    body = assert_error(tenant.send("POST", RUN, padded({}, 501)), 413, "too_large")
    assert "500" in body["detail"]


# --- JSON depth ------------------------------------------------------------------------

def nested(depth: int) -> str:
    """A body nested `depth` levels deep in all (objects and lists alternating)."""
    levels = range(depth - 2)
    opening = "".join("[" if level % 2 else '{"k": ' for level in reversed(levels))
    closing = "".join("]" if level % 2 else "}" for level in levels)
    return f'{{"params": {{"weights": {opening}0{closing}}}}}'


@pytest.mark.parametrize("limit", [5, 32])
def test_depth_at_the_limit_is_parsed_and_one_more_is_refused(settings, tenant: Api,
                                                              limit: int) -> None:
    settings.API_MAX_JSON_DEPTH = limit
    at_limit = tenant.send("POST", RUN, nested(limit))
    assert at_limit.status_code == 400
    assert at_limit.json()["code"] == "invalid"  # parsed; the job has no `weights` param
    for depth in (limit + 1, limit + 2):
        body = assert_error(tenant.send("POST", RUN, nested(depth)), 400, "parse_error")
        assert f"more than {limit} levels" in body["detail"]


@pytest.mark.parametrize("depth", [1_000, 20_000, 150_000])  # all under 1 MB
def test_thousands_of_levels_are_400_not_a_recursion_error(tenant: Api, depth: int) -> None:
    """json.loads raises RecursionError near 1000 levels; the depth is known before it."""
    for text in ("[" * depth + "]" * depth, '{"a":' * depth + "1" + "}" * depth,
                 "[" * depth):
        assert_error(tenant.send("POST", RUN, text), 400, "parse_error")


def test_a_depth_limit_set_beyond_what_python_parses_still_answers_400(settings,
                                                                       tenant: Api) -> None:
    """settings.py refuses API_MAX_JSON_DEPTH over 500; set past that anyway, json's own
    RecursionError is a 400 too, not a 500."""
    settings.API_MAX_JSON_DEPTH = 100_000
    assert_error(tenant.send("POST", RUN, nested(50_000)), 400, "parse_error")


def test_brackets_inside_strings_do_not_count(settings) -> None:
    settings.API_MAX_JSON_DEPTH = 3
    for text in ('{"a": "[[[[[[{{{{"}', '{"a": "\\"[[[[[[\\\\"}', '["]]]]", ["x"]]',
                 '{"[[[[": {"{{{{": 1}}'):
        assert not nesting_exceeds(text, 3), text
    for text in ('[[[["x"]]]]', '{"a": [{"b": ["]"]}]}', '[[["\\\\", ["'):
        assert nesting_exceeds(text, 3), text


@pytest.mark.parametrize("text", ['{"params": ', '{"params": {"seconds": 1}}}', "nope",
                                  '{"a": NaN}', '{"a": Infinity}', '{"a": 1e400}',
                                  '{"a": -1e999}', '{"a": 99999999999999999999}',
                                  '{"a": ' + "9" * 5000 + "}"])
def test_malformed_json_and_numbers_out_of_range_are_400(tenant: Api, text: str) -> None:
    """Not JSON, or a number no field can take (infinite, beyond 64 bits, thousands of
    digits): 400 parse_error, never a 500 from storing or converting it."""
    assert_error(tenant.send("POST", RUN, text), 400, "parse_error")


@pytest.mark.parametrize("raw", [b'{"a": "\xff"}', b"\xfe\xff\x00{", b'{"a": "\xc3"}'])
def test_a_body_that_is_not_utf8_is_400(tenant: Api, raw: bytes) -> None:
    assert_error(tenant.send("POST", RUN, raw), 400, "parse_error")


# --- text ------------------------------------------------------------------------------

# input_limits' rule: C0 controls but tab, newline and carriage return; DEL; C1 (NEL too).
CONTROL = ["\x00", "\x01", "\x08", "\x0b", "\x1b", "\x1f", "\x7f", "\x80", "\x85", "\x9f"]


@pytest.mark.parametrize("char", CONTROL)
def test_control_characters_anywhere_in_the_body_are_400_naming_where(
        tenant: Api, community: Community, char: str) -> None:
    before = state(community)
    cases = [
        ({"cron_override": f"0 8 * * 1{char}"}, "cron_override"),
        ({"params": {"period": f"2026-W01{char}"}}, "params.period"),
        ({"params": {"weights": {"post": [1, f"x{char}"]}}}, "params.weights.post[1]"),
        ({"params": {f"we{char}ights": {}}}, "params." + ascii(f"we{char}ights")[1:-1]),
    ]
    for body, where in cases:
        response = tenant.patch("/api/communities/acme/jobs/weekly_leaderboard_recalculate",
                                body)
        errors = assert_error(response, 400, "invalid")["errors"]
        assert list(errors) == [where], (char, errors)
        assert "control character" in errors[where][0]
    assert state(community) == before


@pytest.mark.parametrize("char", CONTROL)
def test_control_characters_in_query_parameters_are_400_naming_them(
        tenant: Api, operator: Api, char: str) -> None:
    for api, path, name in [(tenant, "/api/communities/acme/runs", "job"),
                            (operator, "/api/jobs", "category"),
                            (operator, "/api/jobs/test_sleep/history", "community"),
                            (tenant, "/api/whoami", "anything")]:
        errors = assert_error(api.get(path, **{name: f"a{char}b"}), 400, "invalid")["errors"]
        assert "control character" in errors[name][0], (path, errors)
    errors = assert_error(tenant.get("/api/communities/acme/runs", **{f"j{char}": "1"}), 400,
                          "invalid")["errors"]
    assert "control character" in errors[ascii(f"j{char}")[1:-1]][0]


def test_unpaired_surrogates_are_400(tenant: Api) -> None:
    """JSON can spell "\\ud800", which is no text any UTF-8 column stores."""
    for text in ('{"cron_override": "\\ud800"}', '{"params": {"period": "a\\udfffb"}}',
                 '{"\\udc00": 1}'):
        response = tenant.send("PATCH", "/api/communities/acme/jobs/weekly_leaderboard_"
                                        "recalculate", text)
        assert "surrogate" in json.dumps(assert_error(response, 400, "invalid")["errors"])


def test_query_values_are_checked_as_given(tenant: Api, operator: Api) -> None:
    """An empty value is a wrong value (not "not given", as in an HTML form), and a
    parameter given twice is refused rather than one of them silently winning."""
    for path, name in [("/api/communities/acme/runs", "status"),
                       ("/api/communities/acme/runs", "page_size"), ("/api/jobs", "days"),
                       ("/api/jobs/test_sleep/history", "community")]:
        api = tenant if path.startswith("/api/communities") else operator
        assert name in assert_error(api.get(path, **{name: ""}), 400, "invalid")["errors"]
    response = tenant.client.get("/api/communities/acme/runs?page_size=500&page_size=5",
                                 headers=tenant.headers)
    assert "page_size" in assert_error(response, 400, "invalid")["errors"]


@pytest.mark.parametrize("char", ["\t", "\n", "\r"])
def test_tab_newline_and_carriage_return_are_text(tenant: Api, char: str) -> None:
    response = tenant.get("/api/communities/acme/runs", job=f"a{char}b")
    assert response.status_code == 200 and response.json()["count"] == 0


# --- unknown fields and JSON types ---------------------------------------------------------

# Every write endpoint: who may call it, method, path, a valid body.
WRITES = [
    ("tenant", "PATCH", JOB, {"cron_override": "1 * * * *"}),
    ("tenant", "POST", f"{JOB}/enable", {}),
    ("tenant", "POST", f"{JOB}/disable", {}),
    ("tenant", "POST", f"{JOB}/pause", {"minutes": 30}),
    ("tenant", "POST", f"{JOB}/resume", {}),
    ("tenant", "POST", RUN, {"params": {"seconds": 0}}),
    ("operator", "POST", "/api/jobs/test_sleep/run", {"community": "acme"}),
    ("operator", "POST", "/api/jobs/test_sleep/toggle", {"enabled": False, "community": "acme"}),
]
WRITE_IDS = [f"{method} {path.removeprefix('/api/')}" for _, method, path, _ in WRITES]


def as_caller(request: pytest.FixtureRequest, who: str) -> Api:
    return request.getfixturevalue(who)


@pytest.mark.parametrize(("who", "method", "path", "valid"), WRITES, ids=WRITE_IDS)
def test_unknown_fields_are_400_listing_them_and_change_nothing(
        request: pytest.FixtureRequest, community: Community, settings, who: str,
        method: str, path: str, valid: dict[str, Any]) -> None:
    """A misspelt field is an error, not a silent no-op; the request changes nothing and
    spends no cooldown."""
    settings.AUTOMATION_TRIGGER_COOLDOWN_SECONDS = 60
    api = as_caller(request, who)
    before = state(community)
    for extra in ({"cron_overide": "1 * * * *"}, {"enabeld": True, "x": None},
                  {"": 1}, {"Params": {}}):
        body = assert_error(api.send(method, path, json.dumps({**valid, **extra})), 400,
                            "invalid")
        assert set(body["errors"]) == set(extra), body
        assert all("Unknown field" in body["errors"][name][0] for name in extra)
    assert state(community) == before
    # The same request without them goes through (a run: its cooldown was not spent).
    assert api.send(method, path, json.dumps(valid)).status_code in (200, 202)


# Per field of each write endpoint: the other fields it needs, and values of wrong type.
WRONG_TYPES = [
    ("tenant", "PATCH", JOB, {}, "enabled", [7, 0, [], {}, None, "true"]),
    ("tenant", "PATCH", JOB, {}, "cron_override", [7, ["1 * * * *"], {}, True, None]),
    ("tenant", "PATCH", JOB, {}, "params", [7, [], True, None, "seconds=1"]),
    ("tenant", "POST", f"{JOB}/pause", {}, "until", [1767225600, [], {}, True, None]),
    ("tenant", "POST", f"{JOB}/pause", {}, "minutes", ["30", [30], {}, True, None, 1.5]),
    ("tenant", "POST", RUN, {}, "params", [7, [], True, None, "seconds=1"]),
    ("operator", "POST", "/api/jobs/test_sleep/run", {}, "community", [[], {}, True, None,
                                                                      1.5]),
    ("operator", "POST", "/api/jobs/test_sleep/run", {"community": "acme"}, "params",
     [7, [], True, None]),
    ("operator", "POST", "/api/jobs/test_sleep/toggle", {}, "enabled", [7, 1, [], {}, None,
                                                                       "false"]),
    ("operator", "POST", "/api/jobs/test_sleep/toggle", {"enabled": False}, "community",
     [[], {}, True, None, 2.5]),
]


@pytest.mark.parametrize(("who", "method", "path", "others", "field", "values"), WRONG_TYPES,
                         ids=[f"{row[2].removeprefix('/api/')} {row[4]}" for row in WRONG_TYPES])
def test_a_value_of_the_wrong_json_type_is_400_naming_its_field(
        request: pytest.FixtureRequest, community: Community, who: str, method: str,
        path: str, others: dict[str, Any], field: str, values: list[Any]) -> None:
    api = as_caller(request, who)
    before = state(community)
    for value in values:
        response = api.send(method, path, json.dumps({**others, field: value}))
        assert field in assert_error(response, 400, "invalid")["errors"], value
    assert state(community) == before


@pytest.mark.parametrize(("who", "method", "path", "valid"), WRITES, ids=WRITE_IDS)
def test_a_body_that_is_not_an_object_is_400(request: pytest.FixtureRequest, who: str,
                                             method: str, path: str,
                                             valid: dict[str, Any]) -> None:
    api = as_caller(request, who)
    for body in ("7", "[]", '"x"', "true", "null", "[{}]"):
        assert_error(api.send(method, path, body), 400)


@pytest.mark.parametrize("content_type", ["application/json",
                                          "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x"])
def test_an_empty_body_is_an_empty_object_not_a_form(operator: Api, community: Community,
                                                     content_type: str) -> None:
    """With no body and a form's media type DRF hands serializers an empty form, where a
    missing boolean reads as false: toggle would turn the job off everywhere. It is {}
    instead, which lacks `enabled`: 400."""
    response = operator.send("POST", "/api/jobs/test_sleep/toggle", content_type=content_type)
    assert "enabled" in assert_error(response, 400, "invalid")["errors"]
    assert CommunityAutomationSetting.objects.get(community=community,
                                                  job_name="test_sleep").enabled


@pytest.mark.parametrize(("job", "param", "values"), [
    ("analytics_backfill_replay", "start", [12345, [], {}, True, 1.5]),
    ("analytics_backfill_replay", "end", [12345, ["2026-01-01"], {"y": 2026}, False]),
    ("analytics_daily_report", "date", [20260101, [], {}, True]),
    ("analytics_monthly_usage_summary", "month", [202601, [], {}, True]),
    ("weekly_leaderboard_recalculate", "period", [202601, [], {}, True]),
    ("test_sleep", "seconds", [[], {}, True]),
])
def test_a_param_of_the_wrong_json_type_is_400(tenant: Api, operator: Api,
                                               community: Community, settings, job: str,
                                               param: str, values: list[Any]) -> None:
    """Through every door params come in: stored (PATCH), run by the key, run by the
    operator. `{"start": 12345}` was an AttributeError in the form."""
    settings.AUTOMATION_TRIGGER_COOLDOWN_SECONDS = 60
    before = state(community)
    for value in values:
        given = {param: value}
        for response in (
                tenant.patch(f"/api/communities/acme/jobs/{job}", {"params": given}),
                tenant.post(f"/api/communities/acme/jobs/{job}/run", {"params": given}),
                operator.post(f"/api/jobs/{job}/run", {"community": "acme", "params": given})):
            errors = assert_error(response, 400, "invalid")["errors"]
            assert any(line.startswith(f"{param}:") for line in errors["params"]), errors
    assert state(community) == before


# --- dates -----------------------------------------------------------------------------

EXTREME_DAYS = ["0001-01-01", "9999-12-31", "1999-12-31", "2100-01-01"]


def week_of(day: str) -> str:
    year = day[:4]
    return f"{year}-W01" if day.endswith("01-01") else f"{year}-W52"


# Every date-ish param: job, param, how a day is written for it, the other params it needs.
DATE_PARAMS = [
    ("analytics_backfill_replay", "start", lambda day: f"{day}T00:00:00Z",
     {"end": "2026-01-02T00:00:00Z"}),
    ("analytics_backfill_replay", "end", lambda day: f"{day}T00:00:00Z",
     {"start": "2026-01-01T00:00:00Z"}),
    ("analytics_backfill_replay", "start", lambda day: f"{day}T12:00:00+05:00",
     {"end": "2026-01-02T00:00:00Z"}),
    ("analytics_daily_report", "date", lambda day: day, {}),
    ("analytics_monthly_usage_summary", "month", lambda day: day[:7], {}),
    ("weekly_leaderboard_recalculate", "period", week_of, {}),
]


@pytest.mark.parametrize(("job", "param", "written", "others"), DATE_PARAMS,
                         ids=[f"{row[0]} {row[1]} {row[2]('D')}" for row in DATE_PARAMS])
def test_param_dates_outside_the_platform_range_are_400_saying_the_range(
        tenant: Api, operator: Api, community: Community, settings, job: str, param: str,
        written: Any, others: dict[str, Any]) -> None:
    settings.AUTOMATION_TRIGGER_COOLDOWN_SECONDS = 60
    before = state(community)
    for day in EXTREME_DAYS:
        params = {**others, param: written(day)}
        for response in (
                tenant.patch(f"/api/communities/acme/jobs/{job}", {"params": params}),
                tenant.post(f"/api/communities/acme/jobs/{job}/run", {"params": params}),
                operator.post(f"/api/jobs/{job}/run", {"community": "acme", "params": params})):
            body = assert_error(response, 400, "invalid")
            assert RANGE_TEXT in json.dumps(body), (day, body)
    assert state(community) == before


@pytest.mark.parametrize("until", [*(f"{day}T00:00:00Z" for day in EXTREME_DAYS),
                                   "9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+05:00",
                                   "2099-12-31T23:30:00-01:00"])
def test_a_pause_until_outside_the_platform_range_is_400_saying_the_range(
        tenant: Api, community: Community, until: str) -> None:
    body = assert_error(tenant.post(f"{JOB}/pause", {"until": until}), 400, "invalid")
    assert RANGE_TEXT in body["errors"]["until"][0]
    assert CommunityAutomationSetting.objects.get(
        community=community, job_name="test_sleep").paused_until is None


def test_dates_at_the_ends_of_the_range_are_accepted_and_stored_cleaned(
        tenant: Api, community: Community) -> None:
    """The range is inclusive, and stored params are what the form cleaned them to (a
    datetime in UTC), not what was sent."""
    for day in ("2000-01-01", "2099-12-31"):
        response = tenant.patch("/api/communities/acme/jobs/analytics_daily_report",
                                {"params": {"date": day}})
        assert response.status_code == 200 and response.json()["params"] == {"date": day}
    response = tenant.patch("/api/communities/acme/jobs/analytics_backfill_replay", {
        "params": {"start": "2026-01-05T01:00:00+01:00", "end": "2026-01-05T12:00:00+01:00"}})
    assert response.status_code == 200, response.content
    stored = CommunityAutomationSetting.objects.get(community=community,
                                                    job_name="analytics_backfill_replay")
    assert stored.params == {"start": "2026-01-05T00:00:00+00:00",
                             "end": "2026-01-05T11:00:00+00:00"}


def test_run_params_are_stored_cleaned(operator: Api, community: Community) -> None:
    response = operator.post("/api/jobs/analytics_backfill_replay/run", {
        "community": "acme",
        "params": {"start": "2026-01-05T05:30:00+05:30", "end": "2026-01-06T00:00:00Z",
                   "dry_run": True}})
    assert response.status_code == 202, response.content
    assert JobRun.objects.get().params == {"start": "2026-01-05T00:00:00+00:00",
                                           "end": "2026-01-06T00:00:00+00:00",
                                           "dry_run": True}


# --- inactive communities --------------------------------------------------------------

READS = ["/api/whoami", "/api/communities/acme", "/api/communities/acme/jobs", JOB,
         "/api/communities/acme/runs"]


@pytest.fixture
def inactive(community: Community) -> Community:
    community.is_active = False
    community.save()
    return community


def test_an_inactive_communitys_key_is_403_on_every_endpoint(
        tenant: Api, inactive: Community, settings) -> None:
    settings.AUTOMATION_TRIGGER_COOLDOWN_SECONDS = 0
    run = JobRun.objects.create(job_name="test_sleep", community=inactive, trigger="manual",
                                scheduled_for=timezone.now())
    before = state(inactive)
    for path in [*READS, f"/api/communities/acme/runs/{run.pk}", "/api/jobs"]:
        body = assert_error(tenant.get(path), 403, "community_inactive")
        assert body["detail"].startswith("community acme is inactive"), path
    for _, method, path, valid in WRITES[:6]:
        body = assert_error(tenant.send(method, path, json.dumps(valid)), 403,
                            "community_inactive")
        assert "community acme is inactive" in body["detail"]
    assert state(inactive) == before
    # Reactivated, the same key works again: it was refused, not revoked.
    Community.objects.filter(pk=inactive.pk).update(is_active=True)
    assert tenant.get(JOB).status_code == 200


def test_the_operator_reads_an_inactive_community_but_changes_nothing_there(
        operator: Api, inactive: Community, other_community: Community, settings) -> None:
    settings.AUTOMATION_TRIGGER_COOLDOWN_SECONDS = 0
    for path in READS[1:]:
        assert operator.get(path).status_code == 200, path
    before = state(inactive)
    for _, method, path, valid in WRITES:
        body = assert_error(operator.send(method, path, json.dumps(valid)), 400, "refused")
        assert "community acme is inactive" in body["detail"], (path, body)
    assert state(inactive) == before
    # For every community at once: the run skips it, the switch includes it.
    response = operator.post("/api/jobs/test_sleep/run", {})
    assert response.status_code == 202
    assert [run["community"] for run in response.json()["runs"]] == ["kolkata"]
    assert operator.post("/api/jobs/test_sleep/toggle", {"enabled": False}).json()[
        "changed"] == 2


# --- every error is the API's JSON ----------------------------------------------------------

def test_the_schema_documents_the_boundary(operator: Api) -> None:
    """What the fuzz test holds the API to: every request body takes only its own fields,
    every operation documents 400 and 403, one with a body 413 and 415."""
    schema = operator.get("/api/schema").json()
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            documented = set(operation["responses"])
            assert {"400", "401", "403"} <= documented, (method, path)
            if "requestBody" in operation:
                assert {"413", "415"} <= documented, (method, path)
                ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
                component = schema["components"]["schemas"][ref.rsplit("/", 1)[1]]
                assert component["additionalProperties"] is False, ref
            elif method in ("post", "patch"):
                raise AssertionError(f"{method} {path} documents no body")


def test_errors_django_answers_itself_are_json_too(operator: Api, settings) -> None:
    """Outside DRF (a bad Host header, more query fields than Django parses, a path that
    names nothing, a wrong method or media type) the answer is still the JSON shape."""
    assert_error(operator.get("/api/jobs", **{f"f{i}": "1" for i in range(1_100)}), 400,
                 "bad_request")
    assert_error(operator.client.get("/api/jobs", headers={**operator.headers,
                                                           "host": "evil.example"}), 400)
    assert_error(operator.get("/api/nowhere"), 404, "not_found")
    response = operator.send("DELETE", "/api/jobs")
    assert_error(response, 405, "method_not_allowed")
    assert_error(operator.send("POST", "/api/jobs/test_sleep/run", "community=acme",
                               content_type="application/x-www-form-urlencoded"), 415)


class FailingMiddleware:
    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response

    def __call__(self, request: Any) -> Any:
        raise RuntimeError("a middleware failed")


def test_a_server_error_outside_drf_is_json(settings, community: Community) -> None:
    settings.MIDDLEWARE = [*settings.MIDDLEWARE,
                           "tests.api.test_input_boundary.FailingMiddleware"]
    client = Client(raise_request_exception=False)
    response = client.get("/api/whoami", headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"})
    assert_error(response, 500, "internal_error")
    # Outside /api/ Django's own page is left alone.
    assert not client.get("/admin/login/")["Content-Type"].startswith("application/json")


# --- the trigger cooldown is spent only by runs that exist --------------------------------

@pytest.fixture
def cooldown(settings) -> int:
    settings.AUTOMATION_TRIGGER_COOLDOWN_SECONDS = 60
    return 60


def test_failed_requests_spend_no_cooldown(cooldown: int, tenant: Api, operator: Api,
                                           community: Community) -> None:
    """Each refused request is followed at once by a valid one: 202, never 429."""
    failing = [
        lambda: tenant.post(RUN, {"params": {"seconds": "slow"}}),
        lambda: tenant.post(RUN, {"params": {"nope": 1}}),
        lambda: tenant.post(RUN, {"params": {}, "x": 1}),
        lambda: tenant.send("POST", RUN, '{"params": '),
        lambda: operator.post("/api/jobs/test_sleep/run", {"community": "acme",
                                                           "params": {"seconds": 99}}),
        lambda: operator.post("/api/jobs/test_sleep/run", {"params": {"seconds": -1}}),
    ]
    for attempt in failing:
        assert_error(attempt(), 400)
        response = tenant.post(RUN, {"params": {"seconds": 0}})
        assert response.status_code == 202, response.content
        # Let the next pair start afresh: no run in progress, no cooldown held.
        JobRun.objects.all().delete()
        get_redis().flushdb()


def test_a_run_that_fails_to_queue_spends_no_cooldown(cooldown: int, tenant: Api,
                                                     community: Community,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any, **kwargs: Any) -> JobRun:
        raise RuntimeError("database went away")

    real = operations.enqueue_run
    monkeypatch.setattr(operations, "enqueue_run", broken)
    assert_error(tenant.post(RUN, {"params": {"seconds": 0}}), 500, "internal_error")
    monkeypatch.setattr(operations, "enqueue_run", real)
    response = tenant.post(RUN, {"params": {"seconds": 0}})
    assert response.status_code == 202, response.content


def test_stored_params_that_no_longer_validate_spend_no_cooldown(
        cooldown: int, tenant: Api, community: Community) -> None:
    """The run's params merged over the stored ones are checked before the cooldown is
    claimed: stored params made invalid (by a job's form changing, say) answer 400, and once
    fixed the next request runs."""
    setting = CommunityAutomationSetting.objects.filter(community=community,
                                                        job_name="test_sleep")
    setting.update(params={"seconds": "forever"})  # past the model's validation
    assert_error(tenant.post(RUN), 400, "invalid")
    setting.update(params={})
    assert tenant.post(RUN).status_code == 202


def test_a_run_that_was_created_still_spends_its_cooldown(cooldown: int, tenant: Api) -> None:
    assert tenant.post(RUN).status_code == 202
    JobRun.objects.update(status=JobRun.Status.SUCCEEDED)
    body = assert_error(tenant.post(RUN), 429, "too_soon")
    assert 1 <= body["retry_after"] <= cooldown


def test_keys_of_other_communities_are_untouched(other_community: Community, tenant: Api) -> None:
    """(The inactive rule is per community: another community's key still works.)"""
    other = Api(ApiKey.issue(other_community, "t", now=timezone.now())[1])
    Community.objects.filter(slug="acme").update(is_active=False)
    assert other.get("/api/communities/kolkata/jobs").status_code == 200
    assert_error(tenant.get("/api/communities/acme/jobs"), 403, "community_inactive")
