"""Schema-driven fuzzing (schemathesis) of every operation, as the operator and as a key.

The schema is the one the app serves. Each operation is fuzzed twice, the same on every
run: with valid requests (its boundary cases, then generated ones) and with invalid ones
(a value of the wrong type or outside its bounds, a missing required field, a field the
body does not take, missing credentials). No answer may be a 5xx, every answer must match
what the schema documents (status, content type, body), an invalid request must be refused
with a 4xx, and every error answer must be the API's JSON error.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest
import schemathesis
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.utils import timezone
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.parameters import ParameterLocation
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from api.models import ApiKey
from automation.models import JobRun
from communities.models import Community

from .conftest import OPERATOR_TOKEN

pytestmark = pytest.mark.django_db

JOBS = ["test_sleep", "test_flaky", "daily_community_digest", "analytics_backfill_replay"]


def served_schema(mode: GenerationMode) -> schemathesis.BaseSchema:
    schema = schemathesis.openapi.from_wsgi("/api/schema", WSGIHandler())
    schema.config.generation.update(modes=[mode])
    return schema


valid = served_schema(GenerationMode.POSITIVE)
invalid = served_schema(GenerationMode.NEGATIVE)


def json_error(ctx: schemathesis.CheckContext, response: schemathesis.Response,
               case: schemathesis.Case) -> None:
    """An error answer is the API's JSON error: {"detail": text, "code": text, ...}."""
    if response.status_code >= 400:
        body = response.json()
        assert isinstance(body, dict), body
        assert isinstance(body.get("detail"), str) and isinstance(body.get("code"), str), body


CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance, json_error]


@pytest.fixture(autouse=True)
def keep_connection() -> Iterator[None]:
    """Requests run inside the test's transaction, so Django must not close the connection
    after each one (its own test client arranges the same)."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture(params=["operator", "api_key"])
def caller(request, community: Community, other_community: Community) -> dict:
    """Credentials, and real path values: the key's own community and another one."""
    raw = ApiKey.issue(community, "fuzz", now=timezone.now())[1]
    runs = [JobRun.objects.create(job_name="test_sleep", community=c, trigger="manual",
                                  scheduled_for=timezone.now(), status="succeeded").pk
            for c in (community, other_community)]
    token = OPERATOR_TOKEN if request.param == "operator" else raw
    return {"headers": {"Authorization": f"Bearer {token}"},
            "path": {"slug": ["acme", "kolkata"], "name": JOBS, "run_id": runs}}


def call(case: schemathesis.Case, caller: dict, checks: list) -> None:
    # Generated path values almost never name a real community, job or run: mostly, one
    # that exists is put in instead (chosen from the case itself, so runs repeat exactly).
    # Where a negative case made the path or the credentials invalid, they stay as they
    # are: that is what it tests.
    meta = case.meta
    negated = {location for location in ParameterLocation
               if meta is not None and meta.is_negative_at(location)}
    if ParameterLocation.PATH not in negated:
        choose = random.Random(repr(sorted((case.path_parameters or {}).items())))
        for name, values in caller["path"].items():
            if name in (case.path_parameters or {}) and choose.random() < 0.8:
                case.path_parameters[name] = choose.choice(values)
    headers = caller["headers"] if ParameterLocation.HEADER not in negated else None
    case.call_and_validate(headers=headers, checks=checks)


@valid.parametrize()
@settings(max_examples=15, derandomize=True, deadline=None,
          suppress_health_check=list(HealthCheck))
def test_valid_requests(case: schemathesis.Case, caller: dict) -> None:
    call(case, caller, CHECKS)


@invalid.parametrize()
@settings(max_examples=15, derandomize=True, deadline=None,
          suppress_health_check=list(HealthCheck))
def test_invalid_requests_are_refused(case: schemathesis.Case, caller: dict) -> None:
    call(case, caller, [*CHECKS, negative_data_rejection])
