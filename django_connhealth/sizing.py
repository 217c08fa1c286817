"""Concurrency of one web server process, and the pool size it needs.

Pure functions: an environment (and, inside gunicorn, its command line) in,
numbers and where each came from out. Nothing here opens a connection.
"""

from __future__ import annotations

import argparse
import importlib
import runpy
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from django_connhealth import defaults
from django_connhealth.errors import SettingError
from django_connhealth.parse import env_count, parse_count

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence


@dataclass(frozen=True)
class Concurrency:
    """Requests one process serves at once, and how many such processes run."""

    workers: int
    threads: int
    worker_class: str
    sources: Mapping[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "workers": self.workers,
            "threads": self.threads,
            "worker_class": self.worker_class,
            "sources": dict(self.sources),
        }


# -- gunicorn -----------------------------------------------------------------


@dataclass(frozen=True)
class GunicornSettings:
    """The gunicorn settings that decide concurrency, each with its source."""

    values: Mapping[str, str] = field(default_factory=dict)
    sources: Mapping[str, str] = field(default_factory=dict)


_GUNICORN_KEYS = ("workers", "threads", "worker_class", "worker_connections", "config")


class _ArgumentParser(argparse.ArgumentParser):
    def __init__(self, origin: str) -> None:
        super().__init__(add_help=False, allow_abbrev=True, prog="gunicorn")
        self.origin = origin

    def error(self, message: str) -> NoReturn:
        raise SettingError(
            f"{self.origin} could not be read as gunicorn arguments ({message})",
            "fix it so that `gunicorn` itself accepts it.",
        )


def parse_gunicorn_args(args: Sequence[str], origin: str) -> dict[str, str]:
    """The concurrency options in gunicorn command-line ``args``, as given.

    Options gunicorn knows but that do not affect concurrency are ignored.
    """
    parser = _ArgumentParser(origin)
    parser.add_argument("-w", "--workers")
    parser.add_argument("--threads")
    parser.add_argument("-k", "--worker-class", dest="worker_class")
    parser.add_argument("--worker-connections", dest="worker_connections")
    parser.add_argument("-c", "--config")
    # gunicorn's other options that take a value, so that their values are not
    # mistaken for ours when abbreviated options would otherwise collide.
    parser.add_argument("--worker-tmp-dir")
    namespace, _ = parser.parse_known_args(list(args))
    return {key: value for key in _GUNICORN_KEYS if (value := getattr(namespace, key)) is not None}


def split_cmd_args(value: str) -> list[str]:
    try:
        return shlex.split(value)
    except ValueError as exc:
        raise SettingError(
            f"GUNICORN_CMD_ARGS={value!r} is not valid ({exc})",
            "quote it the way a shell would.",
        ) from None


def load_gunicorn_config(path: str) -> dict[str, str]:
    """The concurrency settings in a gunicorn config file (``-c``), read as gunicorn does."""
    try:
        if path.startswith("python:"):
            namespace: Mapping[str, Any] = vars(importlib.import_module(path[len("python:") :]))
        else:
            # gunicorn accepts `-c file:path` as well as a bare path
            namespace = runpy.run_path(path[len("file:") :] if path.startswith("file:") else path)
    except Exception as exc:  # a config file may raise anything
        raise SettingError(
            f"gunicorn config file {path!r} could not be read ({type(exc).__name__})",
            "fix the file, or set CONNHEALTH_WORKERS and CONNHEALTH_THREADS.",
        ) from None
    return {
        key: str(namespace[key])
        for key in ("workers", "threads", "worker_class", "worker_connections")
        if namespace.get(key) is not None
    }


def gunicorn_settings(
    environ: Mapping[str, str], argv: Sequence[str] | None, cwd: Path | None = None
) -> GunicornSettings:
    """gunicorn's concurrency settings, merged the way gunicorn merges them.

    ``argv`` is the process's command line when it is a gunicorn master or worker,
    else ``None``: then only ``GUNICORN_CMD_ARGS`` counts. Precedence, as in
    gunicorn: config file < ``GUNICORN_CMD_ARGS`` < command line.
    """
    cmd_args = environ.get("GUNICORN_CMD_ARGS", "")
    from_env = (
        parse_gunicorn_args(split_cmd_args(cmd_args), "GUNICORN_CMD_ARGS") if cmd_args else {}
    )
    from_cli = parse_gunicorn_args(argv, "gunicorn's command line") if argv is not None else {}
    from_file: dict[str, str] = {}
    if argv is not None:
        config = from_cli.get("config") or from_env.get("config")
        default = (cwd or Path.cwd()) / "gunicorn.conf.py"
        if config:
            from_file = load_gunicorn_config(config)
        elif default.is_file():
            from_file = load_gunicorn_config(str(default))
    values: dict[str, str] = {}
    sources: dict[str, str] = {}
    for layer, source in (
        (from_file, "gunicorn"),
        (from_env, "GUNICORN_CMD_ARGS"),
        (from_cli, "gunicorn"),
    ):
        for key, value in layer.items():
            if key != "config":
                values[key] = value
                sources[key] = source
    return GunicornSettings(values, sources)


