"""Request validation and response shapes; they also make the OpenAPI schema."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from django import forms
from django.core.exceptions import ValidationError as DjangoValidationError
from django.utils import timezone
from drf_spectacular.extensions import OpenApiSerializerExtension
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from automation.input_limits import RANGE_TEXT, check_date
from automation.models import CommunityAutomationSetting, JobRun
from automation.registry import CATEGORIES, QUEUES, JobSpec
from communities import lookup
from communities.models import Community

HEALTH = ("green", "yellow", "red", "grey")
MAX_PAUSE = timedelta(days=366)


# --- inputs --------------------------------------------------------------------------
# A request body takes the fields it declares, each of its own JSON type: a misspelt field
# or a number where text belongs is a 400, never ignored or converted.

class StrictSerializer(serializers.Serializer):
    # (A comment, not a docstring: drf-spectacular would print a docstring on every request
    # body of the schema.)

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        if isinstance(data, Mapping):
            unknown = sorted(name for name in data if name not in self.fields)
            if unknown:
                takes = (f"this endpoint takes {', '.join(self.fields)}" if self.fields
                         else "this endpoint takes no fields")
                raise serializers.ValidationError(
                    {name: [f"Unknown field; {takes}."] for name in unknown})
        return super().to_internal_value(data)


class StrictSerializerSchema(OpenApiSerializerExtension):
    """The schema says so too: additionalProperties false on every request body."""

    target_class = StrictSerializer
    match_subclasses = True

    def map_serializer(self, auto_schema: Any, direction: str) -> dict[str, Any]:
        schema = auto_schema._map_serializer(self.target, direction, bypass_extensions=True)
        return {**schema, "additionalProperties": False}


class StrictBooleanField(serializers.BooleanField):
    """JSON's true or false; not "yes", "on" or 1."""

    default_error_messages = {"invalid": "Must be true or false."}

    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            self.fail("invalid")
        return data


class StrictIntegerField(serializers.IntegerField):
    """A JSON integer; not "90", 90.0 or true."""

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictCharField(serializers.CharField):
    """A JSON string; not a number made into one."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class PlatformDateTimeField(serializers.DateTimeField):
    """An ISO 8601 datetime within the platform's range (automation.input_limits)."""

    def to_internal_value(self, value: Any) -> datetime:
        try:
            parsed = super().to_internal_value(value)
        except serializers.ValidationError as exc:
            if any(getattr(detail, "code", None) == "overflow" for detail in exc.detail):
                # Moved into UTC it left the calendar: far outside the range anyway.
                raise serializers.ValidationError(
                    f"{self.field_name} is out of range; dates must be {RANGE_TEXT}.",
                    code="date_range") from None
            raise
        try:
            check_date(parsed, label=self.field_name)
            check_date(parsed.astimezone(UTC), label=f"{self.field_name} (in UTC)")
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.messages, code="date_range") from None
        return parsed


def find_community(reference: str | int) -> Community | None:
    try:
        return lookup.find_community(reference)
    except lookup.CommunityNotFound:
        return None


@extend_schema_field({"oneOf": [{"type": "integer"}, {"type": "string", "maxLength": 100}],
                      "description": "Community id or slug."})
class CommunityReferenceField(serializers.Field):
    default_error_messages = {
        "invalid": "Give a community id (integer) or slug (string).",
        "unknown": "No community with id or slug {reference!r}.",
    }

    def to_internal_value(self, data: Any) -> Community:
        if isinstance(data, bool) or not isinstance(data, int | str):
            self.fail("invalid")
        if isinstance(data, str) and (len(data) > 100 or not data.strip()):
            self.fail("invalid")
        community = find_community(data)
        if community is None:
            self.fail("unknown", reference=str(data)[:100])
        return community

    def to_representation(self, value: Community) -> str:
        return value.slug


ParamsField = serializers.DictField  # a JSON object; each job's form validates its content


