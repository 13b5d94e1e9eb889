"""Jobs of the integrations app, one module per job, named after it."""

from . import webhook_health_monitor  # noqa: F401
