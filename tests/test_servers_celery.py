"""``django_connhealth.servers.celery``: a Celery worker's command line. No Redis, no Celery."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from typing import TYPE_CHECKING, Any

import pytest
import redis
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings
from hypothesis import given
from hypothesis import strategies as st

from django_connhealth import defaults
from django_connhealth.servers.celery import celery_command
from django_connhealth.sizing import Concurrency, process_role, resolve_concurrency
from testproject.supervisor import Child, NotReady, start
from tests.helpers import (
    MALFORMED_COUNTS,
    READY_TIMEOUT,
    STOP_TIMEOUT,
    redis_caches,
    report_json,
    wait_for,
)
from tests.servers import ROOT, child_env

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from tests.conftest import RedisDB

CELERY = "/venv/bin/celery"
CAP = defaults.GREENLET_CAP


def celery(environ: dict[str, str], *args: str) -> Concurrency:
    return resolve_concurrency(environ, process_argv=[CELERY, "-A", "proj", *args])


@pytest.mark.parametrize(
    ("argv", "command"),
    [
        ([CELERY, "-A", "proj", "worker", "-l", "info"], ("worker", ["-l", "info"])),
        ([CELERY, "--app=proj", "worker"], ("worker", [])),
        ([CELERY, "-A", "worker", "beat"], ("beat", [])),
        ([CELERY, "-b", "redis://", "--workdir", "/srv", "worker"], ("worker", [])),
        (["/venv/lib/python3.11/site-packages/celery/__main__.py", "worker"], ("worker", [])),
        ([CELERY, "-A", "proj"], None),
        (["/venv/bin/gunicorn", "worker"], None),
    ],
)
def test_celery_command(argv: list[str], command: tuple[str, list[str]] | None) -> None:
    assert celery_command(argv) == command


@pytest.mark.parametrize(
    ("args", "role"),
    [
        (["worker"], "celery"),
        (["beat"], "celery"),
        (["inspect", "active"], "other"),
        ([], "other"),
    ],
)
def test_role(args: list[str], role: str) -> None:
    assert process_role({}, [CELERY, "-A", "proj", *args]) == role
    assert celery({}, *args).role == role


def test_beat_is_one_process_of_one_thread() -> None:
    got = celery({"WEB_CONCURRENCY": "4"}, "beat")
    assert (got.workers, got.threads, got.worker_class) == (1, 1, "celery-beat")


@pytest.mark.parametrize(
    ("args", "workers", "threads", "worker_class"),
    [
        (["--pool", "threads", "--concurrency", "6"], 1, 6, "celery-threads"),
        (["-P", "threads", "-c", "6"], 1, 6, "celery-threads"),
        (["-Pthreads", "-c6"], 1, 6, "celery-threads"),
        (["--pool=prefork", "--concurrency=4"], 4, 1, "celery-prefork"),
        (["-c", "4"], 4, 1, "celery-prefork"),
        (["-P", "processes", "-c", "3"], 3, 1, "celery-processes"),
        (["-P", "solo", "-c", "9"], 1, 1, "celery-solo"),
        (["-P", "gevent", "-c", "10"], 1, 10, "celery-gevent"),
        (["-P", "eventlet", "-c", "500"], 1, CAP, "celery-eventlet"),
        (["-P", "custom.Pool", "-c", "5"], 1, 5, "celery-custom.Pool"),
    ],
)
def test_pools(args: list[str], workers: int, threads: int, worker_class: str) -> None:
    got = celery({}, "worker", *args)
    assert (got.workers, got.threads, got.worker_class, got.role) == (
        workers,
        threads,
        worker_class,
        "celery",
    )


def test_sources() -> None:
    got = celery({}, "worker", "-P", "threads", "-c", "6")
    assert got.sources == {"workers": "celery", "threads": "celery", "worker_class": "celery"}
    got = celery({}, "worker", "-P", "gevent", "-c", "100")
    assert got.sources["threads"] == "CONNHEALTH_GREENLET_CAP"


def test_prefork_default_concurrency_is_the_cpu_count(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: 3)
    got = celery({}, "worker")
    assert (got.workers, got.threads, got.sources["workers"]) == (3, 1, "celery")
    monkeypatch.setattr(os, "cpu_count", lambda: None)
    assert celery({}, "worker").workers == 1


def test_environment_after_the_command_line() -> None:
    environ = {"CELERY_WORKER_POOL": "threads", "CELERY_WORKER_CONCURRENCY": "8"}
    got = celery(environ, "worker")
    assert (got.workers, got.threads) == (1, 8)
    assert got.sources == {
        "workers": "celery",
        "threads": "CELERY_WORKER_CONCURRENCY",
        "worker_class": "CELERY_WORKER_POOL",
    }
    got = celery(environ, "worker", "-P", "prefork", "-c", "2")
    assert (got.workers, got.threads, got.sources["workers"]) == (2, 1, "celery")


def test_connhealth_variables_win() -> None:
    environ = {"CONNHEALTH_WORKERS": "5", "CONNHEALTH_THREADS": "2", "WEB_CONCURRENCY": "9"}
    got = celery(environ, "worker", "-P", "threads", "-c", "6")
    assert (got.workers, got.threads) == (5, 2)


def test_web_concurrency_does_not_count_for_a_worker() -> None:
    got = celery({"WEB_CONCURRENCY": "9"}, "worker", "-c", "2")
    assert got.workers == 2


@pytest.mark.parametrize("value", MALFORMED_COUNTS)
def test_malformed_concurrency_names_option_and_value(value: str) -> None:
    with pytest.raises(ImproperlyConfigured) as excinfo:
        celery({}, "worker", "--concurrency", value)
    assert str(excinfo.value).startswith(f"celery --concurrency={value!r} is not valid: ")


def test_malformed_concurrency_in_environment() -> None:
    with pytest.raises(ImproperlyConfigured, match=r"^CELERY_WORKER_CONCURRENCY='many' is not"):
        celery({"CELERY_WORKER_CONCURRENCY": "many"}, "worker")


def test_option_without_its_value() -> None:
    with pytest.raises(ImproperlyConfigured, match=r"argument -c/--concurrency: expected one"):
        celery({}, "worker", "-c")


@given(
    pool=st.sampled_from(["prefork", "threads", "solo", "gevent", "eventlet"]),
    concurrency=st.integers(1, defaults.MAX_COUNT),
)
def test_one_process_or_one_thread(pool: str, concurrency: int) -> None:
    got = celery({}, "worker", "-P", pool, "-c", str(concurrency))
    assert 1 in (got.workers, got.threads)
    assert got.workers * got.threads <= concurrency
    assert got.threads <= max(CAP, 1 if pool != "threads" else concurrency)


# ----------------------------------------------------------- a real Celery worker


def celery_worker(
    redis_db: RedisDB, tmp_path: Path, *args: str
) -> contextlib.AbstractContextManager[Child]:
    """``celery -A testproject.celery_app worker ARGS``, once it has written its pool figures."""
    pytest.importorskip("celery")
    if tuple(int(part) for part in redis.__version__.split(".")[:2]) < (6, 1):
        pytest.skip("kombu's Redis transport (Celery 5.6 and later) needs redis-py 6.1 or later")
    env = child_env(
        REDIS_URL=redis_db.url,
        CELERY_BROKER_URL=redis_db.url,
        TESTPROJECT_VAR_DIR=str(tmp_path),
        CONNHEALTH_PUBLISH_SECONDS="1",
    )
    cmd = [sys.executable, "-m", "celery", "-A", "testproject.celery_app", "worker", *args]
    cmd += ["--loglevel", "info", "--without-gossip", "--without-mingle"]

    @contextlib.contextmanager
    def running() -> Iterator[Child]:
        worker = start(cmd, name="celery", log=tmp_path / "celery.log", env=env, cwd=ROOT)
        try:
            try:
                worker.wait_until(
                    (tmp_path / "celery-pool.json").exists,
                    READY_TIMEOUT,
                    "writing celery-pool.json",
                )
            except NotReady as error:
                pytest.fail(str(error))
            yield worker
        finally:
            worker.stop(STOP_TIMEOUT)

    return running()


def fleet_rows(redis_db: RedisDB, want: Callable[[list[dict[str, Any]]], bool]) -> list[Any]:
    """The command's process rows for the default alias, once ``want(rows)`` holds."""
    rows: list[dict[str, Any]] = []

    def seen() -> bool:
        nonlocal rows
        with override_settings(CACHES=redis_caches(redis_db.url)):
            report, code = report_json()
        assert code == 0, report
        rows = report["caches"]["default"]["processes"]
        return want(rows)

    wait_for(seen, READY_TIMEOUT, "the Celery processes in the command's report")
    return rows


