from __future__ import annotations

from django.urls import include, path

from testproject import views

urlpatterns = [
    path("", views.index, name="index"),
    path("ok", views.ok, name="ok"),
    path("work", views.work, name="work"),
    path("work-builtin", views.work_builtin, name="work-builtin"),
    path("pool", views.pool, name="pool"),
    path("hold", views.hold, name="hold"),
    path("health/", include("django_connhealth.urls")),
]
