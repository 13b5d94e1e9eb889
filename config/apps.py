from django.contrib.admin.apps import AdminConfig


class AutomationAdminConfig(AdminConfig):
    """The stock admin, with the site class that adds the job registry page."""

    default_site = "config.admin_site.AutomationAdminSite"
