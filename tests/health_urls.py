"""A URLconf for the health tests: the app's endpoints at ``health/`` and one other view."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.http import HttpResponse
from django.urls import URLPattern, URLResolver, include, path

if TYPE_CHECKING:
    from django.http import HttpRequest


def other(request: HttpRequest) -> HttpResponse:
    """Any view of the application: ALLOWED_HOSTS and the middleware apply to it."""
    return HttpResponse(b"other", content_type="text/plain")


urlpatterns: list[URLPattern | URLResolver] = [
    path("health/", include("django_connhealth.urls")),
    path("other", other, name="other"),
]
