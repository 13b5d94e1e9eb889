from django.core.exceptions import ObjectDoesNotExist

from .models import Community


class CommunityNotFound(ObjectDoesNotExist):
    pass


def find_community(reference: str | int) -> Community:
    """A community by numeric id or by slug, as operators type it on the command line."""
    text = str(reference).strip()
    # isascii: str.isdigit() also accepts digits like '²' that int() refuses.
    query = Community.objects.filter(pk=int(text)) if text.isascii() and text.isdigit() else None
    community = query.first() if query is not None else None
    if community is None:
        community = Community.objects.filter(slug=text).first()
    if community is None:
        raise CommunityNotFound(f"no community with id or slug {text!r}")
    return community
