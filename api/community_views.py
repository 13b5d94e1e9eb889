"""Community endpoints, /api/communities/{slug}/...: a community's own jobs and runs.

A community's API key reaches its own community only; any other community, and anything
of it (a setting, a run by id), answers 404 exactly as if it did not exist. The operator
token reaches every community here too. An inactive community's keys are refused (403);
the operator still reads it, but changes and runs nothing there (400 `refused`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response

from automation import operations, stats
from automation.models import CommunityAutomationSetting, JobRun
from automation.registry import get_job, is_registered
from communities.models import Community

from . import serializers as s
from .views import ApiView, acting_as_caller, errors, refuse_if_inactive, trigger_response

SLUG = re.compile(r"[-a-zA-Z0-9_]{1,100}")


class CommunityView(ApiView):
    def community(self, request: Request, slug: str) -> Community:
        # Not a slug at all: nothing to look up (and no odd bytes sent to the database).
        community = (Community.objects.filter(slug=slug).first()
                     if SLUG.fullmatch(slug) else None)
        if community is None or not request.user.can_reach(community):
            raise NotFound(f"No community {slug!r}.")
        return community

    def setting(self, request: Request, slug: str, name: str) -> CommunityAutomationSetting:
        community = self.community(request, slug)
        spec = get_job(name)
        setting = (CommunityAutomationSetting.objects.select_related("community")
                   .filter(community=community, job_name=spec.name).first())
        if setting is None:
            raise NotFound(f"{community.slug} has no setting for {spec.name}.")
        return setting

    def setting_to_change(self, request: Request, slug: str, name: str
                          ) -> CommunityAutomationSetting:
        setting = self.setting(request, slug, name)
        refuse_if_inactive(setting.community)
        return setting

    def setting_response(self, setting: CommunityAutomationSetting) -> Response:
        return Response(s.SettingSerializer(setting, context={"now": timezone.now()}).data)


@extend_schema(tags=["community"])
class CommunityDetailView(CommunityView):
    @extend_schema(operation_id="community_retrieve",
                   summary="The community and its totals", parameters=[s.WindowQuery],
                   responses={200: s.CommunityDetail, **errors(404)})
    def get(self, request: Request, slug: str) -> Response:
        community = self.community(request, slug)
        now = timezone.now()
        since = now - timedelta(days=self.query(s.WindowQuery, request)["days"])
        return Response(s.CommunityDetail({
            "slug": community.slug, "name": community.name, "timezone": community.timezone,
            "is_active": community.is_active,
            "summary": {"since": since, **stats.summary(since, now, community=community)},
        }).data)


@extend_schema(tags=["community"])
class CommunityJobListView(CommunityView):
    @extend_schema(operation_id="community_jobs_list",
                   summary="The community's settings of every job",
                   responses={200: s.SettingSerializer(many=True), **errors(404)})
    def get(self, request: Request, slug: str) -> Response:
        community = self.community(request, slug)
        settings = (CommunityAutomationSetting.objects.select_related("community")
                    .filter(community=community).order_by("job_name"))
        # A job removed from the code may leave settings behind until the next sync.
        settings = [setting for setting in settings if is_registered(setting.job_name)]
        return Response(s.SettingSerializer(settings, many=True,
                                            context={"now": timezone.now()}).data)


@extend_schema(tags=["community"])
class CommunityJobView(CommunityView):
    @extend_schema(operation_id="community_job_retrieve",
                   summary="The community's setting of one job",
                   responses={200: s.SettingSerializer, **errors(404)})
    def get(self, request: Request, slug: str, name: str) -> Response:
        return self.setting_response(self.setting(request, slug, name))

    @extend_schema(
        operation_id="community_job_update",
        summary="Set a cron override and/or params",
        description="`cron_override` is a five-field cron in the community's timezone (empty "
                    "string: the job's default); `params` replaces the stored params. Both are "
                    "validated: 400 with messages per field. Enable, disable and pause have "
                    "their own endpoints.",
        request=s.SettingUpdate, responses={200: s.SettingSerializer,
                                            **errors(404, body=True)})
    @acting_as_caller
    def patch(self, request: Request, slug: str, name: str) -> Response:
        setting = self.setting_to_change(request, slug, name)
        data = self.body(s.SettingUpdate, request)
        if data:
            for field, value in data.items():
                setattr(setting, field, value)
            setting.updated_by = None  # the API caller is in the audit trail, not a user
            # Validated by the model (ValidationError answers 400), which stores the params
            # as the job's form cleaned them.
            setting.save()
        return self.setting_response(setting)


class SettingActionView(CommunityView):
    # POST with a body (`request`, optional when it has no required field) that changes
    # the setting; answers the setting.
    request_serializer: type[s.StrictSerializer] = s.NoFields

    def act(self, setting: CommunityAutomationSetting, data: dict[str, Any],
            now: datetime) -> None:
        raise NotImplementedError

    @acting_as_caller
    def post(self, request: Request, slug: str, name: str) -> Response:
        setting = self.setting_to_change(request, slug, name)
        now = timezone.now()
        self.act(setting, self.body(self.request_serializer, request, now=now), now)
        setting.refresh_from_db()
        return self.setting_response(setting)


def action_schema(operation_id: str, summary: str,
                  request: type[s.StrictSerializer] = s.NoFields) -> Callable[[type], type]:
    """The operation's schema, and the body its view reads: one declaration for both."""
    documented = extend_schema_view(post=extend_schema(
        operation_id=operation_id, summary=summary, request=request, tags=["community"],
        responses={200: s.SettingSerializer, **errors(404, body=True)}))

    def declare(view: type) -> type:
        view.request_serializer = request
        return documented(view)

    return declare


