"""The job registry: the one list of tenant jobs that the sync, admin and commands read.

A job is a plain function `(community, now, **params) -> summary` declared with
`@tenant_job(...)`; the declaration also creates its Celery task (with the factory
automation.tasks installs, so the registry never imports the execution path).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django import forms

from .cron import validate_cron
from .params import clean_params

QUEUES = ("automation", "notifications", "billing")
CATEGORIES = ("notifications", "engagement", "billing", "moderation", "maintenance",
              "integrations", "analytics", "testing")
# What the missed-run watchdog does about scheduled slots that never ran (monitoring app):
# "skip" records them only; "once" also enqueues one run for the latest missed slot.
CATCH_UP_POLICIES = ("skip", "once")

JobFunction = Callable[..., dict[str, Any]]


class NoParams(forms.Form):
    """Params form for jobs that take none."""


@dataclass(frozen=True)
class JobSpec:
    name: str
    func: JobFunction = field(repr=False)
    description: str
    category: str
    queue: str
    default_cron: str | None  # None: on demand only
    soft_time_limit: int
    time_limit: int
    max_retries: int
    backoff_base: float
    backoff_cap: float
    params_form: type[forms.Form] = NoParams
    catch_up: str = "skip"

    @property
    def scheduled(self) -> bool:
        return self.default_cron is not None

    @property
    def in_progress_horizon(self) -> int:
        from django.conf import settings

        return self.time_limit + settings.AUTOMATION_LOCK_MARGIN_SECONDS

    def clean_params(self, params: Any, *, partial: bool = False,
                     defaults: bool = True) -> dict[str, Any]:
        """The params as the job's form cleans them, in JSON form; else InvalidJobParams.

        What is refused and what the cleaned dict promises: automation.params.clean_params.
        `partial` validates only the params given (a community's stored defaults may leave
        out what each run must supply); `defaults` adds the form's initial values for
        params not given (what a run uses; a stored setting keeps only what was given).
        """
        return clean_params(self.params_form, params, partial=partial, defaults=defaults,
                            job_name=self.name)


_registry: dict[str, JobSpec] = {}
# Creates a job's Celery task; installed by automation.tasks (which builds on this module,
# so this module must not import it back). Jobs declared before it is installed get their
# task then.
_task_factory: Callable[[JobSpec], Any] | None = None


def use_task_factory(factory: Callable[[JobSpec], Any]) -> None:
    global _task_factory
    _task_factory = factory
    for spec in _registry.values():
        if not hasattr(spec.func, "task"):
            spec.func.task = factory(spec)


class UnknownJob(KeyError):
    def __str__(self) -> str:
        known = ", ".join(sorted(_registry)) or "none"
        return f"unknown job {self.args[0]!r} (registered: {known})"


def tenant_job(
    *,
    name: str,
    description: str,
    category: str,
    queue: str = "automation",
    cron: str | None = None,
    soft_time_limit: int = 300,
    time_limit: int | None = None,
    max_retries: int = 3,
    backoff_base: float = 30.0,
    backoff_cap: float = 900.0,
    params_form: type[forms.Form] = NoParams,
    catch_up: str = "skip",
) -> Callable[[JobFunction], JobFunction]:
    """Declare a tenant job and create the Celery task that runs it."""
    if queue not in QUEUES:
        raise ValueError(f"job {name}: queue must be one of {QUEUES}, not {queue!r}")
    if category not in CATEGORIES:
        raise ValueError(f"job {name}: category must be one of {CATEGORIES}")
    if cron is not None:
        validate_cron(cron)
    if catch_up not in CATCH_UP_POLICIES:
        raise ValueError(
            f"job {name}: catch_up must be one of {CATCH_UP_POLICIES}, not {catch_up!r}")
    if catch_up != "skip" and cron is None:
        raise ValueError(f"job {name}: catch_up={catch_up!r} needs a schedule (cron)")
    hard = time_limit if time_limit is not None else soft_time_limit + 60
    if hard <= soft_time_limit:
        raise ValueError(f"job {name}: time_limit must exceed soft_time_limit")

    def register(func: JobFunction) -> JobFunction:
        existing = _registry.get(name)
        if existing is not None and existing.func is not func:
            qualname = f"{existing.func.__module__}.{existing.func.__qualname__}"
            raise ValueError(f"job {name!r} is already registered by {qualname}")
        spec = JobSpec(
            name=name,
            func=func,
            description=description,
            category=category,
            queue=queue,
            default_cron=cron,
            soft_time_limit=soft_time_limit,
            time_limit=hard,
            max_retries=max_retries,
            backoff_base=backoff_base,
            backoff_cap=backoff_cap,
            params_form=params_form,
            catch_up=catch_up,
        )
        _registry[name] = spec
        func.spec = spec
        if _task_factory is not None:
            func.task = _task_factory(spec)
        return func

    return register


def get_job(name: str) -> JobSpec:
    try:
        return _registry[name]
    except KeyError:
        raise UnknownJob(name) from None


def all_jobs() -> list[JobSpec]:
    return sorted(_registry.values(), key=lambda spec: spec.name)


def scheduled_jobs() -> list[JobSpec]:
    return [spec for spec in all_jobs() if spec.scheduled]


def is_registered(name: str) -> bool:
    return name in _registry


def autodiscover(app_names: list[str], extra_modules: list[str]) -> None:
    """Import every app's `jobs` module (or package) so their decorators run."""
    for app_name in app_names:
        try:
            importlib.import_module(f"{app_name}.jobs")
        except ModuleNotFoundError as exc:
            if exc.name != f"{app_name}.jobs":
                raise
    for module in extra_modules:
        importlib.import_module(module)
