"""Dashboard routes, mounted inside the admin site (staff only) under admin/dashboard/."""

from __future__ import annotations

from django.contrib.admin import AdminSite
from django.urls import URLPattern


def admin_urls(site: AdminSite) -> list[URLPattern]:
    """The dashboard's URL patterns, each view wrapped by `site.admin_view`."""
    return []
