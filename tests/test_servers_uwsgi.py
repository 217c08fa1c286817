"""``django_connhealth.servers.uwsgi``: the running uWSGI's options. No Redis, no uWSGI.

The option mappings below are what ``uwsgi.opt`` held in a real uWSGI 2.0:
``--master --processes 2 --threads 4`` gave
``{'master': True, 'processes': b'2', 'threads': b'4', ...}``, and ``UWSGI_PROCESSES=2``
with ``--workers 5`` gave ``{'processes': b'2', 'workers': b'5', ...}`` (5 workers ran).
"""

from __future__ import annotations

import sys
import time
import types
from typing import TYPE_CHECKING

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from django_connhealth import defaults
from django_connhealth.servers.uwsgi import running_uwsgi_options
from django_connhealth.sizing import (
    Concurrency,
    process_concurrency,
    process_role,
    resolve_concurrency,
)
from testproject.traffic import fan_out
from tests.helpers import (
    MALFORMED_COUNTS,
    pools_of_every_worker,
    redis_caches,
    report_json,
    uwsgi,
)
from tests.servers import child_env

if TYPE_CHECKING:
    from pathlib import Path

    from tests.conftest import RedisDB

CAP = defaults.GREENLET_CAP


def inside(options: dict[str, object], environ: dict[str, str] | None = None) -> Concurrency:
    return resolve_concurrency(environ or {}, uwsgi_options=options)


def test_master_processes_threads() -> None:
    options = {"master": True, "processes": b"2", "threads": b"4", "http-socket": b":0"}
    assert inside(options) == Concurrency(
        workers=2,
        threads=4,
        worker_class="uwsgi",
        sources={"workers": "uwsgi", "threads": "uwsgi", "worker_class": "uwsgi"},
        role="web",
    )


@pytest.mark.parametrize(
    ("options", "workers", "threads", "threads_source"),
    [
        ({"processes": b"2", "workers": b"5"}, 5, 1, "uwsgi"),
        ({"workers": b"5", "processes": b"2"}, 2, 1, "uwsgi"),
        ({"processes": [b"2", b"3"]}, 3, 1, "uwsgi"),
        ({"wsgi-file": b"app.py"}, 1, 1, "uwsgi"),
        ({"processes": b"3", "gevent": b"20"}, 3, 20, "uwsgi"),
        ({"gevent": b"1000"}, 1, CAP, "CONNHEALTH_GREENLET_CAP"),
        ({"async": b"10", "threads": b"2"}, 1, 10, "uwsgi"),
        ({"processes": 4, "threads": [b"2"]}, 4, 2, "uwsgi"),
    ],
)
def test_options(
    options: dict[str, object], workers: int, threads: int, threads_source: str
) -> None:
    got = inside(options)
    assert (got.workers, got.threads, got.sources["threads"]) == (workers, threads, threads_source)


def test_uwsgi_beats_its_environment_variables_and_connhealth_wins() -> None:
    environ = {"UWSGI_PROCESSES": "9", "UWSGI_THREADS": "9", "WEB_CONCURRENCY": "9"}
    assert (inside({"processes": b"2"}, environ).workers, inside({}, environ).threads) == (2, 1)
    environ["CONNHEALTH_THREADS"] = "7"
    assert inside({"threads": b"4"}, environ).threads == 7


def test_outside_uwsgi_its_variables_count_as_before() -> None:
    got = resolve_concurrency({"UWSGI_PROCESSES": "4", "UWSGI_THREADS": "2"})
    assert (got.workers, got.threads, got.worker_class, got.role) == (4, 2, "uwsgi", "other")


@pytest.mark.parametrize("key", ["processes", "workers", "threads", "gevent", "async"])
@pytest.mark.parametrize("value", MALFORMED_COUNTS)
def test_malformed_option_names_option_and_value(key: str, value: str) -> None:
    with pytest.raises(ImproperlyConfigured) as excinfo:
        inside({key: value.encode()})
    assert str(excinfo.value).startswith(f"uWSGI option {key}={value!r} is not valid: ")


@pytest.mark.parametrize(("value", "text"), [(True, "True"), ([], "")])
def test_flag_or_empty_list_is_malformed(value: object, text: str) -> None:
    with pytest.raises(ImproperlyConfigured, match=f"^uWSGI option threads={text!r} is not"):
        inside({"threads": value})


