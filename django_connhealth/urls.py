"""Mount with ``path("health/", include("django_connhealth.urls"))``."""

from __future__ import annotations

from django.urls import path

from django_connhealth import views

app_name = "connhealth"

urlpatterns = [
    path("", views.ready, name="health"),
    path("live", views.live, name="live"),
    path("ready", views.ready, name="ready"),
    path("metrics", views.metrics, name="metrics"),
]
