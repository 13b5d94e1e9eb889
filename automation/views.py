import hmac

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET

from .metrics import render_latest


def _authorised(request: HttpRequest) -> bool:
    """`Authorization: Bearer <METRICS_TOKEN>` only; a bare token or another scheme is refused.

    The scheme is case-insensitive (RFC 7235 §2.1), so `bearer` is accepted too.
    """
    token = settings.METRICS_TOKEN
    if not token:
        return True
    scheme, _, supplied = request.headers.get("Authorization", "").strip().partition(" ")
    supplied = supplied.strip()
    if scheme.lower() != "bearer" or not supplied:
        return False
    return hmac.compare_digest(supplied.encode(), token.encode())


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus text format; behind a bearer token when METRICS_TOKEN is set."""
    if not _authorised(request):
        response = HttpResponse("metrics need a valid bearer token\n", status=401)
        response["WWW-Authenticate"] = "Bearer"
        return response
    body, content_type = render_latest()
    return HttpResponse(body, content_type=content_type)
