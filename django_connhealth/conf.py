"""This app's settings, in one place.

Django settings (``CONNHEALTH_TOKEN`` and friends) are read when used, so
``override_settings`` works; each defaults to the environment variable of the
same name. Settings that ``sized_caches()`` reads from its ``environ``
(``CONNHEALTH_POOL_HEADROOM``, ``CONNHEALTH_HOST``) are functions of that
environ. A malformed value raises SettingError naming the setting; the system
checks report it at start-up (``connhealth.E003``) and the health views answer 503.
"""

from __future__ import annotations

import os
import socket
from typing import TYPE_CHECKING, Any

from django.conf import settings

from django_connhealth import defaults
from django_connhealth.errors import SettingError
from django_connhealth.naming import clean
from django_connhealth.parse import env_count, parse_count, parse_seconds

if TYPE_CHECKING:
    from collections.abc import Mapping

_UNSET = object()

# Django settings by name, as last read. Looking up a setting that is not
# defined costs an exception inside LazySettings; probes read these on every
# request, so the answer is kept until setting_changed says otherwise.
_seen: dict[str, Any] = {}


def forget(setting: str | None = None) -> None:
    """Read ``setting`` (every setting when ``None``) afresh on its next use."""
    if setting is None:
        _seen.clear()
    else:
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


def _seconds(name: str, default: float, *, zero: bool, minimum: float = 0.0) -> float:
    value = _raw(name)
    return default if value is None else parse_seconds(name, value, zero=zero, minimum=minimum)


class Settings:
    """Typed access to the ``CONNHEALTH_*`` Django settings."""

    @property
    def CONNHEALTH_TOKEN(self) -> str | None:
        """The bearer token; surrounding whitespace (a secret file's newline) is ignored."""
        value = _raw("CONNHEALTH_TOKEN")
        if value is None:
            return None
        if not isinstance(value, str):
            raise SettingError("CONNHEALTH_TOKEN is not valid", "set it to a string, or unset it.")
        return value.strip() or None

    @property
    def CONNHEALTH_CHECK_TIMEOUT(self) -> float:
        return _seconds("CONNHEALTH_CHECK_TIMEOUT", defaults.CHECK_TIMEOUT, zero=False)

    @property
    def CONNHEALTH_PUBLISH_SECONDS(self) -> float:
        return _seconds(
            "CONNHEALTH_PUBLISH_SECONDS",
            defaults.PUBLISH_SECONDS,
            zero=True,
            minimum=defaults.PUBLISH_MIN_SECONDS,
        )

    @property
    def CONNHEALTH_CACHE_SECONDS(self) -> float:
        return _seconds("CONNHEALTH_CACHE_SECONDS", defaults.CACHE_SECONDS, zero=True)

    @property
    def CONNHEALTH_LEAK_SECONDS(self) -> float:
        """0: off. Otherwise a connection checked out longer than this is reported."""
        return _seconds("CONNHEALTH_LEAK_SECONDS", defaults.LEAK_SECONDS, zero=True)

    @property
    def CONNHEALTH_WATCHDOG_SECONDS(self) -> float:
        """0: off. Otherwise liveness fails when every request thread is stuck this long."""
        return _seconds("CONNHEALTH_WATCHDOG_SECONDS", defaults.WATCHDOG_SECONDS, zero=True)

    @property
    def CONNHEALTH_PROBE_PORT(self) -> int | None:
        """The probe listener's port; ``None`` (unset or 0): no listener."""
        value = _raw("CONNHEALTH_PROBE_PORT")
        if value is None:
            return None
        try:
            port = parse_count("CONNHEALTH_PROBE_PORT", value, minimum=0)
        except SettingError:
            port = -1
        if not 0 <= port <= 65535:
            raise SettingError(
                f"CONNHEALTH_PROBE_PORT={value!r} is not a TCP port",
                "set it to a port from 1 to 65535, or 0 (no probe listener).",
            )
        return port or None

    @property
    def CONNHEALTH_PROBE_HOST(self) -> str:
        """The address the probe listener binds (all addresses by default)."""
        value = _raw("CONNHEALTH_PROBE_HOST")
        if value is None:
            return defaults.PROBE_HOST
        if not isinstance(value, str) or not value.strip():
            raise SettingError(
                f"CONNHEALTH_PROBE_HOST={value!r} is not an address",
                "set it to an IP address or host name to bind, or unset it (all addresses).",
            )
        return value.strip()


conf = Settings()

#: Every Django setting, for the check that reports malformed ones.
SETTING_NAMES = (
    "CONNHEALTH_TOKEN",
    "CONNHEALTH_CHECK_TIMEOUT",
    "CONNHEALTH_PUBLISH_SECONDS",
    "CONNHEALTH_CACHE_SECONDS",
    "CONNHEALTH_WATCHDOG_SECONDS",
    "CONNHEALTH_LEAK_SECONDS",
    "CONNHEALTH_PROBE_PORT",
    "CONNHEALTH_PROBE_HOST",
)


def pool_headroom(environ: Mapping[str, str]) -> int:
    """``CONNHEALTH_POOL_HEADROOM``: connections per process beyond one per thread."""
    headroom = env_count(environ, "CONNHEALTH_POOL_HEADROOM", minimum=0)
    return defaults.POOL_HEADROOM if headroom is None else headroom


def client_host(environ: Mapping[str, str]) -> str:
    """``CONNHEALTH_HOST``, the ``<host>`` of connection names; default the hostname.

    Characters Redis refuses in a client name, and ``:``, become ``_``.
    """
    host = environ.get("CONNHEALTH_HOST", "").strip() or socket.gethostname()
    return clean(host, colons=False) or "unknown"
