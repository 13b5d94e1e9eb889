"""Dashboard routes, mounted inside the admin site (staff only) under admin/dashboard/."""

from __future__ import annotations

from django.contrib.admin import AdminSite
from django.urls import URLPattern, path
from django.views.decorators.http import require_GET, require_POST

from .views import Dashboard


def admin_urls(site: AdminSite) -> list[URLPattern]:
    """The dashboard's URL patterns, each view wrapped by `site.admin_view` (staff login,
    CSRF, never cached); pages answer GET only and the action POST only (else 405)."""
    views = Dashboard(site)
    return [
        path("dashboard/", site.admin_view(require_GET(views.overview)), name="dashboard"),
        path("dashboard/running/", site.admin_view(require_GET(views.running)),
             name="dashboard_running"),
        path("dashboard/action/", site.admin_view(require_POST(views.action)),
             name="dashboard_action"),
        path("dashboard/jobs/<slug:job_name>/", site.admin_view(require_GET(views.history)),
             name="dashboard_history"),
    ]
