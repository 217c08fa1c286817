"""testproject's settings with the pool configuration of benchmark 3 (``BENCH_CACHE_MODE``).

- ``sized``: testproject's own CACHES (``sized_caches``): the pool this app installs.
- ``default``: django-redis with its defaults (``redis.ConnectionPool``, no limit).
- ``undersized``: a non-blocking ``redis.ConnectionPool`` with ``max_connections`` 2:
  a request that finds no free connection fails at once.
- ``per-request``: the anti-pattern, a new connection for every request, closed when
  the request ends (``bench.modes.PerRequestConnectionPool``).

Every mode serves the same ``/work`` view (three cache calls through django-redis).
"""

from __future__ import annotations

import os
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from testproject.settings import *  # noqa: F403
from testproject.settings import CACHES

MODE = os.environ.get("BENCH_CACHE_MODE", "sized")
_URL = os.environ["REDIS_URL"]
_BACKEND = "django_redis.cache.RedisCache"

_MODES: dict[str, dict[str, Any] | None] = {
    "sized": None,
    "default": {},
    "undersized": {
        "CONNECTION_POOL_CLASS": "redis.connection.ConnectionPool",
        "CONNECTION_POOL_KWARGS": {"max_connections": 2},
    },
    "per-request": {"CONNECTION_POOL_CLASS": "bench.modes.PerRequestConnectionPool"},
}
if MODE not in _MODES:
    raise ImproperlyConfigured(f"BENCH_CACHE_MODE={MODE!r}: choose one of {', '.join(_MODES)}")
_options = _MODES[MODE]
if _options is not None:
    CACHES = {"default": {"BACKEND": _BACKEND, "LOCATION": _URL, "OPTIONS": _options}}
