"""Invalid cron expressions, timezones and params are refused where they enter."""

import dataclasses
from io import StringIO

import pytest
from django import forms
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from automation.errors import InvalidJobParams
from automation.models import AuditEntry, JobRun
from automation.registry import JobSpec, get_job
from automation.runs import enqueue_run
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


def test_a_setting_stores_its_params_as_cleaned(community: Community) -> None:
    """Saved in their JSON form (a datetime in UTC), only those given, never the defaults."""
    setting = community.automation_settings.get(job_name="analytics_backfill_replay")
    setting.params = {"start": "2026-01-05T05:30:00+05:30", "end": "2026-01-06T00:00:00Z",
                      "force": None}
    setting.save()
    setting.refresh_from_db()
    assert setting.params == {"start": "2026-01-05T00:00:00+00:00",
                              "end": "2026-01-06T00:00:00+00:00"}


@pytest.mark.parametrize(("params", "message"), [
    ({"seconds": "1\x00"}, "seconds contains a control character (U+0000) at position 1."),
    ({"seconds": [1]}, "seconds must be a number, not a list"),
    ({"seconds": 10**400}, "seconds must be at most 30"),
    (["seconds"], "params must be a JSON object of name → value, not a list"),
    ({"\x00": 1}, "unknown params: '\\x00'"),
])
def test_a_setting_with_unstorable_params_is_refused_before_the_database(
        community: Community, params: object, message: str) -> None:
    """NUL, wrong types and huge numbers are validation errors, not database errors."""
    setting = community.automation_settings.get(job_name="test_sleep")
    setting.params = params
    with pytest.raises(ValidationError) as info:
        setting.full_clean()
    assert any(message in text for text in info.value.message_dict["params"])
    with pytest.raises(ValidationError):
        setting.save()
    setting.refresh_from_db()
    assert setting.params == {}


def test_a_run_stores_its_own_params_as_cleaned(community: Community) -> None:
    """The run keeps what it was given, cleaned: not the stored params or the defaults,
    which it overlays when it starts."""
    setting = community.automation_settings.get(job_name="analytics_backfill_replay")
    setting.params = {"force": True}
    setting.save()
    run = enqueue_run(get_job("analytics_backfill_replay"), community, trigger="manual",
                      now=timezone.now(),
                      params={"start": "2026-01-05T05:30:00+05:30", "end": "2026-01-05T03:00"})
    assert run.params == {"start": "2026-01-05T00:00:00+00:00",
                          "end": "2026-01-05T03:00:00+00:00"}
    entry = AuditEntry.objects.get(action="run.trigger")
    assert entry.after["params"] == run.params


def test_a_run_with_unstorable_params_is_refused_and_not_recorded(
        community: Community) -> None:
    with pytest.raises(InvalidJobParams, match="control character"):
        enqueue_run(get_job("test_sleep"), community, trigger="manual", now=timezone.now(),
                    params={"seconds": "0\x00"})
    with pytest.raises(InvalidJobParams, match="not a list"):
        enqueue_run(get_job("test_sleep"), community, trigger="manual", now=timezone.now(),
                    params=[0.5])  # type: ignore[arg-type]
    assert not JobRun.objects.exists()


class _Fragile(forms.Form):
    when = forms.DateTimeField(required=False)
    size = forms.IntegerField(min_value=0, max_value=10, required=False)

    def clean_size(self) -> int | None:
        size = self.cleaned_data["size"]
        return None if size is None else 10**size // (size - 3)  # 3: ZeroDivisionError


def _spec(form: type[forms.Form]) -> JobSpec:
    return dataclasses.replace(get_job("test_flaky"), name="fragile", params_form=form)


def test_a_form_that_raises_is_a_field_error_not_a_crash() -> None:
    """A bug in a form answers the sender with InvalidJobParams naming the field."""
    with pytest.raises(InvalidJobParams) as info:
        _spec(_Fragile).clean_params({"size": 3})
    assert info.value.errors == {
        "size": ["the job's params form could not check this value (ZeroDivisionError)"]}


@pytest.mark.parametrize("when", ["2099-12-31T22:00:00-12:00", "9999-12-31T23:59:59Z",
                                  "0001-01-01T00:00:00+05:00"])
def test_dates_of_any_form_are_bounded_to_the_platform_range(when: str) -> None:
    """A form declaring a plain DateTimeField is bounded too, in UTC as it is stored."""
    with pytest.raises(InvalidJobParams) as info:
        _spec(_Fragile).clean_params({"when": when})
    assert "dates must be between 2000-01-01 and 2099-12-31" in info.value.errors["when"][0]


def test_run_command_refuses_unstorable_params(community: Community) -> None:
    with pytest.raises(CommandError, match="seconds contains a control character"):
        call_command("automation_run", "test_sleep", "--community", "acme", "--params",
                     '{"seconds": "1\\u0000"}')
    assert not JobRun.objects.exists()


def test_a_param_given_empty_is_its_default() -> None:
    """Null or "" means the default, in what the form judges and in what is returned,
    so the answer cleans to itself again."""
    spec = get_job("test_flaky")
    for empty in (None, ""):
        assert spec.clean_params({"failures": empty}) == {"failures": 2}
        assert spec.clean_params({"failures": empty}, partial=True, defaults=False) == {}


def test_rules_between_params_hold_for_the_defaults() -> None:
    """max_rows alone below the default batch_size is refused: the run would use both."""
    spec = get_job("data_cleanup_archiver")
    with pytest.raises(InvalidJobParams) as info:
        spec.clean_params({"max_rows": 10})
    assert info.value.errors["__all__"] == [
        "batch_size must not exceed max_rows (got 1000 > 10)."]
    cleaned = spec.clean_params({"max_rows": 10, "batch_size": 10})
    assert spec.clean_params(cleaned) == cleaned == {"batch_size": 10, "max_rows": 10}
