"""Jobs of the notifications app, one module per job, named after it."""

from . import daily_community_digest  # noqa: F401
