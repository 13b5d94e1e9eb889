"""The admin site, with a read-only page listing the job registry."""

from django.contrib import admin
from django.template.response import TemplateResponse
from django.urls import path, reverse


class AutomationAdminSite(admin.AdminSite):
    site_header = "Community automation"
    site_title = "Community automation"
    index_title = "Operations"

    def get_urls(self):
        from dashboard.urls import admin_urls

        urls = [path("automation/jobs/", self.admin_view(self.job_registry), name="job_registry")]
        return urls + admin_urls(self) + super().get_urls()

    def get_app_list(self, request, app_label=None):
        app_list = super().get_app_list(request, app_label)
        for app in app_list:
            if app["app_label"] == "automation":
                app["models"].insert(0, {
                    "name": "Jobs (registry)",
                    "object_name": "JobRegistry",
                    "admin_url": reverse("admin:job_registry", current_app=self.name),
                    "add_url": None,
                    "view_only": True,
                    "perms": {"view": True},
                })
                if request.user.has_perm("automation.view_jobrun"):
                    app["models"].insert(0, {
                        "name": "Operations dashboard",
                        "object_name": "OperationsDashboard",
                        "admin_url": reverse("admin:dashboard", current_app=self.name),
                        "add_url": None,
                        "view_only": True,
                        "perms": {"view": True},
                    })
        return app_list

    def job_registry(self, request):
        from automation.admin_views import job_registry_context

        context = {**self.each_context(request), **job_registry_context(request)}
        return TemplateResponse(request, "admin/automation/job_registry.html", context)
