"""The unsubscribe page reached from digest emails (and their List-Unsubscribe header)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from .preferences import InvalidUnsubscribeToken, read_unsubscribe_token, set_preference


# No CSRF token: mail clients' one-click unsubscribe (RFC 8058) POSTs here without one, and
# the signed token in the URL is the credential — a forged request would need that token.
@csrf_exempt
@require_http_methods(["GET", "POST"])
def unsubscribe(request: HttpRequest, token: str) -> HttpResponse:
    """GET shows a confirmation page (link scanners must not unsubscribe anyone); POST acts."""
    try:
        target = read_unsubscribe_token(token)
    except InvalidUnsubscribeToken as exc:
        return render(request, "notifications/unsubscribe/invalid.html",
                      {"message": str(exc)}, status=400)
    context = {"member": target.member, "community": target.member.community,
               "label": target.label,
               "already_off": not target.member.wants(target.preference)}
    if request.method == "POST":
        set_preference(target.member, target.preference, False)
        return render(request, "notifications/unsubscribe/done.html", context)
    return render(request, "notifications/unsubscribe/confirm.html", context)
