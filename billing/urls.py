"""Public endpoints of the billing app."""

from django.urls import path

from . import views

app_name = "billing"
urlpatterns: list = [
    path("stripe/webhook/", views.stripe_webhook, name="stripe_webhook"),
]
