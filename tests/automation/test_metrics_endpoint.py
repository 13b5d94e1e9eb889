"""/metrics: Prometheus text, optionally behind a bearer token."""

from django.test import Client

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
