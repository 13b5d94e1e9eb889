"""The operations dashboard: staff pages inside the admin site, rendered on the server.

Every figure comes from `automation.stats` (aggregated in the database, a bounded number
of queries whatever the number of runs); every change goes through
`automation.operations`, which enforces the rules and writes the audit trail.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.admin import AdminSite
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.http import url_has_allowed_host_and_scheme, urlencode

from automation import operations, stats
from automation.errors import InvalidJobParams
from automation.input_limits import has_control_characters
from automation.models import JobRun
from automation.registry import UnknownJob, get_job
from communities.models import Community

from .charts import stacked_bars
from .formatting import duration, rate
from .forms import (
    DEFAULT_HISTORY_WINDOW,
    DEFAULT_WINDOW,
    WINDOWS,
    ActionForm,
    HistoryFilter,
    OverviewFilter,
    errors_text,
)

VIEW_PERM = "automation.view_jobrun"
CHANGE_PERM = "automation.change_communityautomationsetting"  # enable, disable
RUN_PERM = "automation.run_communityautomationsetting"  # run now: starts work


def refresh_seconds() -> int:
    """How often the running-now banner refreshes (DASHBOARD_REFRESH_SECONDS, default 5)."""
    return max(1, int(getattr(settings, "DASHBOARD_REFRESH_SECONDS", 5)))


def _require(request: HttpRequest, perm: str) -> None:
    if not request.user.has_perm(perm):
        raise PermissionDenied(f"needs the {perm} permission")


def action_rights(request: HttpRequest) -> dict[str, bool]:
    """Which action buttons the pages show: each only to those who may use it."""
    can_change = request.user.has_perm(CHANGE_PERM)
    can_run = request.user.has_perm(RUN_PERM)
    return {"can_change": can_change, "can_run": can_run, "can_act": can_change or can_run}


def with_text(figures: dict[str, Any]) -> dict[str, Any]:
    """The figures plus their display text (`<name>_text`) for rates and durations."""
    shown = dict(figures)
    for name, value in figures.items():
        if name == "success_rate":
            shown["success_rate_text"] = rate(value)
        elif name.endswith("_duration"):
            shown[f"{name}_text"] = duration(value)
    return shown


def running_rows(now: datetime) -> list[dict[str, Any]]:
    rows = []
    for run in stats.running_now():
        began = run.started_at or run.created_at
        done, total = run.progress_done, run.progress_total
        rows.append({
            "run": run,
            "elapsed": duration(max(0.0, (now - began).total_seconds())),
            "progress_done": done,
            "progress_total": total,
            "percent": (min(100, round(100 * done / total)) if done is not None and total
                        else None),
        })
    return rows


class Dashboard:
    """The views, bound to the admin site whose chrome (header, sidebar) they share."""

    def __init__(self, site: AdminSite) -> None:
        self.site = site

    def _context(self, request: HttpRequest, **extra: Any) -> dict[str, Any]:
        return {**self.site.each_context(request), "refresh_seconds": refresh_seconds(),
                **extra}

    @staticmethod
    def _running_context(now: datetime) -> dict[str, Any]:
        return {"running": running_rows(now), "refreshed_at": now}

    def overview(self, request: HttpRequest) -> HttpResponse:
        _require(request, VIEW_PERM)
        now = timezone.now()
        form = OverviewFilter(request.GET)
        if form.is_valid():
            window, category = form.cleaned_data["window"], form.cleaned_data["category"]
        else:
            messages.warning(request, f"Filter ignored — {errors_text(form)}")
            window, category = DEFAULT_WINDOW, ""
            form = OverviewFilter({"window": window})
            form.is_valid()
        label, span = WINDOWS[window]
        since = now - span
        context = self._context(
            request,
            title="Operations dashboard",
            form=form,
            window=window,
            window_label=label,
            windows=[(key, text) for key, (text, _) in WINDOWS.items()],
            category=category,
            summary=with_text(stats.summary(since, now)),
            jobs=[with_text(row) for row in stats.job_rows(now, since,
                                                           category=category or None)],
            communities=list(Community.objects.order_by("slug").only("pk", "slug",
                                                                        "is_active")),
            here=request.get_full_path(),
            now=now,
            **action_rights(request),
            **self._running_context(now),
        )
        return TemplateResponse(request, "admin/dashboard/overview.html", context)

    def running(self, request: HttpRequest) -> HttpResponse:
        """The banner's inner HTML, fetched by dashboard.js every few seconds."""
        _require(request, VIEW_PERM)
        now = timezone.now()
        return TemplateResponse(request, "admin/dashboard/_running.html",
                                self._running_context(now))

    def history(self, request: HttpRequest, job_name: str) -> HttpResponse:
        _require(request, VIEW_PERM)
        try:
            spec = get_job(job_name)
        except UnknownJob:
            raise Http404(f"no job named {job_name!r}") from None
        now = timezone.now()
        form = HistoryFilter(request.GET, today=now.date())
        if not form.is_valid():
            messages.warning(request, f"Filter ignored — {errors_text(form)}")
            form = HistoryFilter({}, today=now.date())
            form.is_valid()
        since, until = form.period(now)
        community = form.cleaned_data.get("community")
        history = stats.job_history(spec.name, since, until, community=community, limit=50)
        unit = stats.timeline_unit(since, until)
        context = self._context(
            request,
            title=f"History of {spec.name}",
            spec=spec,
            form=form,
            since=since,
            until=until,
            community=community,
            figures=with_text(history.stats),
            chart=stacked_bars(history.timeline, since, until, unit),
            runs=[(run, duration(run.duration_seconds)) for run in history.runs],
            window_links=self._window_links(form, community),
            communities=list(Community.objects.order_by("slug").only("pk", "slug",
                                                                        "is_active")),
            here=request.get_full_path(),
            **action_rights(request),
        )
        return TemplateResponse(request, "admin/dashboard/history.html", context)

    @staticmethod
    def _window_links(form: HistoryFilter, community: Community | None
                      ) -> list[tuple[str, str, str, bool]]:
        """(key, label, url, active) per preset, keeping the community filter."""
        data = form.cleaned_data
        current = None if data.get("start") else data.get("window") or DEFAULT_HISTORY_WINDOW
        links = []
        for key, (label, _) in WINDOWS.items():
            query = {"window": key, **({"community": community.pk} if community else {})}
            links.append((key, label, f"?{urlencode(query)}", key == current))
        return links

    def action(self, request: HttpRequest) -> HttpResponse:
        """Enable, disable or run a job for one community or all; always back to the page.

        403, with nothing changed, unless the user holds the permission of that very action.
        """
        if not action_rights(request)["can_act"]:
            raise PermissionDenied(f"needs the {CHANGE_PERM} or {RUN_PERM} permission")
        form = ActionForm(request.POST)
        valid = form.is_valid()
        back = self._back(request, form.cleaned_data.get("next", ""))
        if not valid:
            messages.error(request, f"Nothing done — {errors_text(form)}")
            return HttpResponseRedirect(back)
        job = form.cleaned_data["job"]
        op = form.cleaned_data["op"]
        community = form.cleaned_data["community"]
        _require(request, RUN_PERM if op == ActionForm.RUN else CHANGE_PERM)
        if op == ActionForm.RUN:
            self._run_now(request, job, community)
        else:
            self._toggle(request, job, op == ActionForm.ENABLE, community)
        return HttpResponseRedirect(back)

    def _back(self, request: HttpRequest, wanted: str) -> str:
        """Where to go after an action: `wanted` (a `next` the form accepted, so no NUL and
        not too long) if it is a path of this site, else the dashboard."""
        if wanted.startswith("/") and not has_control_characters(wanted) and (
                url_has_allowed_host_and_scheme(wanted, allowed_hosts={request.get_host()},
                                                require_https=request.is_secure())):
            return wanted
        return reverse("admin:dashboard", current_app=self.site.name)

    @staticmethod
    def _toggle(request: HttpRequest, job: str, enabled: bool,
                community: Community | None) -> None:
        verb = "enabled" if enabled else "disabled"
        where = community.slug if community else "all communities"
        try:
            changed = operations.set_enabled(job, enabled, community=community)
        except ValidationError as exc:  # a stored setting that no longer validates
            messages.error(request, f"Not {verb}: {job} for {where} — {' '.join(exc.messages)}")
            return
        if changed:
            messages.success(request, f"{verb.capitalize()} {job} for {where} "
                                      f"({changed} setting{'s' if changed != 1 else ''} changed).")
        else:
            messages.info(request, f"Nothing changed: {job} was already {verb} for {where}.")

    def _run_now(self, request: HttpRequest, job: str, community: Community | None) -> None:
        now = timezone.now()
        try:
            result = operations.trigger(job, now=now, community=community,
                                        trigger=JobRun.Trigger.MANUAL)
        except operations.TriggerTooSoon as exc:
            messages.warning(request, f"Not started (429 too many requests): {exc}")
            return
        except (operations.RunInProgress, operations.JobDisabled) as exc:
            messages.warning(request, f"Not started (409 conflict): {exc}")
            return
        except operations.OperationRefused as exc:
            messages.error(request, f"Not started: {exc}")
            return
        except InvalidJobParams as exc:
            messages.error(request, f"Not started: {job} cannot run with its stored params "
                                    f"({exc}); run it from the command line with params.")
            return
        if result.runs:
            links = format_html_join(
                ", ", '<a href="{}">#{}</a> ({})',
                ((reverse("admin:automation_jobrun_change", args=[run.pk],
                          current_app=self.site.name), run.pk,
                  run.community.slug if run.community else "-") for run in result.runs))
            messages.success(request, format_html(
                "Queued {} run{} of {}: {}.", len(result.runs),
                "" if len(result.runs) == 1 else "s", job, links))
        left_out = [(what, slugs) for what, slugs in (
            ("already queued or running (409)", result.in_progress),
            ("triggered moments ago (429)", result.too_soon),
            ("disabled", result.disabled)) if slugs]
        if left_out:
            messages.warning(request, f"Not started for some communities of {job} — " + "; ".join(
                f"{what}: {', '.join(slugs)}" for what, slugs in left_out) + ".")
        if not result.runs and not left_out:
            messages.info(request, f"Nothing queued: {job} is not set up for any active "
                                   "community.")

