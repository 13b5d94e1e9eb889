"""Community endpoints through the community's own key: settings, pause, runs."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from django.utils import timezone

from api.models import ApiKey
from automation.models import AuditEntry, CommunityAutomationSetting, JobRun
from communities.models import Community

from .conftest import Api

pytestmark = pytest.mark.django_db

JOB = "/api/communities/acme/jobs/test_sleep"


def setting(community: Community, job: str = "test_sleep") -> CommunityAutomationSetting:
    return community.automation_settings.get(job_name=job)


def test_detail_has_the_community_and_its_totals(tenant: Api, community: Community) -> None:
    body = tenant.get("/api/communities/acme").json()
    assert (body["slug"], body["timezone"], body["is_active"]) == (
        "acme", "America/New_York", True)
    assert body["summary"]["runs"] == 0


def test_settings_list_has_effective_schedule_and_next_run(tenant: Api,
                                                           community: Community) -> None:
    response = tenant.get("/api/communities/acme/jobs")
    assert response.status_code == 200
    rows = {row["job_name"]: row for row in response.json()}
    assert set(rows) == set(community.automation_settings.values_list("job_name", flat=True))
    sleep = rows["test_sleep"]
    assert (sleep["enabled"], sleep["cron"], sleep["schedule"]) == (
        True, "*/5 * * * *", "Every 5 minutes")
    assert sleep["timezone"] == "America/New_York" and sleep["next_run"] is not None
    assert sleep["paused"] is False and sleep["params"] == {}
    assert rows["test_flaky"]["cron"] is None and rows["test_flaky"]["schedule"] == "on demand"


def test_disable_and_enable(tenant: Api, community: Community,
                            key: tuple[ApiKey, str]) -> None:
    response = tenant.post(f"{JOB}/disable")
    assert response.status_code == 200
    assert response.json()["enabled"] is False and response.json()["next_run"] is None
    assert not setting(community).enabled
    assert tenant.post(f"{JOB}/enable").json()["enabled"] is True
    entries = AuditEntry.objects.filter(action="setting.update", community=community)
    assert [e.after for e in entries] == [{"enabled": True}, {"enabled": False}]
    assert {e.actor_label for e in entries} == {f"api-key:{key[0].prefix}"}


def test_pause_for_minutes_then_resume(tenant: Api, community: Community) -> None:
    before = timezone.now()
    response = tenant.post(f"{JOB}/pause", {"minutes": 90})
    assert response.status_code == 200
    body = response.json()
    until = datetime.fromisoformat(body["paused_until"])
    assert timedelta(minutes=89) < until - before < timedelta(minutes=91)
    assert body["paused"] is True
    assert datetime.fromisoformat(body["next_run"]) >= until  # no scheduled run while paused
    resumed = tenant.post(f"{JOB}/resume").json()
    assert resumed["paused_until"] is None and resumed["paused"] is False
    assert setting(community).paused_until is None


def test_pause_until_a_time(tenant: Api, community: Community) -> None:
    until = (timezone.now() + timedelta(days=2)).replace(microsecond=0)
    response = tenant.post(f"{JOB}/pause", {"until": until.isoformat()})
    assert response.status_code == 200
    assert setting(community).paused_until == until


@pytest.mark.parametrize(("body", "field"), [
    ({}, "non_field_errors"),
    ({"minutes": 5, "until": "2030-01-01T00:00:00Z"}, "non_field_errors"),
    ({"minutes": 0}, "minutes"),
    ({"until": "2001-01-01T00:00:00Z"}, "until"),
    ({"until": "9999-12-31T23:59:59Z"}, "until"),
    ({"until": "tomorrow"}, "until"),
])
def test_pause_validation(tenant: Api, community: Community, body: dict, field: str) -> None:
    response = tenant.post(f"{JOB}/pause", body)
    assert response.status_code == 400
    assert field in response.json()["errors"]
    assert setting(community).paused_until is None


def test_patch_sets_cron_override_and_params(tenant: Api, community: Community) -> None:
    response = tenant.patch(JOB, {"cron_override": " 30   7 * * 1 ", "params": {"seconds": 1}})
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["cron_override"] == "30 7 * * 1" and body["cron"] == "30 7 * * 1"
    assert body["schedule"] == "At 07:30 AM, only on Monday"
    assert body["params"] == {"seconds": 1}
    stored = setting(community)
    assert (stored.cron_override, stored.params) == ("30 7 * * 1", {"seconds": 1})
    cleared = tenant.patch(JOB, {"cron_override": ""}).json()
    assert cleared["cron"] == "*/5 * * * *" and cleared["params"] == {"seconds": 1}
    entry = AuditEntry.objects.filter(action="setting.update").first()
    assert entry.before == {"cron_override": "30 7 * * 1"} and entry.after == {
        "cron_override": ""}


@pytest.mark.parametrize(("body", "field", "message"), [
    ({"cron_override": "61 * * * *"}, "cron_override", "is not a valid cron expression"),
    ({"cron_override": "* * *"}, "cron_override", "has 5 fields"),
    ({"cron_override": "x" * 101}, "cron_override", "no more than 100"),
    ({"params": {"seconds": -1}}, "params", "seconds: Ensure this value is greater than"),
    ({"params": {"nope": 1}}, "params", "unknown params: nope"),
    ({"params": "x"}, "params", "dictionary"),
])
def test_patch_validation_is_400_with_field_messages(tenant: Api, community: Community,
                                                     body: dict, field: str,
                                                     message: str) -> None:
    response = tenant.patch(JOB, body)
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert list(errors) == [field]
    assert message in " ".join(errors[field])
    stored = setting(community)
    assert (stored.cron_override, stored.params) == ("", {})


def test_params_errors_read_the_same_on_patch_and_run(tenant: Api,
                                                     community: Community) -> None:
    patch = tenant.patch(JOB, {"params": {"nope": 1, "seconds": "x"}}).json()["errors"]
    run = tenant.post(f"{JOB}/run", {"params": {"nope": 1, "seconds": "x"}}).json()["errors"]
    assert patch == run == {"params": ["unknown params: nope", "seconds: Enter a number."]}


def test_on_demand_job_takes_no_cron_override(tenant: Api, community: Community) -> None:
    response = tenant.patch("/api/communities/acme/jobs/test_flaky",
                            {"cron_override": "0 * * * *"})
    assert response.status_code == 400
    assert response.json()["errors"]["cron_override"] == [
        "This job runs on demand and takes no schedule."]


def test_run_now_is_202_and_audited_as_the_key(tenant: Api, community: Community,
                                               key: tuple[ApiKey, str]) -> None:
    response = tenant.post(f"{JOB}/run", {"params": {"seconds": 0}})
    assert response.status_code == 202
    run = JobRun.objects.get(pk=response.json()["run_ids"][0])
    assert (run.community, run.trigger, run.status) == (community, "api", "queued")
    entry = AuditEntry.objects.get(action="run.trigger")
    assert entry.actor_label == f"api-key:{key[0].prefix}"
    busy = tenant.post(f"{JOB}/run")
    assert busy.status_code == 409
    run.status = "succeeded"
    run.save()
    soon = tenant.post(f"{JOB}/run")
    assert soon.status_code == 429 and "Retry-After" in soon


def test_run_of_a_disabled_job_is_409(tenant: Api, community: Community) -> None:
    tenant.post(f"{JOB}/disable")
    response = tenant.post(f"{JOB}/run")
    assert response.status_code == 409 and response.json()["code"] == "job_disabled"


def test_run_with_bad_params_is_400(tenant: Api, community: Community) -> None:
    response = tenant.post(f"{JOB}/run", {"params": {"seconds": "slow"}})
    assert response.status_code == 400
    assert response.json()["errors"]["params"] == ["seconds: Enter a number."]


def test_unknown_job_and_inactive_community(tenant: Api, operator: Api,
                                            community: Community) -> None:
    """(Keys of an inactive community: tests/api/test_input_boundary.py.)"""
    assert tenant.get("/api/communities/acme/jobs/nope").json()["code"] == "unknown_job"
    Community.objects.filter(pk=community.pk).update(is_active=False)
    response = operator.post(f"{JOB}/run")
    assert response.status_code == 400 and "inactive" in response.json()["detail"]


def test_runs_list_filters_and_pages(tenant: Api, community: Community,
                                     other_community: Community) -> None:
    now = timezone.now()
    for status in ["succeeded", "failed", "succeeded"]:
        JobRun.objects.create(job_name="test_sleep", community=community, trigger="schedule",
                              scheduled_for=now, status=status)
    JobRun.objects.create(job_name="test_broken", community=community, trigger="schedule",
                          scheduled_for=now, status="failed")
    JobRun.objects.create(job_name="test_sleep", community=other_community,
                          trigger="schedule", scheduled_for=now, status="failed")
    everything = tenant.get("/api/communities/acme/runs").json()
    assert everything["count"] == 4
    assert {run["community"] for run in everything["results"]} == {"acme"}
    assert "worker_hostname" not in everything["results"][0]
    failed = tenant.get("/api/communities/acme/runs", status="failed").json()
    assert failed["count"] == 2
    sleep_failed = tenant.get("/api/communities/acme/runs", status="failed",
                              job="test_sleep").json()
    assert sleep_failed["count"] == 1
    page = tenant.get("/api/communities/acme/runs", page=2, page_size=3).json()
    assert (page["count"], page["page"], len(page["results"])) == (4, 2, 1)
    assert page["results"][0]["id"] == everything["results"][-1]["id"]  # newest first
    for bad in ({"status": "exploded"}, {"page": 0}, {"page_size": 201}):
        response = tenant.get("/api/communities/acme/runs", **bad)
        assert response.status_code == 400 and set(response.json()["errors"]) == set(bad)


def test_one_run(tenant: Api, community: Community) -> None:
    run = JobRun.objects.create(job_name="test_sleep", community=community, trigger="manual",
                                scheduled_for=timezone.now(), result={"slept": 0})
    body = tenant.get(f"/api/communities/acme/runs/{run.pk}").json()
    assert (body["id"], body["job_name"], body["result"]) == (run.pk, "test_sleep",
                                                              {"slept": 0})
    assert tenant.get(f"/api/communities/acme/runs/{run.pk + 1}").status_code == 404


def test_odd_slugs_and_references_are_plain_404_and_400(tenant: Api, operator: Api,
                                                        community: Community) -> None:
    """Bytes the database refuses (NUL) and digits that are not ASCII never reach a query."""
    assert tenant.get("/api/communities/ac%00me/jobs").status_code == 404
    assert tenant.get("/api/communities/%C3%A9/runs").status_code == 404
    for reference in ("a\x00b", "²", "9" * 40):
        response = operator.post("/api/jobs/test_sleep/run", {"community": reference})
        assert response.status_code == 400, reference
        assert "community" in response.json()["errors"]
