from django.contrib import admin
from django.http import HttpResponseRedirect
from django.urls import path

from automation.views import metrics

urlpatterns = [
    path("", lambda request: HttpResponseRedirect("/admin/")),
    path("admin/", admin.site.urls),
    path("metrics", metrics, name="metrics"),
]
