"""``django_connhealth.servers.asgi``: uvicorn, hypercorn and daphne command lines. No Redis."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from django.core.exceptions import ImproperlyConfigured
from hypothesis import given
from hypothesis import strategies as st

from django_connhealth import defaults
from django_connhealth.servers.asgi import asgi_concurrency, asgi_server
from django_connhealth.sizing import Concurrency, process_role, resolve_concurrency
from testproject.traffic import fan_out
from tests.helpers import (
    MALFORMED_COUNTS,
    pools_of_every_worker,
    uvicorn,
)
from tests.servers import child_env

if TYPE_CHECKING:
    from pathlib import Path

    from tests.conftest import RedisDB

UVICORN = "/venv/bin/uvicorn"
#: What uvicorn's spawned --workers children see in sys.argv: the parent's command line.
UVICORN_MODULE = "/venv/lib/python3.11/site-packages/uvicorn/__main__.py"
CAP = defaults.GREENLET_CAP


def asgi(environ: dict[str, str], *argv: str) -> Concurrency:
    return resolve_concurrency(environ, process_argv=list(argv))


@pytest.mark.parametrize(
    ("argv", "server"),
    [
        ([UVICORN, "app:app"], "uvicorn"),
        ([UVICORN_MODULE, "app:app"], "uvicorn"),
        (["/venv/bin/hypercorn", "app:app"], "hypercorn"),
        (["/venv/lib/python3.12/site-packages/daphne/__main__.py", "app:app"], "daphne"),
        (["/venv/bin/gunicorn", "app:app"], None),
        (["manage.py", "runserver"], None),
        (["uvicornish"], None),
        ([], None),
        ([""], None),
    ],
)
def test_asgi_server(argv: list[str], server: str | None) -> None:
    assert asgi_server(argv) == server
    assert process_role({}, argv) == ("web" if server else "other")
    assert (asgi_concurrency({}, argv, CAP) is None) == (server is None)


@pytest.mark.parametrize("program", [UVICORN, UVICORN_MODULE])
def test_uvicorn_workers_and_limit(program: str) -> None:
    got = asgi({}, program, "app:app", "--workers", "2", "--limit-concurrency", "10")
    assert got == Concurrency(
        workers=2,
        threads=10,
        worker_class="uvicorn",
        sources={"workers": "--workers", "threads": "--limit-concurrency", "worker_class": "asgi"},
        role="web",
    )


def test_uvicorn_without_limit_counts_the_greenlet_cap() -> None:
    got = asgi({}, UVICORN, "app:app", "--workers=3")
    assert (got.workers, got.threads) == (3, CAP)
    assert got.sources == {"workers": "--workers", "threads": "asgi", "worker_class": "asgi"}


def test_uvicorn_limit_above_the_cap_is_kept() -> None:
    """The limit is what uvicorn lets in at once: each of those requests may hold a connection."""
    got = asgi({"CONNHEALTH_GREENLET_CAP": "8"}, UVICORN, "app:app", "--limit-concurrency=50")
    assert (got.threads, got.sources["threads"]) == (50, "--limit-concurrency")


def test_greenlet_cap_sets_threads_without_a_limit() -> None:
    got = asgi({"CONNHEALTH_GREENLET_CAP": "8"}, UVICORN, "app:app")
    assert (got.threads, got.sources["threads"]) == (8, "asgi")


@pytest.mark.parametrize(
    ("environ", "argv", "workers", "source"),
    [
        ({"WEB_CONCURRENCY": "4"}, [], 4, "WEB_CONCURRENCY"),
        ({"UVICORN_WORKERS": "5", "WEB_CONCURRENCY": "4"}, [], 5, "UVICORN_WORKERS"),
        ({"UVICORN_WORKERS": "5"}, ["--workers", "2"], 2, "--workers"),
        ({"CONNHEALTH_WORKERS": "7"}, ["--workers", "2"], 7, "CONNHEALTH_WORKERS"),
        ({}, [], 1, "default"),
    ],
)
def test_uvicorn_workers_precedence(
    environ: dict[str, str], argv: list[str], workers: int, source: str
) -> None:
    got = asgi(environ, UVICORN, "app:app", *argv)
    assert (got.workers, got.sources["workers"]) == (workers, source)


def test_uvicorn_reload_runs_one_server_process() -> None:
    got = asgi({"WEB_CONCURRENCY": "4"}, UVICORN, "app:app", "--reload", "--workers", "3")
    assert (got.workers, got.sources["workers"]) == (1, "--reload")


def test_uvicorn_limit_from_its_environment_variable() -> None:
    got = asgi({"UVICORN_LIMIT_CONCURRENCY": "12"}, UVICORN, "app:app")
    assert (got.threads, got.sources["threads"]) == (12, "UVICORN_LIMIT_CONCURRENCY")
    got = asgi({"UVICORN_LIMIT_CONCURRENCY": "12"}, UVICORN, "--limit-concurrency", "3")
    assert (got.threads, got.sources["threads"]) == (3, "--limit-concurrency")


def test_connhealth_threads_beat_the_limit() -> None:
    got = asgi({"CONNHEALTH_THREADS": "4"}, UVICORN, "app:app", "--limit-concurrency", "10")
    assert (got.threads, got.sources["threads"]) == (4, "CONNHEALTH_THREADS")


@pytest.mark.parametrize(
    ("argv", "workers", "threads"),
    [
        (["/venv/bin/hypercorn", "-w", "3", "app:app"], 3, CAP),
        (["/venv/bin/hypercorn", "--workers", "2", "app:app"], 2, CAP),
        (["/venv/bin/daphne", "-b", "0.0.0.0", "app:app"], 1, CAP),
    ],
)
def test_hypercorn_and_daphne(argv: list[str], workers: int, threads: int) -> None:
    got = asgi({}, *argv)
    assert (got.workers, got.threads, got.role) == (workers, threads, "web")
    assert got.worker_class == argv[0].rpartition("/")[2]


def test_other_uvicorn_options_are_ignored() -> None:
    got = asgi({}, UVICORN, "--host", "0.0.0.0", "--port", "8000", "--workers", "2", "app:app")
    assert got.workers == 2


@pytest.mark.parametrize("option", ["--workers", "--limit-concurrency"])
@pytest.mark.parametrize("value", MALFORMED_COUNTS)
def test_malformed_uvicorn_value_names_option_and_value(option: str, value: str) -> None:
    with pytest.raises(ImproperlyConfigured) as excinfo:
        asgi({}, UVICORN, "app:app", option, value)
    assert str(excinfo.value).startswith(f"uvicorn {option}={value!r} is not valid: ")


def test_malformed_uvicorn_environment_variable() -> None:
    with pytest.raises(ImproperlyConfigured, match=r"^UVICORN_LIMIT_CONCURRENCY='x' is not valid"):
        asgi({"UVICORN_LIMIT_CONCURRENCY": "x"}, UVICORN, "app:app")


def test_option_without_its_value() -> None:
    with pytest.raises(ImproperlyConfigured) as excinfo:
        asgi({}, UVICORN, "app:app", "--workers")
    assert str(excinfo.value) == (
        "uvicorn's command line could not be read as uvicorn arguments "
        "(argument --workers: expected one argument): fix it so that `uvicorn` itself accepts it."
    )


def test_malformed_hypercorn_workers() -> None:
    with pytest.raises(ImproperlyConfigured, match=r"^hypercorn --workers='0' is not valid"):
        asgi({}, "/venv/bin/hypercorn", "-w", "0", "app:app")


@pytest.mark.parametrize(
    ("environ", "threads", "source"),
    [
        ({"GUNICORN_CMD_ARGS": "-k uvicorn.workers.UvicornWorker --threads 8"}, CAP, "asgi"),
        ({"GUNICORN_CMD_ARGS": "-k uvicorn_worker.UvicornWorker"}, CAP, "asgi"),
        ({"GUNICORN_CMD_ARGS": "-k asgi --worker-connections 10"}, 10, "GUNICORN_CMD_ARGS"),
        ({"GUNICORN_CMD_ARGS": "-k asgi"}, CAP, "CONNHEALTH_GREENLET_CAP"),
    ],
)
def test_gunicorn_asgi_workers(environ: dict[str, str], threads: int, source: str) -> None:
    got = resolve_concurrency(environ, ["-w", "2", "app:app"])
    assert (got.workers, got.threads, got.sources["threads"], got.role) == (
        2,
        threads,
        source,
        "web",
    )


@given(
    workers=st.integers(1, defaults.MAX_COUNT),
    limit=st.none() | st.integers(1, defaults.MAX_COUNT),
    equals=st.booleans(),
)
def test_uvicorn_any_counts(workers: int, limit: int | None, equals: bool) -> None:
    def option(name: str, value: int) -> list[str]:
        return [f"{name}={value}"] if equals else [name, str(value)]

    argv = [UVICORN, "app:app", *option("--workers", workers)]
    if limit is not None:
        argv += option("--limit-concurrency", limit)
    got = asgi({}, *argv)
    assert (got.workers, got.threads) == (workers, CAP if limit is None else limit)


# ------------------------------------------------------------------ a real uvicorn


@pytest.mark.gunicorn
@pytest.mark.parametrize(
    ("limit", "threads", "source"),
    [([], CAP, "asgi"), (["--limit-concurrency", "20"], 20, "--limit-concurrency")],
)
def test_uvicorn_workers_size_their_pools(
    limit: list[str], threads: int, source: str, redis_db: RedisDB, tmp_path: Path
) -> None:
    """Each spawned worker sees uvicorn's command line and sizes its own pool from it."""
    env = child_env(REDIS_URL=redis_db.url, TESTPROJECT_VAR_DIR=str(tmp_path))
    args = ["--workers", "2", *limit]
    with uvicorn(args, env, tmp_path / "uvicorn.log", workers=2) as (base, workers):
        pools_of_every_worker(base, workers)
        # As many sync requests at once as one worker's pool is sized for: wherever
        # they land, none waits for a connection.
        statuses = [status for status, _ in fan_out([f"{base}/work"] * threads * 8, threads)]
        answers = pools_of_every_worker(base, workers)

    assert len(workers) == 2
    assert sorted(answers) == sorted(workers)
    for pid, answer in answers.items():
        assert answer["concurrency"] == {
            "workers": 2,
            "threads": threads,
            "worker_class": "uvicorn",
            "role": "web",
            "sources": {"workers": "--workers", "threads": source, "worker_class": "asgi"},
        }, pid
        [pool] = answer["pools"]
        assert pool["max_connections"] == threads + 2, (pid, pool)
        assert (pool["waits"], pool["timeouts"]) == (0, 0), (pid, pool)
    # uvicorn counts connections still closing against --limit-concurrency, and answers
    # 503 itself past it: the pool, sized for the limit, never sees those requests.
    assert set(statuses) <= ({200, 503} if limit else {200}), statuses
    assert statuses.count(200) >= len(statuses) // 2
