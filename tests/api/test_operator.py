"""Operator endpoints: registry, one job, run now, toggle, history, runs, summary."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from automation.models import AuditEntry, CommunityAutomationSetting, JobRun
from automation.schedules import periodic_task_name
from communities.models import Community

from .conftest import Api

pytestmark = pytest.mark.django_db


def make_run(community: Community, status: str, *, job: str = "test_sleep", ago: float = 1.0,
             duration: float | None = 1.5, error: str = "") -> JobRun:
    now = timezone.now()
    run = JobRun.objects.create(job_name=job, community=community, trigger="schedule",
                                scheduled_for=now, status=status, duration_seconds=duration,
                                finished_at=now, error_message=error)
    JobRun.objects.filter(pk=run.pk).update(created_at=now - timedelta(hours=ago))
    return run


def test_job_list_is_the_catalogue_with_toggles_and_figures(
        operator: Api, community: Community, other_community: Community) -> None:
    CommunityAutomationSetting.objects.filter(
        community=other_community, job_name="daily_community_digest").update(enabled=False)
    make_run(community, "succeeded", job="daily_community_digest")
    make_run(community, "failed", job="daily_community_digest")
    response = operator.get("/api/jobs")
    assert response.status_code == 200
    jobs = {row["name"]: row for row in response.json()["jobs"]}
    assert "test_sleep" not in jobs  # test-only jobs are not the catalogue
    digest = jobs["daily_community_digest"]
    assert digest["category"] == "notifications" and digest["queue"] == "notifications"
    assert digest["cron"] == "0 12 * * *" and digest["schedule"] == "At 12:00 PM"
    assert (digest["enabled"], digest["communities"]) == (1, 2)
    assert (digest["runs"], digest["succeeded"], digest["failures"]) == (2, 1, 1)
    assert digest["success_rate"] == 50.0 and digest["health"] == "red"
    assert digest["next_run"] is not None
    assert jobs["analytics_backfill_replay"]["schedule"] == "on demand"


def test_job_list_filters_by_category_and_validates_it(operator: Api) -> None:
    rows = operator.get("/api/jobs", category="billing").json()["jobs"]
    assert [row["name"] for row in rows] == ["subscription_delinquency_retry"]
    response = operator.get("/api/jobs", category="nope")
    assert response.status_code == 400 and "category" in response.json()["errors"]


def test_job_detail_describes_limits_and_params(operator: Api, community: Community) -> None:
    response = operator.get("/api/jobs/test_sleep")
    assert response.status_code == 200
    job = response.json()
    assert (job["soft_time_limit"], job["time_limit"]) == (2, 6)
    assert job["params"] == [{"name": "seconds", "type": "FloatField", "required": False,
                              "initial": 0.0, "help_text": ""}]
    assert job["enabled"] == 1


def test_unknown_job_is_404_with_a_message(operator: Api) -> None:
    for response in (operator.get("/api/jobs/nope"), operator.post("/api/jobs/nope/run", {}),
                     operator.get("/api/jobs/nope/history"),
                     operator.post("/api/jobs/nope/toggle", {"enabled": True})):
        assert response.status_code == 404
        assert response.json()["code"] == "unknown_job"
        assert "unknown job 'nope'" in response.json()["detail"]


def test_run_for_one_community_is_202_with_the_run(operator: Api, community: Community,
                                                   other_community: Community) -> None:
    response = operator.post("/api/jobs/test_sleep/run",
                             {"community": "acme", "params": {"seconds": 0.5}})
    assert response.status_code == 202, response.json()
    body = response.json()
    run = JobRun.objects.get()
    assert body["run_ids"] == [run.pk] and body["runs"][0]["status"] == "queued"
    assert (run.community, run.trigger, run.params) == (community, "api", {"seconds": 0.5})
    entry = AuditEntry.objects.get(action="run.trigger")
    assert entry.actor_label == "operator-token" and entry.community == community


def test_run_by_community_id(operator: Api, community: Community) -> None:
    response = operator.post("/api/jobs/test_sleep/run", {"community": community.pk})
    assert response.status_code == 202
    assert JobRun.objects.get().community == community


def test_run_for_all_lists_who_was_left_out(operator: Api, community: Community,
                                            other_community: Community) -> None:
    CommunityAutomationSetting.objects.filter(community=other_community,
                                              job_name="test_sleep").update(enabled=False)
    response = operator.post("/api/jobs/test_sleep/run")
    assert response.status_code == 202
    body = response.json()
    assert len(body["run_ids"]) == 1 and body["disabled"] == ["kolkata"]
    # Again at once: acme's run is still queued, kolkata's is off: nothing to queue.
    again = operator.post("/api/jobs/test_sleep/run")
    assert again.status_code == 409
    assert again.json()["code"] == "nothing_queued"
    assert again.json()["in_progress"] == ["acme"] and again.json()["disabled"] == ["kolkata"]


def test_run_in_progress_is_409_and_repeat_is_429_with_retry_after(
        operator: Api, community: Community) -> None:
    first = operator.post("/api/jobs/test_sleep/run", {"community": "acme"})
    assert first.status_code == 202
    busy = operator.post("/api/jobs/test_sleep/run", {"community": "acme"})
    assert busy.status_code == 409 and busy.json()["code"] == "run_in_progress"
    JobRun.objects.update(status="succeeded")
    soon = operator.post("/api/jobs/test_sleep/run", {"community": "acme"})
    assert soon.status_code == 429
    assert soon.json()["code"] == "too_soon"
    assert 1 <= int(soon["Retry-After"]) <= 10 and soon.json()["retry_after"] == \
        int(soon["Retry-After"])


def test_run_of_a_disabled_job_is_409(operator: Api, community: Community) -> None:
    CommunityAutomationSetting.objects.filter(job_name="test_sleep").update(enabled=False)
    response = operator.post("/api/jobs/test_sleep/run", {"community": "acme"})
    assert response.status_code == 409 and response.json()["code"] == "job_disabled"


@pytest.mark.parametrize(("body", "field"), [
    ({"community": "atlantis"}, "community"),
    ({"community": True}, "community"),
    ({"params": {"seconds": 99}}, "params"),
    ({"params": {"bogus": 1}}, "params"),
    ({"params": [1]}, "params"),
])
def test_run_validation_is_400_per_field(operator: Api, community: Community, body: dict,
                                         field: str) -> None:
    response = operator.post("/api/jobs/test_sleep/run", body)
    assert response.status_code == 400, response.json()
    assert field in response.json()["errors"]
    assert not JobRun.objects.exists()
    # A refused request spends no cooldown: a correct one right after is accepted.
    assert operator.post("/api/jobs/test_sleep/run", {"community": "acme"}).status_code == 202
    JobRun.objects.all().delete()


def test_run_params_error_names_the_param(operator: Api, community: Community) -> None:
    response = operator.post("/api/jobs/test_sleep/run",
                             {"community": "acme", "params": {"seconds": 99}})
    assert response.json()["errors"]["params"] == [
        "seconds: Ensure this value is less than or equal to 30."]


def test_malformed_json_is_400_json(operator: Api, community: Community) -> None:
    response = operator.client.post("/api/jobs/test_sleep/run", "{nope",
                                    content_type="application/json", headers=operator.headers)
    assert response.status_code == 400 and response.json()["code"] == "parse_error"


@pytest.mark.django_db(transaction=True)  # beat rows follow settings after each commit
def test_toggle_changes_settings_and_beat_rows(operator: Api, community: Community,
                                               other_community: Community) -> None:
    rows = {c.slug: periodic_task_name(c.pk, "test_sleep") for c in (community,
                                                                     other_community)}
    assert PeriodicTask.objects.filter(name__in=rows.values(), enabled=True).count() == 2
    response = operator.post("/api/jobs/test_sleep/toggle",
                             {"enabled": False, "community": "acme"})
    assert response.status_code == 200
    assert response.json() == {"job": "test_sleep", "enabled": False, "community": "acme",
                               "changed": 1}
    assert not PeriodicTask.objects.get(name=rows["acme"]).enabled
    assert PeriodicTask.objects.get(name=rows["kolkata"]).enabled
    response = operator.post("/api/jobs/test_sleep/toggle", {"enabled": False})
    assert response.json()["changed"] == 1  # only kolkata was still on
    assert not PeriodicTask.objects.filter(name__in=rows.values(), enabled=True).exists()
    assert not CommunityAutomationSetting.objects.filter(job_name="test_sleep",
                                                         enabled=True).exists()
    entries = AuditEntry.objects.filter(action="setting.update", job_name="test_sleep")
    assert {e.actor_label for e in entries} == {"operator-token"} and entries.count() == 2
    assert entries.first().after == {"enabled": False}


def test_toggle_validation(operator: Api, community: Community) -> None:
    for body in ({}, {"enabled": "maybe"}, {"enabled": True, "community": "atlantis"}):
        response = operator.post("/api/jobs/test_sleep/toggle", body)
        assert response.status_code == 400, body
        assert response.json()["code"] == "invalid"


def test_history_has_stats_timeline_and_runs(operator: Api, community: Community,
                                             other_community: Community) -> None:
    make_run(community, "succeeded", duration=1.0, ago=2)
    make_run(community, "succeeded", duration=3.0, ago=1)
    make_run(other_community, "failed", error="boom", ago=1)
    make_run(community, "succeeded", ago=24 * 10)  # outside a 7-day window
    response = operator.get("/api/jobs/test_sleep/history", days=7, limit=2)
    assert response.status_code == 200
    body = response.json()
    assert body["unit"] == "day"
    stats = body["stats"]
    assert (stats["runs"], stats["succeeded"], stats["failed"]) == (3, 2, 1)
    assert (stats["min_duration"], stats["max_duration"]) == (1.0, 3.0)
    assert sum(b["succeeded"] + b["failed"] for b in body["timeline"]) == 3
    assert len(body["runs"]) == 2
    assert {"celery_task_id", "worker_hostname"} <= set(body["runs"][0])
    acme = operator.get("/api/jobs/test_sleep/history", days=1, community="acme").json()
    assert acme["community"] == "acme" and acme["unit"] == "hour"
    assert acme["stats"]["runs"] == 2 and acme["stats"]["failed"] == 0


@pytest.mark.parametrize("params", [{"limit": 0}, {"limit": 501}, {"days": 0}, {"days": 366},
                                    {"days": "x"}, {"community": "atlantis"}])
def test_history_validates_its_query(operator: Api, params: dict) -> None:
    response = operator.get("/api/jobs/test_sleep/history", **params)
    assert response.status_code == 400
    assert set(response.json()["errors"]) == set(params)


def test_run_detail(operator: Api, community: Community) -> None:
    run = make_run(community, "failed", error="bad data")
    response = operator.get(f"/api/runs/{run.pk}")
    assert response.status_code == 200
    body = response.json()
    assert (body["id"], body["community"], body["status"], body["error_message"]) == (
        run.pk, "acme", "failed", "bad data")
    assert operator.get(f"/api/runs/{run.pk + 1000}").status_code == 404
    assert operator.get("/api/runs/99999999999999999999999").status_code == 404


def test_summary(operator: Api, community: Community) -> None:
    make_run(community, "succeeded")
    make_run(community, "timed_out")
    body = operator.get("/api/summary", days=1).json()
    assert (body["runs"], body["succeeded"], body["failures"]) == (2, 1, 1)
    assert body["settings_enabled"] >= 1 and body["health"] == "red"
