"""Moderation jobs; importing this package registers them."""

from . import moderation_sla_checker  # noqa: F401
