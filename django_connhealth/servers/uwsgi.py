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
    from collections.abc import Callable, Mapping


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


def in_uwsgi_master() -> bool:
    """True in a uWSGI master that loaded the app before forking (no ``lazy-apps``)."""
    uwsgi = uwsgi_module()
    return uwsgi is not None and uwsgi.worker_id() == 0


def after_fork_in_workers(hook: Callable[[], object], uwsgi: Any = None) -> None:
    """Run ``hook`` in each uWSGI worker after the fork, after any hook set before.

    uWSGI forks in C: Python's own fork handlers run there only with
    ``py-call-osafterfork``; its ``post_fork_hook`` always runs.
    """
    uwsgi = uwsgi if uwsgi is not None else uwsgi_module()
    previous = getattr(uwsgi, "post_fork_hook", None)

    def post_fork() -> None:
        if callable(previous):
            previous()
        hook()

    uwsgi.post_fork_hook = post_fork


def threads_run(options: Mapping[str, object]) -> bool:
    """Whether threads the app starts run in this uWSGI: with ``enable-threads`` or ``threads``."""
    return "enable-threads" in options or "threads" in options
