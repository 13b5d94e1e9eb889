"""API routes (filled in by the api app)."""

urlpatterns: list = []
