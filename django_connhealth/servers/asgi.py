"""ASGI servers (uvicorn, hypercorn, daphne): concurrency from their own command line.

Django runs each request's sync code, cache calls included, in a thread of its own,
so an ASGI process needs one connection per request in flight: uvicorn's
``--limit-concurrency`` when set, else ``CONNHEALTH_GREENLET_CAP``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django_connhealth.parse import env_count, parse_count
from django_connhealth.servers.base import ArgumentParser, Candidate, ServerConcurrency, program

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

ASGI_SERVERS = ("uvicorn", "hypercorn", "daphne")


def asgi_server(argv: Sequence[str]) -> str | None:
    """The ASGI server ``argv`` runs, if any.

    uvicorn's ``--workers`` children are started with multiprocessing *spawn*, which
    gives them the parent's ``sys.argv``: they are recognised as well.
    """
    name = program(argv)
    return name if name in ASGI_SERVERS else None


def asgi_concurrency(
    environ: Mapping[str, str], argv: Sequence[str], cap: int
) -> ServerConcurrency | None:
    """Workers and threads of the ASGI server ``argv`` runs; ``None`` if it is none."""
    server = asgi_server(argv)
    if server is None:
        return None
    parser = ArgumentParser(server, f"{server}'s command line", allow_abbrev=False)
    if server == "uvicorn":
        parser.add_argument("--workers")
        parser.add_argument("--limit-concurrency", dest="limit_concurrency")
        parser.add_argument("--reload", action="store_true")
    elif server == "hypercorn":
        parser.add_argument("-w", "--workers")
    namespace, _ = parser.parse_known_args(list(argv[1:]))
    workers: Candidate = ("default", None)
    threads: Candidate = ("asgi", cap)
    given_workers = getattr(namespace, "workers", None)
    if server == "uvicorn":
        # click reads UVICORN_<OPTION> for any option not on the command line
        if given_workers is not None:
            workers = ("--workers", parse_count("uvicorn --workers", given_workers))
        else:
            workers = ("UVICORN_WORKERS", env_count(environ, "UVICORN_WORKERS"))
        if namespace.reload:  # uvicorn ignores --workers then: one server process
            workers = ("--reload", 1)
        limit = namespace.limit_concurrency
        if limit is not None:
            threads = ("--limit-concurrency", parse_count("uvicorn --limit-concurrency", limit))
        elif (from_env := env_count(environ, "UVICORN_LIMIT_CONCURRENCY")) is not None:
            threads = ("UVICORN_LIMIT_CONCURRENCY", from_env)
    elif given_workers is not None:
        workers = ("--workers", parse_count(f"{server} --workers", given_workers))
    return ServerConcurrency(
        role="web",
        worker_class=server,
        worker_class_source="asgi",
        workers=workers,
        threads=threads,
    )
