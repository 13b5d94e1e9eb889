"""Who may call what: the operator token, community keys, and everyone else."""

from __future__ import annotations

import pytest
from django.test import Client
from django.utils import timezone

from api.models import ApiKey, hash_key
from automation.models import JobRun
from communities.models import Community

from .conftest import OPERATOR_TOKEN, Api

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("path", ["/api/jobs", "/api/communities/acme/jobs", "/api/whoami"])
def test_no_credentials_is_401_json_with_www_authenticate(community: Community,
                                                          path: str) -> None:
    response = Api(None).get(path)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'
    assert response.json()["code"] == "not_authenticated"


@pytest.mark.parametrize("header", ["Bearer nope", "Bearer cak_12345678_forged", "Basic YTpi",
                                    "Bearer", "Bearer cak_"])
def test_bad_credentials_are_401(community: Community, header: str) -> None:
    api = Api(None)
    response = api.client.get("/api/communities/acme/jobs", headers={"Authorization": header})
    assert response.status_code == 401, response.content
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert response.json()["code"] == "authentication_failed"


def test_empty_operator_token_setting_disables_operator_access(settings) -> None:
    """With no token configured, no bearer value (not even an empty one) is the operator."""
    settings.AUTOMATION_API_TOKEN = ""
    assert Api("anything").get("/api/jobs").status_code == 401


def test_a_key_is_stored_hashed_and_shown_only_at_creation(community: Community) -> None:
    key, raw = ApiKey.issue(community, "ci", now=timezone.now())
    assert raw.startswith(f"cak_{key.prefix}_") and len(raw) > 40
    stored = ApiKey.objects.values().get(pk=key.pk)
    assert raw not in {str(value) for value in stored.values()}
    assert stored["secret_hash"] == hash_key(raw)


def test_revoked_key_is_401(community: Community, key: tuple[ApiKey, str]) -> None:
    api_key, raw = key
    assert Api(raw).get("/api/communities/acme/jobs").status_code == 200
    api_key.revoke(timezone.now())
    response = Api(raw).get("/api/communities/acme/jobs")
    assert response.status_code == 401
    assert response.json()["detail"] == "Unknown or revoked API key."


def test_key_use_is_stamped(key: tuple[ApiKey, str], tenant: Api) -> None:
    assert key[0].last_used_at is None
    tenant.get("/api/whoami")
    key[0].refresh_from_db()
    assert key[0].last_used_at is not None


def test_whoami(tenant: Api, operator: Api, key: tuple[ApiKey, str]) -> None:
    assert tenant.get("/api/whoami").json() == {
        "kind": "api_key", "label": f"api-key:{key[0].prefix}", "community": "acme"}
    assert operator.get("/api/whoami").json() == {
        "kind": "operator", "label": "operator-token", "community": None}


@pytest.mark.parametrize("path", ["/api/jobs", "/api/summary", "/api/jobs/test_sleep",
                                  "/api/jobs/test_sleep/history"])
def test_a_community_key_cannot_use_operator_endpoints(tenant: Api, path: str) -> None:
    response = tenant.get(path)
    assert response.status_code == 403
    assert "operator token" in response.json()["detail"]


def test_operator_endpoints_refuse_a_key_for_writes_too(tenant: Api) -> None:
    assert tenant.post("/api/jobs/test_sleep/run", {}).status_code == 403
    assert tenant.post("/api/jobs/test_sleep/toggle", {"enabled": False}).status_code == 403
    assert not JobRun.objects.exists()


def test_another_communitys_things_answer_404_like_missing_ones(
        community: Community, other_community: Community, other_tenant: Api) -> None:
    """Kolkata's key sees nothing of acme: every answer equals that for a made-up slug."""
    run = JobRun.objects.create(job_name="test_sleep", community=community, trigger="manual",
                                scheduled_for=timezone.now())
    for path, method in [("", "get"), ("/jobs", "get"), ("/jobs/test_sleep", "get"),
                         ("/runs", "get"), ("/jobs/test_sleep/enable", "post"),
                         ("/jobs/test_sleep/disable", "post"), ("/jobs/test_sleep/run", "post"),
                         ("/jobs/test_sleep/pause", "post"), ("/jobs/test_sleep/resume", "post")]:
        theirs = getattr(other_tenant, method)(f"/api/communities/acme{path}")
        missing = getattr(other_tenant, method)(f"/api/communities/no-such-place{path}")
        assert theirs.status_code == missing.status_code == 404, path
        assert theirs.json()["detail"].replace("acme", "X") == \
            missing.json()["detail"].replace("no-such-place", "X")
    assert other_tenant.patch("/api/communities/acme/jobs/test_sleep",
                              {"cron_override": "1 * * * *"}).status_code == 404
    # A run id of acme's under the key's own community is a missing run, too.
    response = other_tenant.get(f"/api/communities/kolkata/runs/{run.pk}")
    assert response.status_code == 404
    assert other_tenant.get(f"/api/communities/acme/runs/{run.pk}").status_code == 404
    setting = community.automation_settings.get(job_name="test_sleep")
    assert setting.enabled and not setting.cron_override and setting.paused_until is None
    assert JobRun.objects.count() == 1


def test_the_operator_reaches_every_community(operator: Api, community: Community,
                                              other_community: Community) -> None:
    for slug in ("acme", "kolkata"):
        assert operator.get(f"/api/communities/{slug}/jobs").status_code == 200


def test_unknown_api_paths_are_json_404(operator: Api) -> None:
    for path in ("/api/nothing", "/api/jobs/", "/api/runs/abc"):
        response = operator.get(path)
        assert response.status_code == 404
        assert response["Content-Type"] == "application/json"
        assert response.json()["code"] == "not_found"


def test_schema_is_public_and_names_both_schemes() -> None:
    response = Api(None).get("/api/schema")
    assert response.status_code == 200
    schema = response.json()
    assert set(schema["components"]["securitySchemes"]) == {"operatorToken", "communityApiKey"}
    assert schema["paths"]["/api/jobs"]["get"]["security"] == [{"operatorToken": []}]
    assert {"communityApiKey": []} in \
        schema["paths"]["/api/communities/{slug}/jobs"]["get"]["security"]


def test_wrong_method_and_media_type_are_json(operator: Api, community: Community) -> None:
    wrong_method = operator.client.delete("/api/jobs", headers=operator.headers)
    assert wrong_method.status_code == 405 and wrong_method.json()["code"] == \
        "method_not_allowed"
    form = operator.client.post("/api/jobs/test_sleep/toggle", {"enabled": "true"},
                                headers=operator.headers)
    assert form.status_code == 415 and form.json()["code"] == "unsupported_media_type"


def test_swagger_page_is_served() -> None:
    response = Api(None).get("/api/docs")
    assert response.status_code == 200 and b"/api/schema" in response.content


def test_bearer_requests_need_no_csrf_token(community: Community) -> None:
    """Real clients send no CSRF cookie: the API (even a wrong path) must not ask for one."""
    client = Client(enforce_csrf_checks=True)
    headers = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
    ok = client.post("/api/jobs/test_sleep/toggle", '{"enabled": false}',
                     content_type="application/json", headers=headers)
    assert ok.status_code == 200
    missing = client.post("/api/nowhere", "{}", content_type="application/json",
                          headers=headers)
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"