@pytest.mark.gunicorn
def test_celery_threads_worker_sizes_its_pool(redis_db: RedisDB, tmp_path: Path) -> None:
    """``--pool threads --concurrency 6``: one process whose pool holds 6 + 2 connections."""
    with celery_worker(redis_db, tmp_path, "--pool", "threads", "--concurrency", "6") as worker:
        answer = json.loads((tmp_path / "celery-pool.json").read_text(encoding="utf-8"))
        rows = fleet_rows(redis_db, lambda rows: any(r["pid"] == worker.pid for r in rows))

    assert answer["pid"] == worker.proc.pid
    assert answer["concurrency"] == {
        "workers": 1,
        "threads": 6,
        "worker_class": "celery-threads",
        "role": "celery",
        "sources": {"workers": "celery", "threads": "celery", "worker_class": "celery"},
    }
    [pool] = answer["pools"]
    assert pool["max_connections"] == 8
    [row] = [row for row in rows if row["pid"] == worker.pid]
    assert (row["role"], row["max_connections"], row["stale"]) == ("celery", 8, False)


@pytest.mark.gunicorn
def test_celery_prefork_children_each_size_their_pool(redis_db: RedisDB, tmp_path: Path) -> None:
    """``--pool prefork --concurrency 2``: the parent and each child, 1 + 2 connections each."""
    from celery import Celery

    with celery_worker(redis_db, tmp_path, "--pool", "prefork", "--concurrency", "2") as worker:
        sender = Celery(broker=redis_db.url)
        try:
            children: set[int] = set()

            def both_children_ran_tasks() -> bool:
                for _ in range(8):
                    sender.send_task("testproject.touch")
                with redis_db.server.client(redis_db.db, decode_responses=True) as client:
                    keys = client.keys(":1:testproject:touch:*")
                children.update(int(str(key).rsplit(":", 1)[1]) for key in keys)
                return len(children - {worker.pid}) >= 2

            wait_for(both_children_ran_tasks, READY_TIMEOUT, "tasks run in both children")
        finally:
            sender.close()
        wanted = children | {worker.pid}
        rows = fleet_rows(redis_db, lambda rows: wanted <= {r["pid"] for r in rows})

    by_pid = {row["pid"]: row for row in rows if row["pid"] in wanted}
    assert len(by_pid) == 3
    for row in by_pid.values():
        assert (row["role"], row["max_connections"], row["stale"]) == ("celery", 3, False), row
