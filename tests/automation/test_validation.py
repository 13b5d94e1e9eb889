"""Invalid cron expressions, timezones and params are refused where they enter."""

from io import StringIO

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError
from django_celery_beat.models import PeriodicTask

from automation.errors import InvalidJobParams
from automation.registry import get_job
from communities.models import Community

pytestmark = pytest.mark.django_db(transaction=True)


def test_unknown_timezone_is_refused_on_save(db) -> None:
    """No community with a zone zoneinfo cannot load ever reaches the database."""
    with pytest.raises(ValidationError, match="Mars/Olympus is not an IANA timezone"):
        Community.objects.create(name="Mars", slug="mars", timezone="Mars/Olympus")
    assert not Community.objects.filter(slug="mars").exists()


def test_invalid_cron_override_is_refused_and_beat_keeps_the_valid_row(
    community: Community,
) -> None:
    setting = community.automation_settings.get(job_name="test_sleep")
    setting.cron_override = "0 24 * * *"
    with pytest.raises(ValidationError) as info:
        setting.save()
    assert "cron_override" in info.value.message_dict
    row = PeriodicTask.objects.get(task="test_sleep", name__contains=f":{community.pk}:")
    assert row.crontab.minute == "*/5"


def test_override_on_an_on_demand_job_is_refused(community: Community) -> None:
    setting = community.automation_settings.get(job_name="test_flaky")
    setting.cron_override = "0 * * * *"
    with pytest.raises(ValidationError, match="runs on demand"):
        setting.save()


@pytest.mark.parametrize(
    ("params", "field", "message"),
    [
        ({"failures": -1}, "failures", "greater than or equal to 0"),
        ({"failures": "many"}, "failures", "Enter a whole number"),
        ({"colour": "red"}, "__all__", "unknown params: colour"),
    ],
)
def test_bad_params_are_refused_per_field(params: dict, field: str, message: str) -> None:
    with pytest.raises(InvalidJobParams) as info:
        get_job("test_flaky").clean_params(params)
    assert message in " ".join(info.value.errors[field])


def test_params_are_validated_when_a_setting_is_saved(community: Community) -> None:
    setting = community.automation_settings.get(job_name="test_flaky")
    setting.params = {"failures": 99}
    with pytest.raises(ValidationError, match="less than or equal to 10"):
        setting.save()


def test_run_command_refuses_bad_input(community: Community) -> None:
    """Unknown job, unknown community and invalid params each get a clear message."""
    with pytest.raises(CommandError, match="unknown job 'nope'"):
        call_command("automation_run", "nope", "--community", "acme")
    with pytest.raises(CommandError, match="no community with id or slug 'ghost'"):
        call_command("automation_run", "test_sleep", "--community", "ghost")
    with pytest.raises(CommandError, match="--params is not valid JSON"):
        call_command("automation_run", "test_sleep", "--community", "acme", "--params", "{x")
    with pytest.raises(CommandError, match="seconds: Ensure this value is less than"):
        call_command("automation_run", "test_sleep", "--community", "acme", "--inline",
                     "--params", '{"seconds": 100}')


def test_run_command_inline_prints_the_outcome(community: Community) -> None:
    out = StringIO()
    call_command("automation_run", "test_sleep", "--community", "acme", "--inline", stdout=out)
    assert "of test_sleep for acme: succeeded" in out.getvalue()
    assert 'result: {"slept": 0.0}' in out.getvalue()
