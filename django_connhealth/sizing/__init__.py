"""Concurrency of one server process, and the pool size it needs.

Pure functions: an environment and a command line (and, inside uWSGI, its options)
in, numbers and where each came from out. Nothing here opens a connection. One
module per kind of server: gunicorn, uWSGI, ASGI servers, Celery workers.
"""

from __future__ import annotations

from django_connhealth.sizing.base import Concurrency, Role, pool_size
from django_connhealth.sizing.gunicorn import (
    GunicornSettings,
    gunicorn_argv,
    gunicorn_settings,
    is_greenlet_worker,
    load_gunicorn_config,
    parse_gunicorn_args,
    split_cmd_args,
)
from django_connhealth.sizing.resolve import (
    process_concurrency,
    process_role,
    resolve_concurrency,
)

__all__ = [
    "Concurrency",
    "GunicornSettings",
    "Role",
    "gunicorn_argv",
    "gunicorn_settings",
    "is_greenlet_worker",
    "load_gunicorn_config",
    "parse_gunicorn_args",
    "pool_size",
    "process_concurrency",
    "process_role",
    "resolve_concurrency",
    "split_cmd_args",
]
