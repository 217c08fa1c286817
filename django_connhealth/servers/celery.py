"""A Celery worker (``celery ... worker``): concurrency from its command line, then env.

The Celery app itself is not imported (sizing runs while Django loads its settings):
``--pool`` and ``--concurrency`` count, then ``CELERY_WORKER_POOL`` and
``CELERY_WORKER_CONCURRENCY`` from the environment, then Celery's defaults
(prefork, one child per CPU).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from django_connhealth.parse import env_count, parse_count
from django_connhealth.servers.base import (
    ArgumentParser,
    Candidate,
    ServerConcurrency,
    capped,
    program,
)

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

#: celery's options before the subcommand that take a value.
_GLOBAL_WITH_VALUE = frozenset(
    ("-A", "--app", "-b", "--broker", "--result-backend", "--loader", "--config", "--workdir")
)


def celery_command(argv: Sequence[str]) -> tuple[str, list[str]] | None:
    """The celery subcommand ``argv`` runs (``worker``, ``beat``...) and its arguments."""
    if program(argv) != "celery":
        return None
    args = list(argv[1:])
    index = 0
    while index < len(args):
        arg = args[index]
        if arg in _GLOBAL_WITH_VALUE:
            index += 2
        elif arg.startswith("-"):
            index += 1
        else:
            return arg, args[index + 1 :]
    return None


def celery_concurrency(
    environ: Mapping[str, str], argv: Sequence[str], cap: int
) -> ServerConcurrency | None:
    """Workers and threads of the Celery worker ``argv`` runs; ``None`` if it is none.

    prefork: ``--concurrency`` processes of one thread; threads: one process of
    ``--concurrency`` threads; solo: one and one; gevent and eventlet: one process
    of ``--concurrency`` greenlets, capped at ``CONNHEALTH_GREENLET_CAP``.
    """
    command = celery_command(argv)
    if command is None:
        return None
    name, args = command
    if name == "beat":  # the scheduler: one process, one thread
        return ServerConcurrency("celery", "celery-beat", "celery", ("celery", 1), ("celery", 1))
    if name != "worker":  # inspect, call, purge...: commands, not a Celery process
        return None
    parser = ArgumentParser("celery worker", "celery worker's command line", allow_abbrev=False)
    parser.add_argument("-P", "--pool")
    parser.add_argument("-c", "--concurrency")
    namespace, _ = parser.parse_known_args(args)
    if namespace.pool is not None:
        pool, pool_source = namespace.pool, "celery"
    elif environ.get("CELERY_WORKER_POOL"):
        pool, pool_source = environ["CELERY_WORKER_POOL"], "CELERY_WORKER_POOL"
    else:
        pool, pool_source = "prefork", "celery"
    concurrency: Candidate
    if namespace.concurrency is not None:
        concurrency = ("celery", parse_count("celery --concurrency", namespace.concurrency))
    elif (from_env := env_count(environ, "CELERY_WORKER_CONCURRENCY")) is not None:
        concurrency = ("CELERY_WORKER_CONCURRENCY", from_env)
    else:
        concurrency = ("celery", os.cpu_count() or 1)
    one: Candidate = ("celery", 1)
    workers: Candidate
    threads: Candidate
    if pool in ("prefork", "processes"):
        workers, threads = concurrency, one
    elif pool == "solo":
        workers, threads = one, one
    elif pool in ("gevent", "eventlet"):
        workers, threads = one, capped(concurrency, cap)
    else:  # threads, or a custom pool: counted as threads, the larger pool
        workers, threads = one, concurrency
    return ServerConcurrency("celery", f"celery-{pool}", pool_source, workers, threads)
