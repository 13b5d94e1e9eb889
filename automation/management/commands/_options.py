"""Argument parsing shared by the automation commands."""

from django.core.management.base import CommandError

from communities.lookup import CommunityNotFound, find_community
from communities.models import Community


def community_option(reference: str | None) -> Community | None:
    if reference is None:
        return None
    try:
        return find_community(reference)
    except CommunityNotFound as exc:
        raise CommandError(str(exc)) from exc
