"""Jobs of the billing app, one module per job, named after it."""

from . import subscription_delinquency_retry  # noqa: F401
