from django.http import HttpRequest

from .cron import describe_cron
from .registry import all_jobs


def job_registry_context(request: HttpRequest) -> dict:
    rows = []
    for spec in all_jobs():
        rows.append({
            "spec": spec,
            "schedule": describe_cron(spec.default_cron) if spec.default_cron else "on demand",
            "params": [
                {"name": name, "help": fld.help_text, "initial": fld.initial}
                for name, fld in spec.params_form.base_fields.items()
            ],
        })
    return {"title": "Job registry", "jobs": rows}