class RunRequest(StrictSerializer):
    class Meta:
        ref_name = "Trigger"  # the schema's component: TriggerRequest

    community = CommunityReferenceField(
        required=False, help_text="Run for this community only; omit for every community "
                                  "that has the job enabled.")
    params = ParamsField(required=False, default=dict,
                         help_text="Params of this run, merged over the community's stored "
                                   "params; each job documents its own (see GET /api/jobs/{name}).")


class CommunityRunRequest(StrictSerializer):
    class Meta:
        ref_name = "CommunityTrigger"  # the schema's component: CommunityTriggerRequest

    params = ParamsField(required=False, default=dict,
                         help_text="Params of this run, merged over the stored params.")


class ToggleRequest(StrictSerializer):
    class Meta:
        ref_name = "Toggle"  # the schema's component: ToggleRequest

    enabled = StrictBooleanField()
    community = CommunityReferenceField(required=False,
                                        help_text="Only this community; omit for all.")


# Enable, disable and resume take no body; one with fields is a mistake worth a 400.
class NoFields(StrictSerializer):
    class Meta:
        ref_name = "NoFields"  # the schema's component: NoFieldsRequest


class WindowQuery(serializers.Serializer):
    days = serializers.IntegerField(min_value=1, max_value=365, default=7,
                                    help_text="Figures over the last N days.")


class JobsQuery(WindowQuery):
    category = serializers.ChoiceField(choices=CATEGORIES, required=False)


class HistoryQuery(WindowQuery):
    limit = serializers.IntegerField(min_value=1, max_value=500, default=50,
                                     help_text="How many of the most recent runs to list.")
    community = CommunityReferenceField(required=False, help_text="Community id or slug.")


class SettingUpdate(StrictSerializer):
    enabled = StrictBooleanField(required=False)
    cron_override = StrictCharField(
        required=False, allow_blank=True, max_length=100,
        help_text="Five-field cron in the community's timezone; empty: the job's default.")
    params = ParamsField(required=False, help_text="Replaces the stored params.")


