"""Settings of the demo project, read from the environment.

``REDIS_URL`` (required) is the Redis the cache uses; with ``REDIS_SENTINELS``
(``host:port`` of each sentinel, comma-separated) its host is the Sentinel
service (``redis://mymaster/0``). ``DJANGO_DEBUG``,
``DJANGO_SECRET_KEY``, ``DJANGO_ALLOWED_HOSTS`` and ``TESTPROJECT_VAR_DIR`` (where
the SQLite database lives) have defaults fit for a local demo, not production.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from django_connhealth import sized_caches


def _env_flag(name: str, default: bool) -> bool:
    value = os.environ.get(name, "")
    flag = value.strip().lower()
    if not flag:
        return default
    if flag in {"1", "true", "yes", "on"}:
        return True
    if flag in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name}={value!r} is not valid: set it to 1 or 0, or unset it.")


def _redis_url() -> str:
    url = os.environ.get("REDIS_URL", "").strip()
    if not url:
        raise ImproperlyConfigured(
            "REDIS_URL is not set: set it to the Redis server the cache uses, for example "
            "REDIS_URL=redis://127.0.0.1:6379/0 (`python -m testproject.demo` starts a "
            "throwaway redis-server and sets it for you)."
        )
    return url


DEBUG = _env_flag("DJANGO_DEBUG", False)
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "") or "testproject-dev-only-not-secret"
ALLOWED_HOSTS = [
    host.strip()
    for host in os.environ.get("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1").split(",")
    if host.strip()
]

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django_connhealth",
]

MIDDLEWARE = [
    # First, so that probes get their answer before ALLOWED_HOSTS is consulted:
    "django_connhealth.middleware.ProbeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "testproject.urls"
WSGI_APPLICATION = "testproject.wsgi.application"

# Nothing in the demo writes to the database; it is here because auth and
# sessions need one. Kept out of the source tree.
VAR_DIR = Path(
    os.environ.get("TESTPROJECT_VAR_DIR", "")
    or Path(tempfile.gettempdir()) / "django-connhealth-testproject"
)
VAR_DIR.mkdir(parents=True, exist_ok=True)  # SQLite creates the file, not its directory
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": VAR_DIR / "db.sqlite3",
    }
}


def _sentinels() -> list[tuple[str, int]]:
    value = os.environ.get("REDIS_SENTINELS", "")
    sentinels = []
    for address in filter(None, (item.strip() for item in value.split(","))):
        host, _, port = address.rpartition(":")
        if not (host and port.isdigit()):
            raise ImproperlyConfigured(
                f"REDIS_SENTINELS={value!r} is not valid: set it to the sentinels' host:port, "
                f"comma-separated (127.0.0.1:26379,127.0.0.1:26380), or unset it."
            )
        sentinels.append((host, int(port)))
    return sentinels


_default: dict[str, object] = {
    "BACKEND": "django_redis.cache.RedisCache",
    "LOCATION": _redis_url(),
}
if _sentinels():
    # As django-redis's docs write a Sentinel alias (the master only: no SentinelClient).
    DJANGO_REDIS_CONNECTION_FACTORY = "django_redis.pool.SentinelConnectionFactory"
    _default["OPTIONS"] = {
        "SENTINELS": _sentinels(),
        "CONNECTION_POOL_CLASS": "redis.sentinel.SentinelConnectionPool",
    }
CACHES = sized_caches({"default": _default})

# TESTPROJECT_BUILTIN=sized (or unsized) adds an alias "builtin" on Django's own
# RedisCache, sized or as Django alone builds it, for comparing the two.
_BUILTIN = os.environ.get("TESTPROJECT_BUILTIN", "").strip()
if _BUILTIN not in {"", "sized", "unsized"}:
    raise ImproperlyConfigured(
        f"TESTPROJECT_BUILTIN={_BUILTIN!r} is not valid: set it to sized or unsized, or unset it."
    )
if _BUILTIN:
    _builtin = {
        "builtin": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": _redis_url(),
        }
    }
    CACHES.update(sized_caches(_builtin) if _BUILTIN == "sized" else _builtin)

USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
