"""Django admin: registry page, community settings inline, runs, read-only beat rows."""

import pytest
from django.test import Client
from django.urls import reverse
from django_celery_beat.models import PeriodicTask

from automation.models import CommunityAutomationSetting, JobRun
from automation.schedules import periodic_task_name
from communities.models import Community
from tests.conftest import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def inline_data(community: Community, **changes: dict) -> dict:
    """The change form's POST body as the browser would send it, with per-job changes."""
    data = {
        "name": community.name,
        "slug": community.slug,
        "timezone": community.timezone,
        "is_active": "on",
        "member_retention_days": str(community.member_retention_days),
        "content_retention_days": str(community.content_retention_days),
    }
    prefix = "automation_settings"
    settings = list(community.automation_settings.order_by("job_name"))
    data.update({
        f"{prefix}-TOTAL_FORMS": str(len(settings)),
        f"{prefix}-INITIAL_FORMS": str(len(settings)),
        f"{prefix}-MIN_NUM_FORMS": "0",
        f"{prefix}-MAX_NUM_FORMS": "1000",
    })
    for i, setting in enumerate(settings):
        row = {
            "id": str(setting.pk),
            "community": str(community.pk),
            "job_name": setting.job_name,
            "enabled": "on" if setting.enabled else "",
            "cron_override": setting.cron_override,
            "params": "{}",
        }
        row.update(changes.get(setting.job_name, {}))
        for key, value in row.items():
            if key == "enabled" and not value:
                continue
            data[f"{prefix}-{i}-{key}"] = value
    return data


def test_index_links_the_job_registry(admin_client: Client) -> None:
    page = admin_client.get(reverse("admin:index")).content.decode()
    assert "Jobs (registry)" in page
    registry = admin_client.get(reverse("admin:job_registry")).content.decode()
    assert "test_sleep" in registry and "Every 5 minutes" in registry
    assert "on demand" in registry  # test_flaky


def test_community_page_shows_settings_with_schedule_and_next_run(
    admin_client: Client, community: Community
) -> None:
    url = reverse("admin:communities_community_change", args=[community.pk])
    page = admin_client.get(url).content.decode()
    assert "*/5 * * * * (Every 5 minutes)" in page
    assert "EDT" in page or "EST" in page  # next run in the community's local time


def test_override_saved_from_admin_reaches_beat(admin_client: Client, community: Community,
                                                admin_user) -> None:
    url = reverse("admin:communities_community_change", args=[community.pk])
    data = inline_data(community, test_sleep={"cron_override": "30 7 * * *"})
    response = admin_client.post(url, data)
    assert response.status_code == 302, response.content.decode()[:2000]
    setting = community.automation_settings.get(job_name="test_sleep")
    assert setting.cron_override == "30 7 * * *"
    assert setting.updated_by == admin_user
    row = PeriodicTask.objects.get(name=periodic_task_name(community.pk, "test_sleep"))
    assert (row.crontab.minute, row.crontab.hour) == ("30", "7")


def test_invalid_override_and_timezone_are_refused_in_the_form(
    admin_client: Client, community: Community
) -> None:
    url = reverse("admin:communities_community_change", args=[community.pk])
    data = inline_data(community, test_sleep={"cron_override": "0 25 * * *"})
    data["timezone"] = "Europe/Atlantis"
    page = admin_client.post(url, data).content.decode()
    assert "is not a valid cron expression" in page
    assert "Europe/Atlantis" in page and "is not an IANA timezone name" in page
    community.refresh_from_db()
    assert community.timezone == "America/New_York"
    assert community.automation_settings.get(job_name="test_sleep").cron_override == ""


def test_tenant_beat_rows_are_read_only(admin_client: Client, community: Community) -> None:
    row = PeriodicTask.objects.get(name=periodic_task_name(community.pk, "test_sleep"))
    url = reverse("admin:django_celery_beat_periodictask_change", args=[row.pk])
    assert admin_client.get(url).status_code == 200  # viewable
    response = admin_client.post(url, {"name": row.name, "task": "test_sleep", "enabled": ""})
    assert response.status_code == 403
    changelist = reverse("admin:django_celery_beat_periodictask_changelist")
    admin_client.post(changelist, {"action": "disable_tasks", "_selected_action": [row.pk]})
    row.refresh_from_db()
    assert row.enabled


def test_runs_list_filters(admin_client: Client, community: Community) -> None:
    from django.utils import timezone

    JobRun.objects.create(job_name="test_sleep", community=community, trigger="manual",
                          scheduled_for=timezone.now(), status="failed", error_message="boom")
    url = reverse("admin:automation_jobrun_changelist")
    page = admin_client.get(url, {"status__exact": "failed", "job_name": "test_sleep"})
    assert page.status_code == 200
    assert "boom" in page.content.decode()


def test_run_now_action_queues_a_manual_run(
    admin_client: Client, worker, community: Community
) -> None:
    setting = community.automation_settings.get(job_name="test_sleep")
    url = reverse("admin:automation_communityautomationsetting_changelist")
    response = admin_client.post(url, {"action": "run_now", "_selected_action": [setting.pk]})
    assert response.status_code == 302
    run = JobRun.objects.get(job_name="test_sleep", community=community)
    assert run.trigger == JobRun.Trigger.MANUAL

    def succeeded() -> bool:
        run.refresh_from_db()
        return run.status == JobRun.Status.SUCCEEDED

    wait_for(succeeded)


def test_settings_list_is_editable_by_toggle(admin_client: Client, community: Community) -> None:
    assert CommunityAutomationSetting.objects.filter(community=community).count() >= 3
    url = reverse("admin:automation_communityautomationsetting_changelist")
    assert admin_client.get(url).status_code == 200
