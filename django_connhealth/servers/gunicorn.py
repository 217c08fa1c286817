"""gunicorn's concurrency settings, merged the way gunicorn merges them.

Its config file, ``GUNICORN_CMD_ARGS`` and, inside a gunicorn master or worker, its
command line. Which worker class runs decides what counts as a thread.
"""

from __future__ import annotations

import importlib
import runpy
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django_connhealth import defaults
from django_connhealth.errors import SettingError
from django_connhealth.parse import parse_count
from django_connhealth.servers.base import ArgumentParser, Candidate, ServerConcurrency, capped

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence


@dataclass(frozen=True)
class GunicornSettings:
    """The gunicorn settings that decide concurrency, each with its source."""

    values: Mapping[str, str] = field(default_factory=dict)
    sources: Mapping[str, str] = field(default_factory=dict)


_GUNICORN_KEYS = ("workers", "threads", "worker_class", "worker_connections", "config")


def parse_gunicorn_args(args: Sequence[str], origin: str) -> dict[str, str]:
    """The concurrency options in gunicorn command-line ``args``, as given.

    Options gunicorn knows but that do not affect concurrency are ignored.
    """
    parser = ArgumentParser("gunicorn", origin, allow_abbrev=True)
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


def is_asgi_worker(worker_class: str) -> bool:
    """uvicorn's worker classes (``uvicorn.workers.UvicornWorker``, ``uvicorn_worker``)."""
    return "uvicorn" in worker_class.lower()


def gunicorn_concurrency(
    gunicorn: GunicornSettings, *, in_gunicorn: bool, cap: int
) -> ServerConcurrency:
    """What ``gunicorn`` settings say; the role is ``web`` only inside gunicorn itself."""

    def value(key: str) -> Candidate:
        if key not in gunicorn.values:
            return ("gunicorn", None)
        source = gunicorn.sources[key]
        option = f"--{key.replace('_', '-')}"
        origin = f"{source} {option}" if source == "GUNICORN_CMD_ARGS" else f"gunicorn {option}"
        return (source, parse_count(origin, gunicorn.values[key]))

    worker_class = gunicorn.values.get("worker_class", "")
    if is_greenlet_worker(worker_class) or worker_class == "asgi":
        # gevent, eventlet and gunicorn's own ASGI worker serve up to
        # --worker-connections requests at once in one process
        connections = value("worker_connections")
        if connections[1] is None:
            connections = ("default", defaults.GUNICORN_WORKER_CONNECTIONS)
        threads = capped(connections, cap)
    elif is_asgi_worker(worker_class):
        # UvicornWorker sets no concurrency limit: Django runs each request's sync
        # code in a thread of its own
        threads = ("asgi", cap)
    else:
        threads = value("threads")
    return ServerConcurrency(
        role="web" if in_gunicorn else "other",
        worker_class=worker_class,
        worker_class_source=gunicorn.sources.get("worker_class", ""),
        workers=value("workers"),
        threads=threads,
    )


def loading_in_arbiter() -> bool:
    """True while gunicorn's arbiter loads the app (``--preload``), before it forks workers.

    A worker loads the app inside its ``Worker.init_process``; the arbiter
    inside ``Arbiter.setup``. Both run under the arbiter's frames (a worker is
    forked from them), so only the absence of a worker's frame tells.
    """
    import sys

    arbiter = sys.modules.get("gunicorn.arbiter")
    if arbiter is None:
        return False
    worker = sys.modules.get("gunicorn.workers.base")
    seen_arbiter = False
    frame: Any = sys._getframe(1)
    while frame is not None:
        owner = frame.f_locals.get("self")
        if worker is not None and isinstance(owner, worker.Worker):
            return False
        seen_arbiter = seen_arbiter or isinstance(owner, arbiter.Arbiter)
        frame = frame.f_back
    return seen_arbiter
