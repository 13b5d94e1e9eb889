"""API routes, mounted at /api/ (see docs/api.md). Paths take no trailing slash."""

from django.urls import path, re_path
from drf_spectacular.views import SpectacularJSONAPIView, SpectacularSwaggerView
from rest_framework.permissions import AllowAny

from . import community_views as cv
from . import views as v
from .errors import not_found

community = "communities/<str:slug>"
job = f"{community}/jobs/<str:name>"

urlpatterns = [
    path("schema", SpectacularJSONAPIView.as_view(
        authentication_classes=[], permission_classes=[AllowAny]), name="api-schema"),
    path("docs", SpectacularSwaggerView.as_view(
        url_name="api-schema", authentication_classes=[], permission_classes=[AllowAny]),
        name="api-docs"),
    path("whoami", v.WhoAmIView.as_view(), name="api-whoami"),
    path("summary", v.SummaryView.as_view(), name="api-summary"),
    path("jobs", v.JobListView.as_view(), name="api-jobs"),
    path("jobs/<str:name>", v.JobDetailView.as_view(), name="api-job"),
    path("jobs/<str:name>/run", v.JobRunView.as_view(), name="api-job-run"),
    path("jobs/<str:name>/toggle", v.JobToggleView.as_view(), name="api-job-toggle"),
    path("jobs/<str:name>/history", v.JobHistoryView.as_view(), name="api-job-history"),
    path("runs/<int:run_id>", v.RunDetailView.as_view(), name="api-run"),
    path(community, cv.CommunityDetailView.as_view(), name="api-community"),
    path(f"{community}/jobs", cv.CommunityJobListView.as_view(), name="api-community-jobs"),
    path(job, cv.CommunityJobView.as_view(), name="api-community-job"),
    path(f"{job}/enable", cv.CommunityJobEnableView.as_view(), name="api-community-enable"),
    path(f"{job}/disable", cv.CommunityJobDisableView.as_view(), name="api-community-disable"),
    path(f"{job}/pause", cv.CommunityJobPauseView.as_view(), name="api-community-pause"),
    path(f"{job}/resume", cv.CommunityJobResumeView.as_view(), name="api-community-resume"),
    path(f"{job}/run", cv.CommunityJobRunView.as_view(), name="api-community-run"),
    path(f"{community}/runs", cv.CommunityRunListView.as_view(), name="api-community-runs"),
    path(f"{community}/runs/<int:run_id>", cv.CommunityRunDetailView.as_view(),
         name="api-community-run"),
    # Anything else under /api/ is a JSON 404, not Django's HTML page.
    re_path(r"^", not_found),
]