def test_running_uwsgi_options(monkeypatch: pytest.MonkeyPatch) -> None:
    assert running_uwsgi_options() is None
    module = types.ModuleType("uwsgi")
    monkeypatch.setitem(sys.modules, "uwsgi", module)
    assert running_uwsgi_options() is None  # a module of that name without options
    module.opt = {"processes": b"3", "threads": b"2"}  # type: ignore[attr-defined]
    assert running_uwsgi_options() == {"processes": b"3", "threads": b"2"}
    assert process_role({}, ["uwsgi"]) == "web"
    got = process_concurrency({}, ["uwsgi"])
    assert (got.workers, got.threads, got.role) == (3, 2, "web")


# ------------------------------------------------------------------- a real uWSGI


@pytest.mark.gunicorn
def test_uwsgi_workers_size_their_pools(redis_db: RedisDB, tmp_path: Path) -> None:
    """``--master --processes 2 --threads 4``: each worker's pool holds 4 + 2, from uwsgi.opt."""
    env = child_env(REDIS_URL=redis_db.url, TESTPROJECT_VAR_DIR=str(tmp_path))
    args = ["--master", "--processes", "2", "--threads", "4"]
    with uwsgi(args, env, tmp_path / "uwsgi.log", workers=2) as (base, workers):
        pools_of_every_worker(base, workers)
        # as many requests at once as the workers have threads: none waits for the pool
        statuses = [status for status, _ in fan_out([f"{base}/work"] * 64, 8)]
        answers = pools_of_every_worker(base, workers)
    assert set(statuses) == {200}

    assert sorted(answers) == sorted(workers)
    for pid, answer in answers.items():
        assert answer["concurrency"] == {
            "workers": 2,
            "threads": 4,
            "worker_class": "uwsgi",
            "role": "web",
            "sources": {"workers": "uwsgi", "threads": "uwsgi", "worker_class": "uwsgi"},
        }, pid
        [pool] = answer["pools"]
        assert pool["max_connections"] == 6, (pid, pool)
        assert (pool["waits"], pool["timeouts"]) == (0, 0), (pid, pool)


@pytest.mark.gunicorn
@pytest.mark.parametrize("master", [["--master"], []], ids=["master", "no master"])
def test_idle_uwsgi_workers_keep_publishing(
    redis_db: RedisDB, tmp_path: Path, master: list[str]
) -> None:
    """Without --enable-threads: threads the app starts in a worker run (uWSGI 2.0.31 here)."""
    env = child_env(
        REDIS_URL=redis_db.url, TESTPROJECT_VAR_DIR=str(tmp_path), CONNHEALTH_PUBLISH_SECONDS="1"
    )
    with uwsgi([*master, "--processes", "2"], env, tmp_path / "uwsgi.log", workers=2) as (
        base,
        workers,
    ):
        pools_of_every_worker(base, workers)
        time.sleep(5)  # five intervals without a request: a record lives three
        with override_settings(CACHES=redis_caches(redis_db.url)):
            report, code = report_json()
    assert code == 0
    rows = {row["pid"]: row for row in report["caches"]["default"]["processes"]}
    assert sorted(rows) == sorted(workers)
    for row in rows.values():
        assert (row["role"], row["max_connections"], row["stale"]) == ("web", 3, False), row
    assert report["caches"]["default"]["fleet"]["max_connections"] == 6


@pytest.mark.gunicorn
def test_uwsgi_ini_file_sizes_the_pools(redis_db: RedisDB, tmp_path: Path) -> None:
    """``processes = 3``, ``threads = 2`` in an ini file: each worker's pool holds 2 + 2."""
    ini = tmp_path / "uwsgi.ini"
    ini.write_text("[uwsgi]\nmaster = true\nprocesses = 3\nthreads = 2\n")
    env = child_env(
        REDIS_URL=redis_db.url, TESTPROJECT_VAR_DIR=str(tmp_path), CONNHEALTH_PUBLISH_SECONDS="1"
    )
    with uwsgi(["--ini", str(ini)], env, tmp_path / "uwsgi.log", workers=3) as (base, workers):
        answers = pools_of_every_worker(base, workers)
        with override_settings(CACHES=redis_caches(redis_db.url)):
            report, code = report_json()
    assert sorted(answers) == sorted(workers)
    for answer in answers.values():
        assert answer["concurrency"]["sources"] == {
            "workers": "uwsgi",
            "threads": "uwsgi",
            "worker_class": "uwsgi",
        }
        [pool] = answer["pools"]
        assert pool["max_connections"] == 4
    assert code == 0
    rows = report["caches"]["default"]["processes"]
    assert sorted(row["pid"] for row in rows) == sorted(workers)
    assert {row["max_connections"] for row in rows} == {4}
