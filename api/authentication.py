"""Who calls: the operator (one bearer token from settings) or a community's API key."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import AuthenticationFailed, PermissionDenied
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from communities.models import Community

from .models import KEY_TAG, ApiKey

OPERATOR_LABEL = "operator-token"


@dataclass(frozen=True)
class Caller:
    """The authenticated caller; DRF keeps it as `request.user`."""

    label: str  # the actor name written to the audit trail
    api_key: ApiKey | None = None

    is_authenticated = True

    @property
    def is_operator(self) -> bool:
        return self.api_key is None

    @property
    def community(self) -> Community | None:
        return self.api_key.community if self.api_key is not None else None

    def can_reach(self, community: Community) -> bool:
        return self.is_operator or self.api_key.community_id == community.pk


class BearerAuthentication(BaseAuthentication):
    """`Authorization: Bearer <token>`: keys start with `cak_`, anything else is checked
    against AUTOMATION_API_TOKEN (empty: no operator access at all)."""

    def authenticate(self, request: Request) -> tuple[Caller, Any] | None:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None
        scheme, _, credentials = header.partition(" ")
        token = credentials.strip()
        if scheme.lower() != "bearer" or not token:
            raise AuthenticationFailed("Send 'Authorization: Bearer <token or API key>'.")
        if token.startswith(KEY_TAG):
            key = ApiKey.authenticate(token, timezone.now())
            if key is None:
                raise AuthenticationFailed("Unknown or revoked API key.")
            return Caller(label=key.label, api_key=key), key
        operator_token = settings.AUTOMATION_API_TOKEN
        if operator_token and hmac.compare_digest(
                token.encode("utf-8", "surrogatepass"), operator_token.encode()):
            return Caller(label=OPERATOR_LABEL), None
        raise AuthenticationFailed("Invalid token.")

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'


def refuse_inactive_community(caller: Caller) -> None:
    """A key of an inactive community reaches nothing until the community is reactivated
    (revoking its keys stays a separate, deliberate act)."""
    community = caller.community
    if community is not None and not community.is_active:
        raise PermissionDenied(f"community {community.slug} is inactive; its API keys are "
                               "refused until it is reactivated.", code="community_inactive")


class IsOperator(BasePermission):
    """Operator endpoints see every community; a community's key is told so plainly."""

    def has_permission(self, request: Request, view: Any) -> bool:
        caller = request.user
        if not isinstance(caller, Caller):
            return False  # unauthenticated: DRF answers 401
        refuse_inactive_community(caller)
        if not caller.is_operator:
            raise PermissionDenied("This endpoint needs the operator token; a community API "
                                   "key reaches /api/communities/<its slug>/ only.")
        return True


class IsCaller(BasePermission):
    def has_permission(self, request: Request, view: Any) -> bool:
        if not isinstance(request.user, Caller):
            return False
        refuse_inactive_community(request.user)
        return True


class BearerScheme(OpenApiAuthenticationExtension):
    """Two schemes in the schema, both bearer: operator endpoints accept only the first."""

    target_class = BearerAuthentication
    name = ["operatorToken", "communityApiKey"]

    def get_security_requirement(self, auto_schema: Any) -> list[dict[str, list]]:
        if getattr(auto_schema.view, "operator_only", False):
            return [{"operatorToken": []}]
        return [{"operatorToken": []}, {"communityApiKey": []}]

    def get_security_definition(self, auto_schema: Any) -> list[dict[str, str]]:
        return [
            {"type": "http", "scheme": "bearer",
             "description": "The operator token (AUTOMATION_API_TOKEN)."},
            {"type": "http", "scheme": "bearer", "bearerFormat": "cak_<prefix>_<secret>",
             "description": "A community's API key, created in admin; reaches that "
                            "community only."},
        ]
