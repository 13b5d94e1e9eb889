"""/metrics: Prometheus text, optionally behind a bearer token."""

import hmac

import pytest
from django.test import Client

from automation import views
from automation.metrics import observe_finished_run


def test_metrics_are_served_in_prometheus_format(db) -> None:
    observe_finished_run("probe_job", "automation", "succeeded", 0.5, 1_700_000_000.0)
    response = Client().get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    body = response.content.decode()
    assert 'automation_job_runs_total{job="probe_job",queue="automation",status="succeeded"}' in (
        body
    )
    assert "automation_job_last_success_timestamp_seconds" in body


def test_metrics_token_is_required_when_set(db, settings) -> None:
    settings.METRICS_TOKEN = "s3cret-token"
    assert Client().get("/metrics").status_code == 401
    wrong = Client().get("/metrics", HTTP_AUTHORIZATION="Bearer nope")
    assert wrong.status_code == 401
    right = Client().get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-token")
    assert right.status_code == 200


@pytest.mark.parametrize("header", [
    "s3cret-token",                # the bare token, no scheme
    " s3cret-token",
    "Basic s3cret-token",          # another scheme
    "Token s3cret-token",
    "Bearers3cret-token",          # no separator
    "Bearer",                      # the scheme and nothing else
    "Bearer ",
    "Bearer    ",
    "Bearer s3cret-token-and-more",
    "Bearer s3cret",               # a prefix of the token
    "Bearer s3cret-token extra",
    "",
])
def test_metrics_refuse_anything_but_the_bearer_scheme(db, settings, header: str) -> None:
    """Only `Authorization: Bearer <token>` opens /metrics; 401 says which scheme to use."""
    settings.METRICS_TOKEN = "s3cret-token"
    response = Client().get("/metrics", HTTP_AUTHORIZATION=header)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Bearer"
    assert b"automation_" not in response.content


@pytest.mark.parametrize("header", ["Bearer s3cret-token", "bearer s3cret-token",
                                    "BEARER s3cret-token", "Bearer  s3cret-token ",
                                    " Bearer s3cret-token"])
def test_the_bearer_scheme_is_case_insensitive(db, settings, header: str) -> None:
    """RFC 7235: the auth-scheme is case-insensitive, and whitespace around the token is not
    part of it."""
    settings.METRICS_TOKEN = "s3cret-token"
    assert Client().get("/metrics", HTTP_AUTHORIZATION=header).status_code == 200


def test_the_token_is_compared_in_constant_time(db, settings, monkeypatch) -> None:
    """The comparison goes through hmac.compare_digest, never ==."""
    settings.METRICS_TOKEN = "s3cret-token"
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(views.hmac, "compare_digest", spy)
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    assert compared == [(b"wrong", b"s3cret-token")]
