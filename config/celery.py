"""The Celery app: configuration comes from Django settings (CELERY_*)."""

import os

from celery import Celery
from kombu import Exchange, Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("config")
app.config_from_object("django.conf:settings", namespace="CELERY")

QUEUE_NAMES = ("automation", "notifications", "billing")
app.conf.task_queues = [Queue(name, Exchange(name), routing_key=name) for name in QUEUE_NAMES]
# Route each job to its registry queue; anything else falls back to the default queue.
app.conf.task_routes = ("automation.routing.route_job",)

app.autodiscover_tasks()
