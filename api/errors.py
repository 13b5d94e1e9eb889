"""Every error under /api/ is JSON: {"detail", "code"} plus "errors" for invalid input.

The platform's own exceptions (operations, params, unknown jobs, model validation) are
mapped here, so views call the operations and let their refusals speak for themselves.
Errors Django answers outside DRF are turned into the same shape by api.middleware.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from automation.errors import InvalidJobParams
from automation.operations import JobDisabled, OperationRefused, RunInProgress, TriggerTooSoon
from automation.registry import UnknownJob

logger = logging.getLogger(__name__)

REFUSAL_CODES = {
    RunInProgress: "run_in_progress",
    JobDisabled: "job_disabled",
    TriggerTooSoon: "too_soon",
}


def params_messages(exc: InvalidJobParams) -> list[str]:
    """The same "field: message" lines the model gives for invalid stored params."""
    return [f"{name}: {' '.join(msgs)}" if name != "__all__" else " ".join(msgs)
            for name, msgs in exc.errors.items()]


# The code of an error answered by status alone (Django's own pages, turned into JSON).
STATUS_CODES = {400: "bad_request", 401: "not_authenticated", 403: "permission_denied",
                404: "not_found", 405: "method_not_allowed", 411: "length_required",
                413: "too_large", 415: "unsupported_media_type",
                500: "internal_error"}


def error_body(detail: str, code: str, **extra: Any) -> dict[str, Any]:
    return {"detail": detail, "code": code, **extra}


def status_code_name(status_code: int) -> str:
    return STATUS_CODES.get(status_code, "error")


def too_large_detail(limit: int) -> str:
    return f"The request body is larger than the {limit} bytes the API accepts."


def too_large(limit: int) -> JsonResponse:
    return JsonResponse(error_body(too_large_detail(limit), "too_large"), status=413)


class RequestTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "too_large"


def _field_errors(detail: Any) -> dict[str, Any]:
    if isinstance(detail, dict):
        return detail
    return {"non_field_errors": detail if isinstance(detail, list) else [detail]}


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    if isinstance(exc, InvalidJobParams):
        return Response(error_body("Invalid params.", "invalid",
                                   errors={"params": params_messages(exc)}),
                        status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, DjangoValidationError):
        errors = exc.message_dict if hasattr(exc, "error_dict") else {
            "non_field_errors": exc.messages}
        if "params" in errors:  # the model words form-wide params errors "__all__: ..."
            errors["params"] = [m.removeprefix("__all__: ") for m in errors["params"]]
        return Response(error_body("Invalid input.", "invalid", errors=errors),
                        status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, UnknownJob):
        return Response(error_body(str(exc), "unknown_job"), status=status.HTTP_404_NOT_FOUND)
    if isinstance(exc, OperationRefused):
        code = REFUSAL_CODES.get(type(exc), "refused")
        if isinstance(exc, TriggerTooSoon):
            return Response(error_body(str(exc), code, retry_after=exc.retry_after),
                            status=exc.status, headers={"Retry-After": str(exc.retry_after)})
        return Response(error_body(str(exc), code), status=exc.status)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound(str(exc) or "Not found.")
    if isinstance(exc, RequestDataTooBig):  # api.middleware reads bodies first; a fallback
        return Response(error_body(str(exc), "too_large"),
                        status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
    if isinstance(exc, SuspiciousOperation):  # e.g. more query fields than Django parses
        return Response(error_body(str(exc) or "Bad request.", "bad_request"),
                        status=status.HTTP_400_BAD_REQUEST)

    response = drf_exception_handler(exc, context)
    if response is None:
        # An unexpected error: logged with its traceback, answered without it.
        logger.exception("unhandled error in %s", context.get("view"), exc_info=exc)
        return Response(error_body("Internal error; it has been logged.", "internal_error"),
                        status=status.HTTP_500_INTERNAL_SERVER_ERROR)
    if isinstance(exc, exceptions.ValidationError):
        response.data = error_body("Invalid input.", "invalid",
                                   errors=_field_errors(response.data))
    elif isinstance(exc, exceptions.APIException):
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        code = getattr(exc.detail, "code", None) or exc.default_code
        extra = {"retry_after": exc.wait} if isinstance(exc, exceptions.Throttled) else {}
        response.data = error_body(str(detail), str(code), **extra)
    return response


@csrf_exempt  # a POST to a wrong path is a 404, not a CSRF page
def not_found(request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
    """Any /api/ path that names no endpoint: JSON, like every other API answer."""
    return JsonResponse(error_body(f"No endpoint at {request.path}; the schema is at "
                                   "/api/schema.", "not_found"), status=404)