class PauseRequest(StrictSerializer):
    class Meta:
        ref_name = "Pause"  # the schema's component: PauseRequest

    until = PlatformDateTimeField(required=False, help_text="ISO 8601; at most 366 days "
                                                            "ahead.")
    minutes = StrictIntegerField(required=False, min_value=1,
                                 max_value=int(MAX_PAUSE.total_seconds() // 60))

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if ("until" in attrs) == ("minutes" in attrs):
            raise serializers.ValidationError("Give either 'until' or 'minutes'.")
        now = self.context["now"]
        until = attrs["until"] if "until" in attrs else now + timedelta(minutes=attrs["minutes"])
        if until > now + MAX_PAUSE:
            raise serializers.ValidationError({"until": ["At most 366 days ahead."]})
        if until <= now:
            raise serializers.ValidationError({"until": ["Must be in the future."]})
        attrs["until"] = until
        return attrs


class RunsQuery(serializers.Serializer):
    status = serializers.ChoiceField(choices=JobRun.Status.choices, required=False)
    job = serializers.CharField(required=False, max_length=100, help_text="A job name.")
    page = serializers.IntegerField(min_value=1, max_value=100_000, default=1)
    page_size = serializers.IntegerField(min_value=1, max_value=200, default=50)


# --- outputs -------------------------------------------------------------------------

class ErrorResponse(serializers.Serializer):
    detail = serializers.CharField()
    code = serializers.CharField()
    errors = serializers.DictField(
        required=False, child=serializers.JSONField(),
        help_text="400 only: messages per field (params: 'name: message' lines).")
    retry_after = serializers.IntegerField(required=False, help_text="429 only: seconds.")


class TriggerConflict(ErrorResponse):
    in_progress = serializers.ListField(child=serializers.CharField(), required=False)
    too_soon = serializers.ListField(child=serializers.CharField(), required=False)
    disabled = serializers.ListField(child=serializers.CharField(), required=False)


class RunSerializer(serializers.ModelSerializer):
    community = serializers.SlugRelatedField(slug_field="slug", read_only=True,
                                             allow_null=True)
    params = serializers.JSONField()
    result = serializers.JSONField()

    class Meta:
        model = JobRun
        fields = ["id", "job_name", "community", "trigger", "status", "queue", "params",
                  "scheduled_for", "created_at", "started_at", "finished_at",
                  "duration_seconds", "attempts", "resumes", "skip_reason", "error_type",
                  "error_message", "result", "progress_done", "progress_total"]
        read_only_fields = fields


class OperatorRunSerializer(RunSerializer):
    class Meta(RunSerializer.Meta):
        fields = [*RunSerializer.Meta.fields, "celery_task_id", "worker_hostname"]
        read_only_fields = fields


class LastRun(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.ChoiceField(choices=JobRun.Status.choices)
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)


class JobRow(serializers.Serializer):
    name = serializers.CharField()
    description = serializers.CharField()
    category = serializers.ChoiceField(choices=CATEGORIES)
    queue = serializers.ChoiceField(choices=QUEUES)
    cron = serializers.CharField(allow_null=True, help_text="Default cron; null: on demand.")
    schedule = serializers.CharField(help_text="The default schedule in words.")
    enabled = serializers.IntegerField(help_text="Communities that have it on.")
    communities = serializers.IntegerField(help_text="Communities that have a setting for it.")
    next_run = serializers.DateTimeField(allow_null=True)
    last_run = LastRun(allow_null=True)
    running = serializers.IntegerField()
    runs = serializers.IntegerField(help_text="Runs in the window.")
    succeeded = serializers.IntegerField()
    failures = serializers.IntegerField()
    success_rate = serializers.FloatField(allow_null=True)
    health = serializers.ChoiceField(choices=HEALTH)
    avg_duration = serializers.FloatField(allow_null=True)


class JobParam(serializers.Serializer):
    name = serializers.CharField()
    type = serializers.CharField(help_text="The form field's class, e.g. FloatField.")
    required = serializers.BooleanField()
    initial = serializers.JSONField(allow_null=True)
    help_text = serializers.CharField(allow_blank=True)


class JobDetail(JobRow):
    soft_time_limit = serializers.IntegerField()
    time_limit = serializers.IntegerField()
    max_retries = serializers.IntegerField()
    params = JobParam(many=True)


def _plain(value: Any) -> Any:
    return value if value is None or isinstance(value, str | int | float | bool) else str(value)


def describe_params(spec: JobSpec) -> list[dict[str, Any]]:
    form: forms.Form = spec.params_form()
    return [{"name": name, "type": type(field).__name__, "required": field.required,
             "initial": None if callable(field.initial) else _plain(field.initial),
             "help_text": str(field.help_text or "")}
            for name, field in form.fields.items()]


class JobList(serializers.Serializer):
    since = serializers.DateTimeField()
    jobs = JobRow(many=True)


class Summary(serializers.Serializer):
    since = serializers.DateTimeField()
    jobs = serializers.IntegerField()
    settings_enabled = serializers.IntegerField()
    settings_disabled = serializers.IntegerField()
    running = serializers.IntegerField()
    runs = serializers.IntegerField()
    succeeded = serializers.IntegerField()
    failures = serializers.IntegerField()
    skipped = serializers.IntegerField()
    success_rate = serializers.FloatField(allow_null=True)
    health = serializers.ChoiceField(choices=HEALTH)


class TriggerAccepted(serializers.Serializer):
    run_ids = serializers.ListField(child=serializers.IntegerField())
    runs = RunSerializer(many=True)
    in_progress = serializers.ListField(child=serializers.CharField(),
                                        help_text="Communities left out: a run is in progress.")
    too_soon = serializers.ListField(child=serializers.CharField(),
                                     help_text="Communities left out: triggered moments ago.")
    disabled = serializers.ListField(child=serializers.CharField(),
                                     help_text="Communities left out: the job is off there.")


class ToggleResult(serializers.Serializer):
    job = serializers.CharField()
    enabled = serializers.BooleanField()
    community = serializers.CharField(allow_null=True)
    changed = serializers.IntegerField(help_text="Settings that changed.")


class HistoryStats(serializers.Serializer):
    runs = serializers.IntegerField()
    succeeded = serializers.IntegerField()
    failed = serializers.IntegerField()
    skipped = serializers.IntegerField()
    success_rate = serializers.FloatField(allow_null=True)
    health = serializers.ChoiceField(choices=HEALTH)
    avg_duration = serializers.FloatField(allow_null=True)
    min_duration = serializers.FloatField(allow_null=True)
    max_duration = serializers.FloatField(allow_null=True)
    last_success = serializers.DateTimeField(allow_null=True)
    last_failure = serializers.DateTimeField(allow_null=True)


class TimelineBucket(serializers.Serializer):
    bucket = serializers.DateTimeField(help_text="Start of the hour (windows up to 3 days) "
                                                 "or day.")
    succeeded = serializers.IntegerField()
    failed = serializers.IntegerField()
    skipped = serializers.IntegerField()
    other = serializers.IntegerField(help_text="Queued or running.")


class HistoryResponse(serializers.Serializer):
    job = serializers.CharField()
    community = serializers.CharField(allow_null=True)
    since = serializers.DateTimeField()
    until = serializers.DateTimeField()
    unit = serializers.ChoiceField(choices=["hour", "day"], help_text="Width of a timeline "
                                                                     "bucket.")
    stats = HistoryStats()
    timeline = TimelineBucket(many=True)
    runs = OperatorRunSerializer(many=True)


class SettingSerializer(serializers.Serializer):
    """A community's setting of one job, with its effective schedule."""

    job_name = serializers.CharField()
    description = serializers.SerializerMethodField()
    category = serializers.SerializerMethodField()
    enabled = serializers.BooleanField()
    cron_override = serializers.CharField(allow_blank=True)
    default_cron = serializers.SerializerMethodField()
    cron = serializers.SerializerMethodField(help_text="The effective cron; null: on demand.")
    schedule = serializers.SerializerMethodField(help_text="The effective schedule in words, "
                                                           "in the community's timezone.")
    timezone = serializers.CharField(source="community.timezone")
    next_run = serializers.SerializerMethodField()
    paused_until = serializers.DateTimeField(allow_null=True)
    paused = serializers.SerializerMethodField()
    params = serializers.JSONField()
    updated_at = serializers.DateTimeField()

    def _now(self) -> Any:
        return self.context.get("now") or timezone.now()

    def get_description(self, obj: CommunityAutomationSetting) -> str:
        return obj.spec.description

    def get_category(self, obj: CommunityAutomationSetting) -> str:
        return obj.spec.category

    def get_default_cron(self, obj: CommunityAutomationSetting) -> str | None:
        return obj.spec.default_cron

    def get_cron(self, obj: CommunityAutomationSetting) -> str | None:
        return obj.cron

    def get_schedule(self, obj: CommunityAutomationSetting) -> str:
        return obj.cron_description()

    @extend_schema_field(serializers.DateTimeField(allow_null=True))
    def get_next_run(self, obj: CommunityAutomationSetting) -> str | None:
        fire = obj.next_run(self._now())
        return serializers.DateTimeField().to_representation(fire) if fire else None

    def get_paused(self, obj: CommunityAutomationSetting) -> bool:
        return obj.is_paused(self._now())


class CommunityDetail(serializers.Serializer):
    slug = serializers.CharField()
    name = serializers.CharField()
    timezone = serializers.CharField()
    is_active = serializers.BooleanField()
    summary = Summary()


class RunPage(serializers.Serializer):
    count = serializers.IntegerField()
    page = serializers.IntegerField()
    page_size = serializers.IntegerField()
    results = RunSerializer(many=True)


class WhoAmI(serializers.Serializer):
    kind = serializers.ChoiceField(choices=["operator", "api_key"])
    label = serializers.CharField()
    community = serializers.CharField(allow_null=True,
                                      help_text="The key's community slug; null for operators.")
