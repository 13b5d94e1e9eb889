"""The admin site, with a read-only page listing the job registry."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.admin import options
from django.core.exceptions import PermissionDenied
from django.db import models
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, URLResolver, path, reverse
from django.views.decorators.http import require_GET

from automation.bounded_json import BoundedJSONFormField

# Every JSON field edited in admin (a setting's params, a member's preferences) is parsed
# within bounds: Django's own field lets deep nesting raise RecursionError (a 500) and NUL
# through to PostgreSQL. Admin merges these defaults into every ModelAdmin and inline.
options.FORMFIELD_FOR_DBFIELD_DEFAULTS[models.JSONField] = {"form_class": BoundedJSONFormField}

# The registry shows every job's schedule and params: what a settings viewer may see.
REGISTRY_PERM = "automation.view_communityautomationsetting"
DASHBOARD_PERM = "automation.view_jobrun"


class AutomationAdminSite(admin.AdminSite):
    site_header = "Community automation"
    site_title = "Community automation"
    index_title = "Operations"

    def get_urls(self) -> list[URLPattern | URLResolver]:
        from dashboard.urls import admin_urls

        urls = [path("automation/jobs/", self.admin_view(require_GET(self.job_registry)),
                     name="job_registry")]
        return urls + admin_urls(self) + super().get_urls()

    def get_app_list(self, request: HttpRequest, app_label: str | None = None
                     ) -> list[dict[str, Any]]:
        # Each page is listed only to those it would not answer 403.
        app_list = super().get_app_list(request, app_label)
        pages = [("Jobs (registry)", "JobRegistry", "admin:job_registry", REGISTRY_PERM),
                 ("Operations dashboard", "OperationsDashboard", "admin:dashboard",
                  DASHBOARD_PERM)]
        for app in app_list:
            if app["app_label"] != "automation":
                continue
            for name, object_name, url_name, perm in pages:
                if request.user.has_perm(perm):
                    app["models"].insert(0, {
                        "name": name, "object_name": object_name,
                        "admin_url": reverse(url_name, current_app=self.name),
                        "add_url": None, "view_only": True, "perms": {"view": True},
                    })
        return app_list

    def job_registry(self, request: HttpRequest) -> HttpResponse:
        from automation.admin_views import job_registry_context

        if not request.user.has_perm(REGISTRY_PERM):
            raise PermissionDenied(f"needs the {REGISTRY_PERM} permission")
        context = {**self.each_context(request), **job_registry_context(request)}
        return TemplateResponse(request, "admin/automation/job_registry.html", context)
