from django.apps import AppConfig, apps
from django.conf import settings


class AutomationConfig(AppConfig):
    name = "automation"
    verbose_name = "Automation"

    def ready(self) -> None:
        # tasks installs the job-task factory before any job module declares its jobs.
        from . import registry, signals, tasks  # noqa: F401 - signals connect on import

        registry.autodiscover(
            [config.name for config in apps.get_app_configs()],
            settings.AUTOMATION_EXTRA_JOB_MODULES,
        )
