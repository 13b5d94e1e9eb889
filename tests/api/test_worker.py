"""A run queued through the API really runs on a Celery worker, with its params."""

from __future__ import annotations

import pytest

from automation.connections import get_redis
from automation.models import JobRun
from communities.models import Community
from tests.conftest import wait_for

from .conftest import Api

pytestmark = pytest.mark.worker


def test_run_queued_by_the_api_executes(worker, community: Community, tenant: Api) -> None:
    response = tenant.post("/api/communities/acme/jobs/test_sleep/run",
                           {"params": {"seconds": 0.2}})
    assert response.status_code == 202
    run_id = response.json()["run_ids"][0]
    run = wait_for(lambda: JobRun.objects.filter(pk=run_id, status="succeeded").first())
    assert run.result == {"slept": 0.2} and run.trigger == "api"
    assert get_redis().llen(f"test:ran:{community.pk}") == 1
    shown = tenant.get(f"/api/communities/acme/runs/{run_id}").json()
    assert shown["status"] == "succeeded" and shown["duration_seconds"] >= 0.2
