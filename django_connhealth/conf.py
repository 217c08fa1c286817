"""This app's Django settings, read when used so ``override_settings`` works.

Each setting defaults to the environment variable of the same name. A malformed
value raises ImproperlyConfigured naming the setting; the system checks report
it at start-up (``connhealth.E003``) and the health views answer 503.
"""

from __future__ import annotations

import math
import os
from typing import Any

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

from django_connhealth import defaults
from django_connhealth.errors import SettingError

_UNSET = object()


# Django settings by name, as last read. Looking up a setting that is not
# defined costs an exception inside LazySettings; probes read these on every
# request, so the answer is kept until setting_changed says otherwise.
_seen: dict[str, Any] = {}


@receiver(setting_changed)
def _forget(*, setting: str, **kwargs: Any) -> None:
    _seen.pop(setting, None)


def _raw(name: str) -> Any:
    try:
        value = _seen[name]
    except KeyError:
        value = _seen[name] = getattr(settings, name, _UNSET)
    if value is _UNSET:
        value = os.environ.get(name, "")
        return value if value != "" else None  # only an empty value counts as unset
    return value


def _seconds(name: str, default: float, *, zero: bool) -> float:
    value = _raw(name)
    if value is None:
        return default
    try:
        seconds = float(value)
        valid = not isinstance(value, bool) and math.isfinite(seconds)
    except (TypeError, ValueError):
        valid = False
    if not valid or seconds < 0 or (seconds == 0 and not zero) or seconds > defaults.MAX_SECONDS:
        lowest = "0" if zero else "more than 0"
        raise SettingError(
            f"{name}={value!r} is not valid",
            f"set it to a number of seconds from {lowest} to {defaults.MAX_SECONDS:g}, "
            "or unset it.",
        )
    return seconds


class Settings:
    """Typed access to the ``CONNHEALTH_*`` settings."""

    @property
    def CONNHEALTH_TOKEN(self) -> str | None:
        value = _raw("CONNHEALTH_TOKEN")
        if value is None or value == "":
            return None
        if not isinstance(value, str) or value != value.strip():
            raise SettingError(
                "CONNHEALTH_TOKEN is not valid",
                "set it to a string without surrounding whitespace, or unset it.",
            )
        return value

    @property
    def CONNHEALTH_CHECK_TIMEOUT(self) -> float:
        return _seconds("CONNHEALTH_CHECK_TIMEOUT", defaults.CHECK_TIMEOUT, zero=False)

    @property
    def CONNHEALTH_PUBLISH_SECONDS(self) -> float:
        return _seconds("CONNHEALTH_PUBLISH_SECONDS", defaults.PUBLISH_SECONDS, zero=True)

    @property
    def CONNHEALTH_CACHE_SECONDS(self) -> float:
        return _seconds("CONNHEALTH_CACHE_SECONDS", defaults.CACHE_SECONDS, zero=True)


conf = Settings()

#: Every setting, for the check that reports malformed ones.
SETTING_NAMES = (
    "CONNHEALTH_TOKEN",
    "CONNHEALTH_CHECK_TIMEOUT",
    "CONNHEALTH_PUBLISH_SECONDS",
    "CONNHEALTH_CACHE_SECONDS",
)
