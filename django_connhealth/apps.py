from __future__ import annotations

from django.apps import AppConfig
from django.core import checks
from django.core.signals import request_finished, request_started, setting_changed


class ConnHealthConfig(AppConfig):
    name = "django_connhealth"
    verbose_name = "Connection health"

    def ready(self) -> None:
        """Register the system checks, the signal receivers and the process hooks."""
        from django_connhealth import process
        from django_connhealth.checks import check_redis_pools, check_settings
        from django_connhealth.watchdog import watchdog

        checks.register(check_redis_pools, checks.Tags.caches)
        checks.register(check_settings)
        setting_changed.connect(process.on_setting_changed, dispatch_uid="django_connhealth")
        request_started.connect(watchdog.request_started, dispatch_uid="connhealth-watchdog")
        request_finished.connect(watchdog.request_finished, dispatch_uid="connhealth-watchdog")
        process.install_process_hooks()
