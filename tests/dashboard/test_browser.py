"""The dashboard in a real headless browser (Playwright driving Debian's Chromium).

Skipped when Chromium is missing, except in CI (the CI variable set), where that fails.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connections
from django.utils import timezone

from automation.models import AuditEntry, CommunityAutomationSetting, JobRun
from communities.models import Community

from .helpers import make_run

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def page(transactional_db, live_server, monkeypatch) -> Iterator:
    """A logged-out browser tab on the live server.

    Function-scoped and set up after the database, so Playwright's event loop is gone
    before the database is flushed at teardown.
    """
    if not CHROMIUM.exists():
        message = f"Chromium not found at {CHROMIUM} (set CHROMIUM to its path)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the database checks between
    # browser steps are plain synchronous calls, which Django would otherwise refuse.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    args = ["--no-sandbox"] if os.geteuid() == 0 else []  # Chromium's sandbox refuses root
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                             args=[*args, "--disable-dev-shm-usage"])
        context = browser.new_context(base_url=live_server.url)
        context.set_default_timeout(10_000)
        yield context.new_page()
        context.close()
        browser.close()
        # While the loop runs, Django hands this thread other connection objects than
        # outside it (asgiref's context-local storage): close them, or they outlive the test.
        connections.close_all()


def test_dashboard_filter_toggle_run_now_and_live_banner(
        page, admin_user, community: Community, other_community: Community, settings) -> None:
    settings.DASHBOARD_REFRESH_SECONDS = 1
    job = "moderation_sla_checker"
    running = make_run(community, "data_cleanup_archiver", JobRun.Status.RUNNING,
                       started_at=timezone.now() - timedelta(minutes=2),
                       progress_done=3, progress_total=10)

    page.goto("/admin/login/?next=/admin/dashboard/")
    page.fill("#id_username", admin_user.username)
    page.fill("#id_password", "password")
    page.click("input[type=submit]")
    page.wait_for_url(re.compile(r"/admin/dashboard/$"))
    assert page.title().startswith("Operations dashboard")
    banner = page.locator("#running-now")
    assert "3/10 (30 %)" in banner.inner_text()
    assert page.locator('[data-figure="running"]').inner_text() == "1"

    # Filter by category.
    page.select_option("#id_category", "moderation")
    page.click("#window-filter button[type=submit]")
    page.wait_for_url(re.compile(r"category=moderation"))
    assert page.locator("#jobs tbody tr").evaluate_all(
        "rows => rows.map(r => r.dataset.job)") == [job]

    # Toggle the job off for one community.
    row = page.locator(f"#job-{job}")
    row.locator("input[name=community]").fill("acme")
    row.locator("button[value=disable]").click()
    page.wait_for_selector(".messagelist .success")
    assert page.locator(".messagelist").inner_text().strip() == (
        f"Disabled {job} for acme (1 setting changed).")
    assert "category=moderation" in page.url  # back where the operator was
    assert page.locator(f"#job-{job} .ops-enabled").inner_text() == "1 / 2"
    setting = CommunityAutomationSetting.objects.get(job_name=job, community=community)
    assert setting.enabled is False
    assert AuditEntry.objects.get(action="setting.update", job_name=job).actor_label == "admin"

    # Run it now for the other community; the new run appears on the history page.
    row = page.locator(f"#job-{job}")
    row.locator("input[name=community]").fill("kolkata")
    row.locator("button[value=run]").click()
    page.wait_for_selector(".messagelist .success")
    run = JobRun.objects.get(job_name=job)
    # Queued, unless a worker of another test in this session has picked it up already.
    assert (run.community, run.trigger) == (other_community, "manual")
    assert run.status in ("queued", "running", "succeeded")
    assert f"Queued 1 run of {job}: #{run.pk} (kolkata)." in page.locator(
        ".messagelist").inner_text()
    page.locator(f"#job-{job} a.ops-history").click()
    page.wait_for_url(re.compile(rf"/admin/dashboard/jobs/{job}/$"))
    new_row = page.locator(f'#runs tr[data-run="{run.pk}"]')
    assert new_row.get_attribute("data-status") in ("queued", "running", "succeeded")
    assert "kolkata" in new_row.inner_text() and "manual" in new_row.inner_text()
    assert page.locator('[data-figure="runs"]').inner_text() == "1"

    # The banner refreshes by itself: progress moves, then the run finishes.
    page.goto("/admin/dashboard/")
    JobRun.objects.filter(pk=running.pk).update(progress_done=7)
    page.wait_for_function(
        "() => document.querySelector('#running-now').innerText.includes('7/10 (70 %)')",
        timeout=8_000)
    JobRun.objects.filter(pk=running.pk).update(status=JobRun.Status.SUCCEEDED)
    page.wait_for_function(
        "() => document.querySelector('#running-now').innerText.includes('Nothing is running')",
        timeout=8_000)
    fragment = page.request.get("/admin/dashboard/running/")
    assert fragment.ok and "Running now:" in fragment.text()
    assert not banner.evaluate("el => el.classList.contains('stale')")
