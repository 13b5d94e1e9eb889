"""Operator endpoints: the registry, run now, toggle, history and runs of every community.

Every change goes through automation.operations, which enforces the rules (409, 429) and
writes the audit trail; the caller is recorded as the actor (see `acting_as_caller`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from functools import wraps
from typing import Any

from django.http import QueryDict
from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import ValidationError
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import Serializer
from rest_framework.views import APIView

from automation import operations, stats
from automation.audit import acting_as
from automation.models import JobRun
from automation.registry import JobSpec, get_job
from communities.models import Community

from . import serializers as s
from .authentication import BearerAuthentication, Caller, IsCaller, IsOperator
from .errors import error_body, exception_handler
from .parsers import BoundedJSONParser, query_texts, text_errors


def acting_as_caller(handler: Callable[..., Response]) -> Callable[..., Response]:
    """Changes made by the handler are audited as the token or key that asked."""

    @wraps(handler)
    def wrapper(self: APIView, request: Request, *args: Any, **kwargs: Any) -> Response:
        with acting_as(request.user.label):
            return handler(self, request, *args, **kwargs)

    return wrapper


def errors(*codes: int, body: bool = False, conflict: type[Serializer] = s.ErrorResponse
           ) -> dict[int, OpenApiResponse]:
    """Documented error answers. Every endpoint may answer 400 (a query parameter, or the
    request itself), 401 and 403 (a key of an inactive community, or on an operator
    endpoint); one that takes a body also 413 and 415."""
    described = {
        400: "Invalid input: messages per field in `errors`; or a body that is not JSON, "
             "is nested too deep or holds control characters.",
        401: "Missing or invalid credentials.",
        403: "An API key on an operator endpoint, or of an inactive community.",
        404: "Unknown job, run or community (or one the key may not see).",
        409: "A run is in progress, or the job is disabled.",
        413: "The body is larger than the API accepts (API_MAX_BODY_BYTES).",
        415: "The body is not application/json.",
        429: "Triggered moments ago; see the Retry-After header.",
    }
    always = {400, 401, 403, *((413, 415) if body else ())}
    return {code: OpenApiResponse(conflict if code == 409 else s.ErrorResponse,
                                  description=described[code])
            for code in sorted({*always, *codes})}


class ApiView(APIView):
    # JSON in, JSON out, bearer auth, errors mapped in api.errors. (A comment, not a
    # docstring: drf-spectacular would print a docstring on every operation.)

    authentication_classes = [BearerAuthentication]
    permission_classes = [IsCaller]
    parser_classes = [BoundedJSONParser]
    renderer_classes = [JSONRenderer]
    operator_only = False

    def get_exception_handler(self) -> Callable[..., Response]:
        return exception_handler

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)  # who asks first: 401/403 before 400
        # Query parameters are text like the body's (which the parser checks).
        problems = text_errors(query_texts(request.query_params))
        if problems:
            raise ValidationError(problems)

    def query(self, serializer: type[Serializer], request: Request) -> dict[str, Any]:
        checked = serializer(data=request.query_params.dict())
        # A plain dict, not the QueryDict: DRF reads a QueryDict as an HTML form, where an
        # empty value means "not given"; here `?status=` is a wrong status. And a parameter
        # given twice is ambiguous, not "the last one wins".
        repeated = {name: ["Give this parameter once."]
                    for name, values in request.query_params.lists()
                    if name in checked.fields and len(values) > 1}
        if repeated:
            raise ValidationError(repeated)
        checked.is_valid(raise_exception=True)
        return checked.validated_data

    def body(self, serializer: type[Serializer], request: Request,
             **context: Any) -> dict[str, Any]:
        # No body at all is DRF's empty form (a QueryDict), whose missing booleans read as
        # false: make it the empty JSON object it stands for.
        data = {} if isinstance(request.data, QueryDict) else request.data
        checked = serializer(data=data, context=context)
        checked.is_valid(raise_exception=True)
        return checked.validated_data


class OperatorView(ApiView):
    permission_classes = [IsOperator]
    operator_only = True


def refuse_if_inactive(community: Community | None) -> None:
    """Nothing is changed or run for an inactive community; reading it stays allowed."""
    if community is not None and not community.is_active:
        raise operations.OperationRefused(
            f"community {community.slug} is inactive: its jobs cannot be changed or run "
            "until it is reactivated")


def trigger_response(spec: JobSpec, community: Community | None, params: dict[str, Any],
                     now: datetime) -> Response:
    """Run now, for one community or all; 202 with the queued runs. (operations.trigger
    checks every target's params before it spends any cooldown.)"""
    refuse_if_inactive(community)
    result = operations.trigger(spec.name, now=now, community=community,
                                params=params or None, trigger=JobRun.Trigger.API)
    left_out = {"in_progress": result.in_progress, "too_soon": result.too_soon,
                "disabled": result.disabled}
    if not result.runs:
        reasons = ", ".join(f"{len(slugs)} {why.replace('_', ' ')}"
                            for why, slugs in left_out.items() if slugs)
        detail = f"No run queued for {spec.name}: " \
                 f"{reasons or 'no active community has a setting for it'}."
        return Response(error_body(detail, "nothing_queued", **left_out),
                        status=status.HTTP_409_CONFLICT)
    return Response(s.TriggerAccepted({"run_ids": [run.pk for run in result.runs],
                                       "runs": result.runs, **left_out}).data,
                    status=status.HTTP_202_ACCEPTED)


@extend_schema(tags=["operator"])
class SummaryView(OperatorView):
    @extend_schema(operation_id="summary",
                   summary="Totals over all jobs and communities", parameters=[s.WindowQuery],
                   responses={200: s.Summary, **errors()})
    def get(self, request: Request) -> Response:
        now = timezone.now()
        since = now - timedelta(days=self.query(s.WindowQuery, request)["days"])
        return Response(s.Summary({"since": since, **stats.summary(since, now)}).data)


@extend_schema(tags=["operator"])
class JobListView(OperatorView):
    @extend_schema(operation_id="jobs_list",
                   summary="The job registry with schedules, toggles and recent figures",
                   parameters=[s.JobsQuery], responses={200: s.JobList, **errors()})
    def get(self, request: Request) -> Response:
        query = self.query(s.JobsQuery, request)
        now = timezone.now()
        since = now - timedelta(days=query["days"])
        rows = stats.job_rows(now, since, category=query.get("category"))
        return Response(s.JobList({"since": since, "jobs": rows}).data)


@extend_schema(tags=["operator"])
class JobDetailView(OperatorView):
    @extend_schema(operation_id="job_retrieve", summary="One job: its row, limits and params",
                   parameters=[s.WindowQuery],
                   responses={200: s.JobDetail, **errors(404)})
    def get(self, request: Request, name: str) -> Response:
        spec = get_job(name)
        now = timezone.now()
        since = now - timedelta(days=self.query(s.WindowQuery, request)["days"])
        [row] = stats.job_rows(now, since, only=spec)
        return Response(s.JobDetail({
            **row, "soft_time_limit": spec.soft_time_limit, "time_limit": spec.time_limit,
            "max_retries": spec.max_retries, "params": s.describe_params(spec)}).data)


@extend_schema(tags=["operator"])
class JobRunView(OperatorView):
    @extend_schema(
        operation_id="job_run",
        summary="Run a job now",
        description="For one community (409 when a run is in progress or the job is off "
                    "there, 429 when triggered moments ago) or, without `community`, for every "
                    "active community that has it enabled (those that cannot run now are "
                    "listed; 409 when none could).",
        request=s.RunRequest,
        responses={202: s.TriggerAccepted, **errors(404, 409, 429, body=True,
                                                     conflict=s.TriggerConflict)})
    @acting_as_caller
    def post(self, request: Request, name: str) -> Response:
        spec = get_job(name)
        data = self.body(s.RunRequest, request)
        return trigger_response(spec, data.get("community"), data["params"], timezone.now())


@extend_schema(tags=["operator"])
class JobToggleView(OperatorView):
    @extend_schema(operation_id="job_toggle",
                   summary="Enable or disable a job, for one community or all",
                   request=s.ToggleRequest,
                   responses={200: s.ToggleResult, **errors(404, body=True)})
    @acting_as_caller
    def post(self, request: Request, name: str) -> Response:
        spec = get_job(name)
        data = self.body(s.ToggleRequest, request)
        community = data.get("community")
        # Without a community it is the job's switch everywhere, inactive ones included,
        # so that a community reactivated later follows the last switch.
        refuse_if_inactive(community)
        changed = operations.set_enabled(spec.name, data["enabled"], community=community)
        return Response(s.ToggleResult({
            "job": spec.name, "enabled": data["enabled"],
            "community": community.slug if community else None, "changed": changed}).data)


@extend_schema(tags=["operator"])
class JobHistoryView(OperatorView):
    @extend_schema(operation_id="job_history", summary="A job's stats, timeline and recent runs",
                   parameters=[s.HistoryQuery],
                   responses={200: s.HistoryResponse, **errors(404)})
    def get(self, request: Request, name: str) -> Response:
        spec = get_job(name)
        query = self.query(s.HistoryQuery, request)
        until = timezone.now()
        since = until - timedelta(days=query["days"])
        community = query.get("community")
        history = stats.job_history(spec.name, since, until, community=community,
                                    limit=query["limit"])
        return Response(s.HistoryResponse({
            "job": spec.name, "community": community.slug if community else None,
            "since": since, "until": until, "unit": stats.timeline_unit(since, until),
            "stats": history.stats, "timeline": history.timeline, "runs": history.runs,
        }).data)


@extend_schema(tags=["operator"])
class RunDetailView(OperatorView):
    @extend_schema(operation_id="run_retrieve",
                   summary="One run",
                   responses={200: s.OperatorRunSerializer, **errors(404)})
    def get(self, request: Request, run_id: int) -> Response:
        run = get_object_or_404(JobRun.objects.select_related("community"), pk=run_id)
        return Response(s.OperatorRunSerializer(run).data)


@extend_schema(tags=["any caller"])
class WhoAmIView(ApiView):
    @extend_schema(operation_id="whoami",
                   summary="Who the credentials are", responses={200: s.WhoAmI, **errors()})
    def get(self, request: Request) -> Response:
        caller: Caller = request.user
        return Response(s.WhoAmI({
            "kind": "operator" if caller.is_operator else "api_key", "label": caller.label,
            "community": caller.community.slug if caller.community else None}).data)
