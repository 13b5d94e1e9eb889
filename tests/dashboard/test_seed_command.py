"""`dashboard_seed_runs`: synthetic run history by COPY or bulk_create, and its removal."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db.models import Max, Min
from django.utils import timezone

from automation.models import JobRun
from communities.models import Community

pytestmark = pytest.mark.django_db


def seed(*args: str) -> str:
    out = StringIO()
    call_command("dashboard_seed_runs", *args, stdout=out)
    return out.getvalue()


@pytest.mark.parametrize("method", ["copy", "orm"])
def test_seeds_runs_spread_over_the_window(community: Community,
                                           other_community: Community, method: str) -> None:
    JobRun.objects.create(job_name="test_sleep", community=community, trigger="manual",
                          scheduled_for=timezone.now(), status="succeeded")
    before = timezone.now()
    assert "seeded 600 runs in" in seed("--runs", "600", "--days", "2", "--method", method,
                                        "--batch-size", "250")
    runs = JobRun.objects.filter(worker_hostname="seeded")
    assert runs.count() == 600
    span = runs.aggregate(first=Min("created_at"), last=Max("created_at"))
    # created_at is each run's slot, not the moment of the insert (auto_now_add undone).
    assert before - timedelta(days=2) <= span["first"] < before - timedelta(hours=36)
    assert before - timedelta(hours=12) < span["last"] <= timezone.now()
    assert set(runs.values_list("community__slug", flat=True)) == {"acme", "kolkata"}
    statuses = set(runs.values_list("status", flat=True))
    assert {"succeeded", "failed", "skipped"} <= statuses
    assert not runs.filter(status="succeeded", duration_seconds__isnull=True).exists()
    assert runs.filter(status="failed").exclude(error_message="").exists()
    assert runs.first().params == {} and runs.first().result == {}
    assert seed("--delete") == "deleted 600 seeded runs\n"
    assert JobRun.objects.count() == 1  # real runs are left alone


def test_seeds_for_chosen_communities_and_jobs(community: Community,
                                               other_community: Community) -> None:
    seed("--runs", "50", "--community", "kolkata", "--job", "test_sleep")
    runs = JobRun.objects.all()
    assert set(runs.values_list("community", "job_name", "queue").distinct()) == {
        (other_community.pk, "test_sleep", "automation")}


@pytest.mark.parametrize("args, message", [
    (["--runs", "-1"], "--runs must be ≥ 0"),
    (["--community", "nowhere"], "no community with id or slug 'nowhere'"),
    (["--job", "no_such_job"], "unknown job 'no_such_job'"),
])
def test_refuses_bad_input(community: Community, args: list[str], message: str) -> None:
    with pytest.raises(CommandError, match=message):
        seed(*args)
    assert not JobRun.objects.exists()


def test_needs_a_community(db) -> None:
    with pytest.raises(CommandError, match="no community to seed runs for"):
        seed("--runs", "10")
