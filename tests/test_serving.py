"""``serve_probes()`` (``django_connhealth.serving``): one probe listener in each worker.

Under the real servers users run, with several workers: each worker holds a
listening socket on the shared port, the master none (gunicorn ``--preload``
and uWSGI load the app in the master, then fork), and probes get answers there.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest
from django.test import override_settings

from django_connhealth import serve_probes
from django_connhealth.serving import serving
from testproject.supervisor import free_port
from tests.helpers import ask, gunicorn, listening_pids, uvicorn, uwsgi, wait_for
from tests.servers import child_env

if TYPE_CHECKING:
    from pathlib import Path

    from tests.conftest import RedisDB

pytestmark = pytest.mark.usefixtures("isolated_probes")

PASS = {"status": "pass"}


def probe_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "connhealth-probes"]


def test_nothing_is_served_without_a_port() -> None:
    assert serve_probes() is None
    assert probe_threads() == []
    assert serving.listener is None


def test_serves_once_per_process(redis_db: RedisDB) -> None:
    port = free_port()
    with override_settings(CONNHEALTH_PROBE_PORT=port, CONNHEALTH_PROBE_HOST="127.0.0.1"):
        address = serve_probes()
        assert address == ("127.0.0.1", port)
        assert serve_probes() == address  # the listener that runs
        assert len(probe_threads()) == 1
        status, _, body, _ = ask(address, "/live")
        assert (status, json.loads(body)) == (200, PASS)
        serving.stop()
        assert probe_threads() == []
        assert listening_pids(port) == set()


Start = Callable[[dict[str, str], "Path", int], contextlib.AbstractContextManager[tuple[Any, ...]]]


def _gunicorn(args: list[str]) -> Start:
    def start(env: dict[str, str], log: Path, workers: int) -> Any:
        return gunicorn(["-k", "gthread", "-w", str(workers), *args], env, log, workers)

    return start


SERVERS: dict[str, Start] = {
    "gunicorn": _gunicorn(["--threads", "2"]),
    "gunicorn --preload": _gunicorn(["--threads", "2", "--preload"]),
    "uwsgi": lambda env, log, workers: uwsgi(
        ["--master", "--processes", str(workers), "--threads", "2"], env, log, workers
    ),
    "uwsgi --lazy-apps": lambda env, log, workers: uwsgi(
        ["--master", "--processes", str(workers), "--enable-threads", "--lazy-apps"],
        env,
        log,
        workers,
    ),
    "uvicorn": lambda env, log, workers: uvicorn(["--workers", str(workers)], env, log, workers),
}


@pytest.mark.gunicorn
@pytest.mark.parametrize("name", list(SERVERS))
def test_each_worker_listens_on_the_shared_port(
    name: str, redis_db: RedisDB, tmp_path: Path
) -> None:
    workers = 2
    port = free_port()
    env = child_env(
        REDIS_URL=redis_db.url,
        TESTPROJECT_VAR_DIR=str(tmp_path),
        CONNHEALTH_PROBE_PORT=str(port),
        CONNHEALTH_PROBE_HOST="127.0.0.1",
    )
    with SERVERS[name](env, tmp_path / "server.log", workers) as started:
        pids = set(started[-1])
        assert len(pids) == workers
        # every worker holds the port once it has loaded the app, and nothing else
        # does (not the master)
        wait_for(lambda: listening_pids(port) == pids, what=f"listeners {pids}")
        assert listening_pids(port) == pids
        for path in ("/live", "/ready", "/health/live", "/health/ready"):
            for _ in range(4):
                status, _, body, _ = ask(("127.0.0.1", port), path)
                assert (status, json.loads(body)) == (200, PASS), path
    assert listening_pids(port) == set()


@pytest.mark.gunicorn
def test_uwsgi_without_threads_says_so(redis_db: RedisDB, tmp_path: Path) -> None:
    """Threads the app starts never run in such a uWSGI: no listener, and an error that says why."""
    port = free_port()
    env = child_env(
        REDIS_URL=redis_db.url,
        TESTPROJECT_VAR_DIR=str(tmp_path),
        CONNHEALTH_PROBE_PORT=str(port),
        CONNHEALTH_PROBE_HOST="127.0.0.1",
    )
    log = tmp_path / "uwsgi.log"
    with uwsgi(["--master", "--processes", "2"], env, log, workers=2):
        assert listening_pids(port) == set()
        text = log.read_text()
    assert (
        f"CONNHEALTH_PROBE_PORT={port} is set, but this uWSGI runs no threads the app starts, "
        "so no probe listener runs: add --enable-threads to uWSGI's options."
    ) in text
    assert text.count("add --enable-threads") == 2  # once per worker
