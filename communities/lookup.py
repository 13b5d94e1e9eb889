from django.core.exceptions import ObjectDoesNotExist

from .models import Community


class CommunityNotFound(ObjectDoesNotExist):
    pass


def find_community(reference: str | int) -> Community:
    """A community by numeric id or by slug, as operators type it on the command line."""
    text = str(reference).strip()
    # Only ASCII digits of a sane length are an id: str.isdigit() also accepts '²', which
    # int() refuses, and 40 digits overflow the column; such input is a slug matching nothing.
    is_id = text.isascii() and text.isdigit() and len(text) <= 18
    query = Community.objects.filter(pk=int(text)) if is_id else None
    community = query.first() if query is not None else None
    if community is None:
        community = Community.objects.filter(slug=text).first()
    if community is None:
        raise CommunityNotFound(f"no community with id or slug {text!r}")
    return community
