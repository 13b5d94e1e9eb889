"""Settings → django-celery-beat rows: created, updated, disabled, removed; idempotent."""

import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection
from django_celery_beat.models import PeriodicTask

from automation.models import CommunityAutomationSetting
from automation.registry import all_jobs, scheduled_jobs
from automation.schedules import periodic_task_name, sync_schedules
from communities.models import Community

pytestmark = pytest.mark.django_db(transaction=True)


def tenant_rows(community: Community) -> dict[str, PeriodicTask]:
    prefix = periodic_task_name(community.pk, "")
    return {row.task: row for row in PeriodicTask.objects.filter(name__startswith=prefix)}


def test_new_community_gets_a_setting_per_job_and_a_row_per_scheduled_job(
    community: Community,
) -> None:
    """Creating a community creates its settings, and after commit its beat rows."""
    names = set(community.automation_settings.values_list("job_name", flat=True))
    assert names == {spec.name for spec in all_jobs()}
    rows = tenant_rows(community)
    assert set(rows) == {spec.name for spec in scheduled_jobs()}
    row = rows["test_sleep"]
    assert row.enabled
    assert row.queue == "automation"
    assert json.loads(row.kwargs) == {"community_id": community.pk}
    assert str(row.crontab.timezone) == "America/New_York"
    assert (row.crontab.minute, row.crontab.hour) == ("*/5", "*")
    assert "test_flaky" not in rows  # on demand: no beat row


def test_sync_is_idempotent(community: Community) -> None:
    """A second sync changes nothing."""
    report = sync_schedules()
    assert not report.changed
    assert report.unchanged == len(scheduled_jobs())


def test_override_updates_the_row_in_the_community_timezone(community: Community) -> None:
    """A cron override reaches the beat row after commit, in the community's zone."""
    setting = community.automation_settings.get(job_name="test_sleep")
    setting.cron_override = "15 9 * * 1-5"
    setting.save()
    row = tenant_rows(community)["test_sleep"]
    assert (row.crontab.minute, row.crontab.hour, row.crontab.day_of_week) == ("15", "9", "1-5")
    assert str(row.crontab.timezone) == "America/New_York"


def test_disabled_setting_and_inactive_community_disable_rows(community: Community) -> None:
    """Turning a job off disables its row; deactivating the community disables all of them."""
    setting = community.automation_settings.get(job_name="test_sleep")
    setting.enabled = False
    setting.save()
    assert not tenant_rows(community)["test_sleep"].enabled
    assert tenant_rows(community)["test_broken"].enabled

    community.is_active = False
    community.save()
    assert not any(row.enabled for row in tenant_rows(community).values())


def test_deleted_community_rows_are_removed(community: Community) -> None:
    community_id = community.pk
    community.delete()
    prefix = periodic_task_name(community_id, "")
    assert not PeriodicTask.objects.filter(name__startswith=prefix).exists()


def test_full_sync_removes_orphans_and_restores_hand_edits(community: Community) -> None:
    """Rows of unknown jobs go; a hand-edited tenant row is put back from the setting."""
    PeriodicTask.objects.filter(name=periodic_task_name(community.pk, "test_sleep")).update(
        enabled=False, queue="billing"
    )
    orphan = PeriodicTask.objects.create(
        name=periodic_task_name(community.pk, "retired_job"),
        task="retired_job",
        crontab=tenant_rows(community)["test_sleep"].crontab,
    )
    report = sync_schedules()
    assert report.removed == [orphan.name]
    assert report.updated == [periodic_task_name(community.pk, "test_sleep")]
    row = tenant_rows(community)["test_sleep"]
    assert row.enabled and row.queue == "automation"


def test_missing_settings_are_created_for_every_community(community: Community) -> None:
    """A job registered after the community existed gets its setting on the next sync."""
    # Raw SQL: a model delete would re-sync (and so re-create the setting) at once.
    with connection.cursor() as cursor:
        cursor.execute(
            f"DELETE FROM {CommunityAutomationSetting._meta.db_table} WHERE job_name = %s",
            ["test_sleep"],
        )
    report = sync_schedules()
    assert report.settings_created == [f"test_sleep @ community {community.pk}"]
    assert community.automation_settings.filter(job_name="test_sleep").exists()


def test_sync_command_dry_run_writes_nothing(community: Community) -> None:
    """--dry-run prints what would change and leaves the rows alone."""
    PeriodicTask.objects.filter(name__startswith="tenant:").delete()
    out = StringIO()
    call_command("automation_sync", "--community", "acme", "--dry-run", stdout=out)
    text = out.getvalue()
    assert f"would create: {periodic_task_name(community.pk, 'test_sleep')}" in text
    assert f"would change: {len(scheduled_jobs())} created" in text
    assert not PeriodicTask.objects.filter(name__startswith="tenant:").exists()

    out = StringIO()
    call_command("automation_sync", "--community", str(community.pk), stdout=out)
    assert f"changed: {len(scheduled_jobs())} created, 0 updated, 0 removed" in out.getvalue()
    assert len(tenant_rows(community)) == len(scheduled_jobs())


def test_sync_command_refuses_unknown_community(db) -> None:
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="no community with id or slug 'nope'"):
        call_command("automation_sync", "--community", "nope")


def test_a_rolled_back_change_does_not_stop_later_syncs(community: Community) -> None:
    from django.db import transaction

    setting = community.automation_settings.get(job_name="test_sleep")
    with pytest.raises(RuntimeError), transaction.atomic():
        setting.cron_override = "15 6 * * *"
        setting.save()
        raise RuntimeError("the request failed after the save")
    setting.refresh_from_db()
    setting.cron_override = "30 7 * * *"
    setting.save()
    row = PeriodicTask.objects.get(name=periodic_task_name(community.pk, "test_sleep"))
    assert (row.crontab.minute, row.crontab.hour) == ("30", "7")


def test_one_sync_per_community_per_transaction(community: Community, other_community) -> None:
    from django.db import transaction

    with transaction.atomic():
        for setting in CommunityAutomationSetting.objects.all():
            setting.enabled = False
            setting.save()
        waiting = [entry[1] for entry in connection.run_on_commit]
        assert sorted(f.sync_community_id for f in waiting
                      if hasattr(f, "sync_community_id")) == sorted(
            [community.pk, other_community.pk])
    assert not PeriodicTask.objects.filter(name__startswith="tenant:", enabled=True).exists()
