"""Inside uWSGI: concurrency from the running uWSGI's own options (``uwsgi.opt``).

``uwsgi.opt`` holds every option as uWSGI parsed it, from the command line, ini
files and ``UWSGI_*`` variables alike: values are bytes, ``True`` for a flag, a list
for an option given more than once (the last one counts, as in uWSGI).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from django_connhealth.parse import parse_count
from django_connhealth.servers.base import Candidate, ServerConcurrency, capped

if TYPE_CHECKING:
    from collections.abc import Mapping


def running_uwsgi_options() -> Mapping[str, object] | None:
    """``uwsgi.opt`` when this process runs inside uWSGI (only there is ``uwsgi`` importable)."""
    try:
        uwsgi = importlib.import_module("uwsgi")
    except ImportError:
        return None
    options = getattr(uwsgi, "opt", None)
    return dict(options) if isinstance(options, dict) else None


def _text(value: object) -> str:
    if isinstance(value, list):
        value = value[-1] if value else ""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _count(options: Mapping[str, object], key: str) -> Candidate:
    if key not in options:
        return ("uwsgi", None)
    return ("uwsgi", parse_count(f"uWSGI option {key}", _text(options[key])))


def uwsgi_concurrency(options: Mapping[str, object], cap: int) -> ServerConcurrency:
    """Workers from ``processes``/``workers`` (aliases: the last given counts), threads
    from ``threads``; ``gevent`` and ``async`` cores count as greenlets, capped at ``cap``.
    """
    workers: Candidate = ("uwsgi", 1)
    for key in options:
        if key in ("processes", "workers"):
            workers = _count(options, key)
    threads = _count(options, "threads")
    for key in ("gevent", "async"):
        cores = _count(options, key)
        if cores[1] is not None:
            threads = capped(cores, cap)
            break
    if threads[1] is None:
        threads = ("uwsgi", 1)
    return ServerConcurrency("web", "uwsgi", "uwsgi", workers, threads)


def uwsgi_module() -> Any | None:
    """The ``uwsgi`` module, inside uWSGI only."""
    try:
        return importlib.import_module("uwsgi")
    except ImportError:
        return None


def threads_run(options: Mapping[str, object]) -> bool:
    """Whether threads the app starts run in this uWSGI: with ``enable-threads`` or ``threads``."""
    return "enable-threads" in options or "threads" in options
