from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET

from .metrics import render_latest


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    body, content_type = render_latest()
    return HttpResponse(body, content_type=content_type)