def gunicorn_argv(environ: Mapping[str, str], argv: Sequence[str]) -> list[str] | None:
    """This process's gunicorn arguments if it is a gunicorn master or worker.

    gunicorn's arbiter sets ``SERVER_SOFTWARE=gunicorn/<version>`` before it loads
    the application, so settings (even under ``--preload``) can tell.
    """
    if not environ.get("SERVER_SOFTWARE", "").startswith("gunicorn/"):
        return None
    if not argv:
        return None
    program = Path(argv[0])
    # `gunicorn ...` or `python -m gunicorn ...` (argv[0] is gunicorn/__main__.py)
    if not (program.name.startswith("gunicorn") or program.parent.name == "gunicorn"):
        return None
    return list(argv[1:])


def is_greenlet_worker(worker_class: str) -> bool:
    name = worker_class.lower()
    return "gevent" in name or "eventlet" in name


# -- the whole precedence -------------------------------------------------------


def resolve_concurrency(
    environ: Mapping[str, str], argv: Sequence[str] | None = None, cwd: Path | None = None
) -> Concurrency:
    """Workers and threads per worker, each from the first source that sets it.

    1. ``CONNHEALTH_WORKERS`` / ``CONNHEALTH_THREADS``
    2. gunicorn: its config file, ``GUNICORN_CMD_ARGS``, its command line
    3. ``WEB_CONCURRENCY`` (workers)
    4. ``UWSGI_PROCESSES`` or ``UWSGI_WORKERS`` / ``UWSGI_THREADS``
    5. 1 worker, 1 thread

    Greenlet workers (``-k gevent``) count ``--worker-connections`` as threads,
    capped at ``CONNHEALTH_GREENLET_CAP``.
    """
    gunicorn = gunicorn_settings(environ, argv, cwd)
    sources: dict[str, str] = {}

    def from_gunicorn(key: str) -> tuple[str, int | None]:
        if key not in gunicorn.values:
            return ("gunicorn", None)
        source = gunicorn.sources[key]
        origin = (
            "GUNICORN_CMD_ARGS"
            if source == "GUNICORN_CMD_ARGS"
            else f"gunicorn --{key.replace('_', '-')}"
        )
        return (source, parse_count(origin, gunicorn.values[key]))

    workers = _pick(
        sources,
        "workers",
        ("CONNHEALTH_WORKERS", env_count(environ, "CONNHEALTH_WORKERS")),
        from_gunicorn("workers"),
        ("WEB_CONCURRENCY", env_count(environ, "WEB_CONCURRENCY")),
        ("UWSGI_PROCESSES", env_count(environ, "UWSGI_PROCESSES")),
        ("UWSGI_WORKERS", env_count(environ, "UWSGI_WORKERS")),
        ("default", 1),
    )

    worker_class = gunicorn.values.get("worker_class", "")
    if worker_class:
        sources["worker_class"] = gunicorn.sources["worker_class"]
    greenlets = bool(worker_class) and is_greenlet_worker(worker_class)
    # Read even for other workers, so a malformed value fails like every other variable.
    cap = env_count(environ, "CONNHEALTH_GREENLET_CAP") or defaults.GREENLET_CAP
    if greenlets:
        connections_source, connections = from_gunicorn("worker_connections")
        if connections is None:
            connections_source, connections = "default", defaults.GUNICORN_WORKER_CONNECTIONS
        if connections > cap:
            connections_source, connections = "CONNHEALTH_GREENLET_CAP", cap
        server_threads: tuple[str, int | None] = (connections_source, connections)
    else:
        server_threads = from_gunicorn("threads")
    threads = _pick(
        sources,
        "threads",
        ("CONNHEALTH_THREADS", env_count(environ, "CONNHEALTH_THREADS")),
        server_threads,
        ("UWSGI_THREADS", env_count(environ, "UWSGI_THREADS")),
        ("default", 1),
    )
    if not worker_class:
        uwsgi = [s for s in (sources["workers"], sources["threads"]) if s.startswith("UWSGI")]
        worker_class = "uwsgi" if uwsgi else "sync"
        sources["worker_class"] = uwsgi[0] if uwsgi else "default"
    if (worker_class == "sync" or worker_class.endswith("SyncWorker")) and threads > 1:
        # gunicorn runs a sync worker with more than one thread as gthread
        # (gunicorn.config.Config.worker_class_str).
        worker_class = "gthread"
    return Concurrency(workers, threads, worker_class, sources)


def _pick(sources: dict[str, str], key: str, *candidates: tuple[str, int | None]) -> int:
    for source, value in candidates:
        if value is not None:
            sources[key] = source
            return value
    raise AssertionError("the last candidate is always set")  # pragma: no cover


def pool_size(concurrency: Concurrency, headroom: int) -> int:
    """Connections one process's pool needs: one per thread, plus headroom."""
    return concurrency.threads + headroom
