"""The audit trail: every change of a setting, toggle, schedule, API key or manual trigger.

Who acted is carried in a context variable set where the request enters (admin: the
logged-in user, by `AuditActorMiddleware`; API: the token or key); code below records
without passing the actor around. Outside any request the actor is "system".
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.utils import timezone


@dataclass(frozen=True)
class Actor:
    label: str
    user_id: int | None = None


SYSTEM = Actor("system")
_actor: ContextVar[Actor] = ContextVar("automation_audit_actor", default=SYSTEM)


def current_actor() -> Actor:
    return _actor.get()


@contextmanager
def acting_as(label: str, user: Any = None) -> Iterator[Actor]:
    actor = Actor(label[:150], getattr(user, "pk", None))
    token = _actor.set(actor)
    try:
        yield actor
    finally:
        _actor.reset(token)


class AuditActorMiddleware:
    """Attributes changes made during a request to its authenticated user."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            with acting_as(user.get_username(), user):
                return self.get_response(request)
        return self.get_response(request)


def record(action: str, *, community: Any = None, job_name: str = "", target: str = "",
           before: dict | None = None, after: dict | None = None,
           at: datetime | None = None) -> Any:
    from .models import AuditEntry

    actor = current_actor()
    return AuditEntry.objects.create(
        at=at or timezone.now(), actor_id=actor.user_id, actor_label=actor.label,
        action=action, community=community, job_name=job_name, target=target[:200],
        before=before, after=after,
    )


SETTING_FIELDS = ("enabled", "cron_override", "params", "paused_until")


def setting_state(setting: Any) -> dict[str, Any]:
    state = {name: getattr(setting, name) for name in SETTING_FIELDS}
    if state["paused_until"] is not None:
        state["paused_until"] = state["paused_until"].isoformat()
    return state
