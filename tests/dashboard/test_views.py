"""The dashboard pages, filters and actions, through the admin with a logged-in user."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from automation.models import AuditEntry, CommunityAutomationSetting, JobRun
from automation.stats import visible_jobs
from communities.models import Community

from .helpers import make_run

pytestmark = pytest.mark.django_db
S = JobRun.Status
DASH = "/admin/dashboard/"


def figure(page: str, name: str) -> str:
    match = re.search(rf'data-figure="{name}">([^<]*)<', page)
    assert match, f"no figure {name}"
    return match.group(1)


def job_row(page: str, job: str) -> str:
    match = re.search(rf'<tr id="job-{job}".*?</tr>', page, re.S)
    assert match, f"no row for {job}"
    return match.group(0)


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]] if response.context else []


def test_admin_index_links_the_dashboard(admin_client: Client) -> None:
    page = admin_client.get(reverse("admin:index")).content.decode()
    assert f'href="{DASH}"' in page and "Operations dashboard" in page


def test_anonymous_is_sent_to_login_and_staff_need_permissions(client: Client) -> None:
    response = client.get(DASH)
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    staff = User.objects.create_user("viewer", password="x", is_staff=True)
    client.force_login(staff)
    assert client.get(DASH).status_code == 403
    staff.user_permissions.add(Permission.objects.get(codename="view_jobrun"))
    staff = User.objects.get(pk=staff.pk)  # drop the permission cache
    client.force_login(staff)
    page = client.get(DASH).content.decode()
    assert "Run now" not in page  # no change permission: no action forms
    response = client.post(reverse("admin:dashboard_action"),
                           {"job": "test_sleep", "op": "disable"})
    assert response.status_code == 403


def test_summary_counts_the_chosen_window(admin_client: Client, community: Community,
                                          other_community: Community) -> None:
    now = timezone.now()
    CommunityAutomationSetting.objects.filter(community=other_community,
                                              job_name="test_sleep").update(enabled=False)
    for status in (S.SUCCEEDED, S.SUCCEEDED, S.SUCCEEDED, S.FAILED, S.SKIPPED):
        make_run(community, "daily_community_digest", status, at=now - timedelta(minutes=30))
    make_run(community, "daily_community_digest", S.TIMED_OUT, at=now - timedelta(hours=5))
    make_run(other_community, "daily_community_digest", S.FAILED, at=now - timedelta(days=3))
    make_run(community, "moderation_sla_checker", S.RUNNING, at=now - timedelta(minutes=1))
    settings = CommunityAutomationSetting.objects
    page = admin_client.get(DASH, {"window": "1h"}).content.decode()
    assert figure(page, "jobs") == str(len(visible_jobs()))
    assert figure(page, "enabled") == str(settings.filter(enabled=True).count())
    assert figure(page, "disabled") == "1"
    assert figure(page, "running") == "1"
    assert figure(page, "runs") == "6"  # 5 finished + the running one
    assert figure(page, "failures") == "1"
    assert figure(page, "success-rate") == "75 %"  # 3 of 4 decided; skipped do not count
    day = admin_client.get(DASH, {"window": "24h"}).content.decode()
    assert (figure(day, "runs"), figure(day, "failures")) == ("7", "2")
    week = admin_client.get(DASH, {"window": "7d"}).content.decode()
    assert (figure(week, "runs"), figure(week, "failures")) == ("8", "3")
    assert figure(week, "success-rate") == "50 %"


def test_job_rows_show_schedule_health_last_run_and_duration(
        admin_client: Client, community: Community) -> None:
    now = timezone.now()
    for i in range(19):
        make_run(community, "webhook_health_monitor", S.SUCCEEDED, duration=2.0,
                 at=now - timedelta(minutes=10 * (i + 1)))
    make_run(community, "webhook_health_monitor", S.FAILED, at=now - timedelta(minutes=5))
    for status in (S.SUCCEEDED, S.SUCCEEDED, S.SUCCEEDED, S.SUCCEEDED, S.FAILED):
        make_run(community, "moderation_sla_checker", status, duration=65,
                 at=now - timedelta(hours=2))
    make_run(community, "daily_community_digest", S.FAILED, at=now - timedelta(hours=2))
    page = admin_client.get(DASH).content.decode()
    webhook = job_row(page, "webhook_health_monitor")
    assert "health-green" in webhook and "95 %" in webhook  # 19 of 20
    assert "Every 10 minutes" in webhook and "badge cat-integrations" in webhook
    assert "status-failed" in webhook  # the last run
    assert "2.0 s" in webhook and "1 / 1" in webhook  # enabled for the one community
    moderation = job_row(page, "moderation_sla_checker")
    assert "health-yellow" in moderation and "80 %" in moderation
    assert "1 min 05 s" in moderation
    digest = job_row(page, "daily_community_digest")
    assert "health-red" in digest and "0 %" in digest
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d", digest)  # the next run
    backfill = job_row(page, "analytics_backfill_replay")
    assert "health-grey" in backfill and "on demand" in backfill and "never" in backfill
    assert 'href="/admin/dashboard/jobs/webhook_health_monitor/"' in webhook


def test_category_filter_keeps_only_that_category(admin_client: Client) -> None:
    page = admin_client.get(DASH, {"category": "analytics"}).content.decode()
    rows = re.findall(r'<tr id="job-([a-z_]+)" data-job="[a-z_]+" data-category="(\w+)"', page)
    assert rows and {category for _, category in rows} == {"analytics"}
    assert {name for name, _ in rows} == {s.name for s in visible_jobs()
                                          if s.category == "analytics"}


@pytest.mark.parametrize("query", [{"window": "2y"}, {"category": "nonsense"},
                                   {"window": "<script>"}])
def test_bad_filters_give_a_message_and_the_default(admin_client: Client, query) -> None:
    response = admin_client.get(DASH, query)
    assert response.status_code == 200
    [message] = messages_of(response)
    assert message.startswith("Filter ignored")
    page = response.content.decode()
    assert '<option value="24h" selected>' in page
    assert len(re.findall(r'<tr id="job-', page)) == len(visible_jobs())
    if query.get("window") == "<script>":  # echoed in the message, escaped
        assert "&lt;script&gt; is not one of the available choices" in page


def test_running_banner_and_its_fragment(admin_client: Client, community: Community) -> None:
    now = timezone.now()
    run = make_run(community, "data_cleanup_archiver", S.RUNNING, at=now - timedelta(minutes=3),
                   started_at=now - timedelta(minutes=2, seconds=30), progress_done=30,
                   progress_total=120, worker_hostname="w1@host")
    make_run(community, "moderation_sla_checker", S.RUNNING, progress_done=7)
    page = admin_client.get(DASH).content.decode()
    assert 'id="running-now"' in page and 'data-refresh-url="/admin/dashboard/running/"' in page
    assert "dashboard/dashboard.js" in page
    fragment = admin_client.get(reverse("admin:dashboard_running"))
    assert fragment.status_code == 200 and fragment["Cache-Control"].startswith("max-age=0")
    html = fragment.content.decode()
    assert "<html" not in html and 'data-figure="running-count">2<' in html
    item = re.search(rf'<li data-run="{run.pk}">.*?</li>', html, re.S).group(0)
    assert "data_cleanup_archiver" in item and "acme" in item and "w1@host" in item
    assert re.search(r"2 min (2\d|3\d) s</span> elapsed", item)
    assert "30/120 (25 %)" in item and '<progress max="120" value="30">' in item
    assert "7 done" in html
    JobRun.objects.filter(status=S.RUNNING).update(status=S.SUCCEEDED)
    html = admin_client.get(reverse("admin:dashboard_running")).content.decode()
    assert 'running-count">0<' in html and "Nothing is running." in html


def test_running_fragment_requires_login(client: Client) -> None:
    response = client.get(reverse("admin:dashboard_running"))
    assert response.status_code == 302


def action(client: Client, **data):
    return client.post(reverse("admin:dashboard_action"), data, follow=True)


def test_one_community_list_serves_every_action_row(admin_client: Client, community: Community,
                                                    other_community: Community) -> None:
    page = admin_client.get(reverse("admin:dashboard")).content.decode()
    assert page.count('list="ops-communities"') == page.count('name="op" value="run"') > 1
    assert page.count('<datalist id="ops-communities">') == 1
    assert '<option value="kolkata">' in page


def test_disable_and_enable_one_community_or_all_is_audited(
        admin_client: Client, community: Community, other_community: Community) -> None:
    job = "moderation_sla_checker"
    settings = CommunityAutomationSetting.objects.filter(job_name=job)
    response = action(admin_client, job=job, op="disable", community=community.pk,
                      next=f"{DASH}?category=moderation")
    assert response.redirect_chain[-1][0] == f"{DASH}?category=moderation"
    assert messages_of(response) == [f"Disabled {job} for acme (1 setting changed)."]
    assert not settings.get(community=community).enabled
    assert settings.get(community=other_community).enabled
    assert "1 / 2" in job_row(response.content.decode(), job)
    entry = AuditEntry.objects.get(action="setting.update", job_name=job)
    assert (entry.actor_label, entry.community, entry.after) == ("admin", community,
                                                                 {"enabled": False})
    response = action(admin_client, job=job, op="disable", community=community.pk)
    assert messages_of(response) == [f"Nothing changed: {job} was already disabled for acme."]
    response = action(admin_client, job=job, op="disable")
    assert messages_of(response) == [f"Disabled {job} for all communities "
                                     "(1 setting changed)."]
    response = action(admin_client, job=job, op="enable")
    assert messages_of(response) == [f"Enabled {job} for all communities "
                                     "(2 settings changed)."]
    assert settings.filter(enabled=True).count() == 2
    assert AuditEntry.objects.filter(action="setting.update", job_name=job,
                                     actor_label="admin").count() == 4


def test_run_now_for_one_community_then_409_then_429(
        admin_client: Client, community: Community, settings) -> None:
    settings.AUTOMATION_TRIGGER_COOLDOWN_SECONDS = 60
    job = "moderation_sla_checker"
    response = action(admin_client, job=job, op="run", community=community.pk)
    run = JobRun.objects.get(job_name=job)
    assert (run.status, run.trigger, run.community) == (S.QUEUED, "manual", community)
    [message] = messages_of(response)
    assert message == (f'Queued 1 run of {job}: <a href="/admin/automation/jobrun/{run.pk}/'
                       f'change/">#{run.pk}</a> (acme).')
    assert AuditEntry.objects.get(action="run.trigger").actor_label == "admin"
    response = action(admin_client, job=job, op="run", community=community.pk)
    [message] = messages_of(response)
    assert message.startswith("Not started (409 conflict): run ") and "queued" in message
    JobRun.objects.filter(pk=run.pk).update(status=S.SUCCEEDED)
    response = action(admin_client, job=job, op="run", community=community.pk)
    [message] = messages_of(response)
    assert message.startswith("Not started (429 too many requests):")
    assert "try again in" in message
    assert JobRun.objects.filter(job_name=job).count() == 1


def test_run_now_for_all_lists_who_was_left_out(
        admin_client: Client, community: Community, other_community: Community) -> None:
    job = "webhook_health_monitor"
    CommunityAutomationSetting.objects.filter(community=other_community,
                                              job_name=job).update(enabled=False)
    response = action(admin_client, job=job, op="run")
    success, warning = messages_of(response)
    assert success.startswith(f"Queued 1 run of {job}:") and "(acme)" in success
    assert warning == f"Not started for some communities of {job} — disabled: kolkata."
    response = action(admin_client, job=job, op="run")
    [warning] = messages_of(response)
    assert warning == (f"Not started for some communities of {job} — already queued or running "
                       "(409): acme; "
                       "disabled: kolkata.")


def test_run_now_refused_for_disabled_job_or_missing_params(
        admin_client: Client, community: Community) -> None:
    CommunityAutomationSetting.objects.filter(job_name="webhook_health_monitor").update(
        enabled=False)
    response = action(admin_client, job="webhook_health_monitor", op="run",
                      community=community.pk)
    assert messages_of(response) == ["Not started (409 conflict): webhook_health_monitor is "
                                     "disabled for acme; enable it first"]
    # Stored params that no longer validate (the job's form changed since they were saved).
    CommunityAutomationSetting.objects.filter(job_name="test_sleep").update(
        params={"seconds": 999})
    response = action(admin_client, job="test_sleep", op="run", community=community.pk)
    [message] = messages_of(response)
    assert message.startswith("Not started: test_sleep cannot run with its stored params")
    assert "seconds: Ensure this value is less than or equal to 30" in message
    assert not JobRun.objects.exists()


@pytest.mark.parametrize("data, expected", [
    ({"job": "no_such_job", "op": "run"}, "Nothing done — job: Select a valid choice."),
    ({"job": "test_sleep", "op": "explode"}, "Nothing done — action: Select a valid choice."),
    ({"job": "test_sleep", "op": "run", "community": "999999"},
     "Nothing done — community: no community with id or slug '999999'"),
    ({"op": "run"}, "Nothing done — job: This field is required."),
])
def test_bad_action_input_is_a_message(admin_client: Client, data, expected) -> None:
    response = action(admin_client, **data)
    assert response.status_code == 200
    [message] = messages_of(response)
    assert message.startswith(expected)
    assert not JobRun.objects.exists()


def test_action_is_post_only_and_next_cannot_leave_the_site(admin_client: Client,
                                                            community: Community) -> None:
    assert admin_client.get(reverse("admin:dashboard_action")).status_code == 405
    response = admin_client.post(reverse("admin:dashboard_action"), {
        "job": "test_sleep", "op": "disable", "next": "https://evil.example/"})
    assert response.status_code == 302 and response["Location"] == DASH
    assert admin_client.post(DASH).status_code == 405


def test_action_needs_the_csrf_token(admin_user, community: Community) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    response = client.post(reverse("admin:dashboard_action"), {"job": "test_sleep",
                                                               "op": "disable"})
    assert response.status_code == 403
    assert CommunityAutomationSetting.objects.get(job_name="test_sleep").enabled
    page = client.get(DASH).content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    response = client.post(reverse("admin:dashboard_action"), {
        "job": "test_sleep", "op": "disable", "csrfmiddlewaretoken": token})
    assert response.status_code == 302
    assert not CommunityAutomationSetting.objects.get(job_name="test_sleep").enabled


@pytest.mark.parametrize("seconds, shown", [(None, "—"), (0.8504, "850 ms"), (12.34, "12.3 s"),
                                            (245, "4 min 05 s"), (7380, "2 h 03 min")])
def test_duration_format(seconds, shown) -> None:
    from dashboard.formatting import duration

    assert duration(seconds) == shown
