"""Concurrency of one process, and the pool size it needs.

Pure functions: an environment and a command line (and, inside uWSGI, its options)
in, numbers and where each came from out. Nothing here opens a connection. What
each kind of server says lives in ``django_connhealth.servers``; the precedence
between them and the environment lives here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django_connhealth import defaults
from django_connhealth.parse import env_count
from django_connhealth.servers.asgi import asgi_concurrency, asgi_server
from django_connhealth.servers.base import Concurrency, Role, ServerConcurrency, pick, pool_size
from django_connhealth.servers.celery import celery_command, celery_concurrency
from django_connhealth.servers.gunicorn import (
    GunicornSettings,
    gunicorn_argv,
    gunicorn_concurrency,
    gunicorn_settings,
    is_greenlet_worker,
    load_gunicorn_config,
    parse_gunicorn_args,
    split_cmd_args,
)
from django_connhealth.servers.uwsgi import running_uwsgi_options, uwsgi_concurrency

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from pathlib import Path

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


def resolve_concurrency(
    environ: Mapping[str, str],
    argv: Sequence[str] | None = None,
    cwd: Path | None = None,
    *,
    process_argv: Sequence[str] | None = None,
    uwsgi_options: Mapping[str, object] | None = None,
) -> Concurrency:
    """Workers and threads per worker, each from the first source that sets it.

    ``argv`` is gunicorn's arguments inside a gunicorn master or worker
    (:func:`gunicorn_argv`); ``process_argv`` the whole command line (``sys.argv``),
    to recognise ASGI servers and Celery workers; ``uwsgi_options`` ``uwsgi.opt``
    inside uWSGI.

    1. ``CONNHEALTH_WORKERS`` / ``CONNHEALTH_THREADS``
    2. the server running this process: uWSGI, gunicorn (its config file,
       ``GUNICORN_CMD_ARGS``, its command line), an ASGI server, a Celery worker;
       else ``GUNICORN_CMD_ARGS``
    3. ``WEB_CONCURRENCY`` (workers)
    4. ``UWSGI_PROCESSES`` or ``UWSGI_WORKERS`` / ``UWSGI_THREADS``
    5. 1 worker, 1 thread

    Greenlets (gunicorn ``-k gevent``, Celery ``--pool gevent``, uWSGI ``gevent``) and
    ASGI requests count as threads, capped at ``CONNHEALTH_GREENLET_CAP``.
    """
    # Both read whatever runs, so a malformed value fails like every other variable.
    gunicorn = gunicorn_settings(environ, argv, cwd)
    cap = env_count(environ, "CONNHEALTH_GREENLET_CAP") or defaults.GREENLET_CAP
    server = _server(environ, argv, process_argv or (), uwsgi_options, cap)
    if server is None:
        server = gunicorn_concurrency(gunicorn, in_gunicorn=argv is not None, cap=cap)
    sources: dict[str, str] = {}
    workers = pick(
        sources,
        "workers",
        ("CONNHEALTH_WORKERS", env_count(environ, "CONNHEALTH_WORKERS")),
        server.workers,
        ("WEB_CONCURRENCY", env_count(environ, "WEB_CONCURRENCY")),
        ("UWSGI_PROCESSES", env_count(environ, "UWSGI_PROCESSES")),
        ("UWSGI_WORKERS", env_count(environ, "UWSGI_WORKERS")),
        ("default", 1),
    )
    threads = pick(
        sources,
        "threads",
        ("CONNHEALTH_THREADS", env_count(environ, "CONNHEALTH_THREADS")),
        server.threads,
        ("UWSGI_THREADS", env_count(environ, "UWSGI_THREADS")),
        ("default", 1),
    )
    worker_class = server.worker_class
    if worker_class:
        sources["worker_class"] = server.worker_class_source
    else:
        uwsgi = [s for s in (sources["workers"], sources["threads"]) if s.startswith("UWSGI")]
        worker_class = "uwsgi" if uwsgi else "sync"
        sources["worker_class"] = uwsgi[0] if uwsgi else "default"
    if (worker_class == "sync" or worker_class.endswith("SyncWorker")) and threads > 1:
        # gunicorn runs a sync worker with more than one thread as gthread
        # (gunicorn.config.Config.worker_class_str).
        worker_class = "gthread"
    return Concurrency(workers, threads, worker_class, sources, server.role)


def _server(
    environ: Mapping[str, str],
    gunicorn_args: Sequence[str] | None,
    argv: Sequence[str],
    uwsgi_options: Mapping[str, object] | None,
    cap: int,
) -> ServerConcurrency | None:
    """The server this process runs in, other than gunicorn; ``None`` for gunicorn or none."""
    if uwsgi_options is not None:
        return uwsgi_concurrency(uwsgi_options, cap)
    if gunicorn_args is not None:
        return None
    return asgi_concurrency(environ, argv, cap) or celery_concurrency(environ, argv, cap)


def process_concurrency(
    environ: Mapping[str, str], argv: Sequence[str], cwd: Path | None = None
) -> Concurrency:
    """:func:`resolve_concurrency` for this process: ``argv`` is its ``sys.argv``."""
    return resolve_concurrency(
        environ,
        gunicorn_argv(environ, argv),
        cwd,
        process_argv=argv,
        uwsgi_options=running_uwsgi_options(),
    )


def process_role(environ: Mapping[str, str], argv: Sequence[str]) -> Role:
    """``web`` (gunicorn, uWSGI, an ASGI server), ``celery`` or ``other`` (a command, a script).

    ``argv`` is the process's ``sys.argv``; inside uWSGI, the running uWSGI says so.
    """
    if running_uwsgi_options() is not None or gunicorn_argv(environ, argv) is not None:
        return "web"
    if asgi_server(argv) is not None:
        return "web"
    command = celery_command(argv)
    if command is not None and command[0] in ("worker", "beat"):
        return "celery"
    return "other"
