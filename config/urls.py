from django.contrib import admin
from django.http import HttpResponseRedirect
from django.urls import include, path

from automation.views import metrics

urlpatterns = [
    path("", lambda request: HttpResponseRedirect("/admin/")),
    path("admin/", admin.site.urls),
    path("metrics", metrics, name="metrics"),
    path("notifications/", include("notifications.urls")),
    path("billing/", include("billing.urls")),
    path("api/", include("api.urls")),
]
