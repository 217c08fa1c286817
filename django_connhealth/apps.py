from __future__ import annotations

from django.apps import AppConfig


class ConnHealthConfig(AppConfig):
    name = "django_connhealth"
    verbose_name = "Connection health"

    def ready(self) -> None:
        from django_connhealth import checks  # noqa: F401 -- registers the checks