@action_schema("community_job_enable", "Turn the job on for the community")
class CommunityJobEnableView(SettingActionView):
    def act(self, setting: CommunityAutomationSetting, data: dict[str, Any],
            now: datetime) -> None:
        operations.set_enabled(setting.job_name, True, community=setting.community)


@action_schema("community_job_disable", "Turn the job off for the community")
class CommunityJobDisableView(SettingActionView):
    def act(self, setting: CommunityAutomationSetting, data: dict[str, Any],
            now: datetime) -> None:
        operations.set_enabled(setting.job_name, False, community=setting.community)


@action_schema("community_job_pause", "Skip scheduled runs until a time, or for N minutes",
               s.PauseRequest)
class CommunityJobPauseView(SettingActionView):
    def act(self, setting: CommunityAutomationSetting, data: dict[str, Any],
            now: datetime) -> None:
        operations.pause(setting, data["until"], now)


@action_schema("community_job_resume", "End a pause now")
class CommunityJobResumeView(SettingActionView):
    def act(self, setting: CommunityAutomationSetting, data: dict[str, Any],
            now: datetime) -> None:
        operations.resume(setting)


@extend_schema(tags=["community"])
class CommunityJobRunView(CommunityView):
    @extend_schema(operation_id="community_job_run", summary="Run the job now for the community",
                   description="409 when a run is in progress or the job is off, 429 when "
                               "it was triggered moments ago (Retry-After says how long).",
                   request=s.CommunityRunRequest,
                   responses={202: s.TriggerAccepted, **errors(404, 409, 429, body=True)})
    @acting_as_caller
    def post(self, request: Request, slug: str, name: str) -> Response:
        setting = self.setting_to_change(request, slug, name)
        data = self.body(s.CommunityRunRequest, request)
        return trigger_response(setting.spec, setting.community, data["params"],
                                timezone.now())


@extend_schema(tags=["community"])
class CommunityRunListView(CommunityView):
    @extend_schema(operation_id="community_runs_list",
                   summary="The community's runs, newest first", parameters=[s.RunsQuery],
                   responses={200: s.RunPage, **errors(404)})
    def get(self, request: Request, slug: str) -> Response:
        community = self.community(request, slug)
        query = self.query(s.RunsQuery, request)
        runs = JobRun.objects.filter(community=community)
        if "status" in query:
            runs = runs.filter(status=query["status"])
        if "job" in query:
            runs = runs.filter(job_name=query["job"])
        page, size = query["page"], query["page_size"]
        results = runs.select_related("community").order_by("-created_at", "-pk")[
            (page - 1) * size:page * size]
        return Response(s.RunPage({"count": runs.count(), "page": page, "page_size": size,
                                   "results": results}).data)


@extend_schema(tags=["community"])
class CommunityRunDetailView(CommunityView):
    @extend_schema(operation_id="community_run_retrieve", summary="One of the community's runs",
                   responses={200: s.RunSerializer, **errors(404)})
    def get(self, request: Request, slug: str, run_id: int) -> Response:
        community = self.community(request, slug)
        run = (JobRun.objects.select_related("community")
               .filter(pk=run_id, community=community).first())
        if run is None:
            raise NotFound(f"No run {run_id} in {community.slug}.")
        return Response(s.RunSerializer(run).data)
