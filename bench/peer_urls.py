"""testproject's URLs plus the peers' health endpoints, all checking the same Redis.

- ``/hc/cache/``: django-health-check 4.x, its ``Cache`` check on the ``default``
  alias (set + get of a fresh key through the same django-redis pool).
- ``/hc/redis/``: django-health-check 4.x, its ``Redis`` check with a
  ``client_factory`` on ``REDIS_URL`` (PING; a new client per probe, as its docs show).
- ``/watchman/``: django-watchman's status view, ``WATCHMAN_CHECKS`` = caches only.

Benchmarks ask django-health-check for ``?format=json`` (testproject has no templates).
"""

from __future__ import annotations

import functools
import os

from django.urls import include, path
from health_check.views import HealthCheckView
from redis.asyncio import Redis as AsyncRedis

from testproject.urls import urlpatterns as testproject_urlpatterns

urlpatterns = [
    *testproject_urlpatterns,
    path(
        "hc/cache/",
        HealthCheckView.as_view(checks=[("health_check.checks.Cache", {"alias": "default"})]),
    ),
    path(
        "hc/redis/",
        HealthCheckView.as_view(
            checks=[
                (
                    "health_check.contrib.redis.Redis",
                    {
                        "client_factory": functools.partial(
                            AsyncRedis.from_url, os.environ["REDIS_URL"]
                        )
                    },
                )
            ]
        ),
    ),
    path("watchman/", include("watchman.urls")),
]
