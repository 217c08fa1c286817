"""testproject's settings plus the peers benchmark 1 compares with (bench venv only).

django-health-check 4.x and django-watchman are installed in ``bench/.venv`` only,
never as project dependencies; testproject itself stays free of them.
"""

from __future__ import annotations

from testproject.settings import *  # noqa: F403
from testproject.settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "health_check", "watchman"]
ROOT_URLCONF = "bench.peer_urls"

# django-watchman: only its caches check (set, get, delete on every cache in CACHES),
# no token (like our anonymous probes).
WATCHMAN_CHECKS = ("watchman.checks.caches",)
