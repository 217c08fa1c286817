"""``serve_probes()`` (``django_connhealth.serving``): one probe listener in each worker.

Under the real servers users run, with several workers: each worker holds a
listening socket on the shared port, the master none (gunicorn ``--preload``
and uWSGI load the app in the master, then fork), and probes get answers there.
"""

from __future__ import annotations

import contextlib
import json
import threading
import types
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest
from django.test import override_settings

from django_connhealth import serve_probes
from django_connhealth.serving import serving
from testproject.supervisor import free_port
from tests.helpers import (
    BOUND,
    CHECK_TIMEOUT,
    ask,
    gunicorn,
    listener_env,
    listening_pids,
    storm,
    uvicorn,
    uwsgi,
    wait_for,
)

if TYPE_CHECKING:
    from pathlib import Path

    from tests.conftest import RedisDB
    from tests.redis_server import RedisServer

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
    env = listener_env(redis_db.url, tmp_path, port)
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
    env = listener_env(redis_db.url, tmp_path, port)
    log = tmp_path / "uwsgi.log"
    with uwsgi(["--master", "--processes", "2"], env, log, workers=2):
        assert listening_pids(port) == set()
        text = log.read_text()
    assert (
        f"CONNHEALTH_PROBE_PORT={port} is set, but this uWSGI runs no threads the app starts, "
        "so no probe listener runs: add --enable-threads to uWSGI's options."
    ) in text
    assert text.count("add --enable-threads") == 2  # once per worker


@pytest.mark.gunicorn
def test_a_storm_of_probes_under_gunicorn_with_redis_paused(
    fresh_redis: RedisServer, tmp_path: Path
) -> None:
    """500 readiness probes at once on the listener of gunicorn gthread 2 x 4, Redis paused.

    Each worker sends one PING for all of its probes, and every probe is answered
    within the check timeout plus the margin. 500 more, within a timeout of the
    failure, are answered from it at once; liveness storms answer in 0.5 s.
    """
    probes = 500
    port = free_port()
    env = listener_env(fresh_redis.url, tmp_path, port)
    address = ("127.0.0.1", port)
    args = ["-k", "gthread", "-w", "2", "--threads", "4"]
    with gunicorn(args, env, tmp_path / "gunicorn.log", workers=2) as (_, _, pids):
        wait_for(lambda: listening_pids(port) == set(pids), what="both listeners")
        statuses, latencies = storm(address, probes)  # each worker has a pooled connection
        assert statuses == Counter({200: probes})
        fresh_redis.pause()
        try:
            statuses, latencies = storm(address, probes)
            again_statuses, again = storm(address, probes)
            live_statuses, live = storm(address, probes, "/live")
        finally:
            fresh_redis.resume()
    assert statuses == again_statuses == Counter({503: probes})
    assert latencies[int(probes * 0.99) - 1] < BOUND, latencies[-10:]
    # answered from the failure just seen: none waited a timeout
    assert again[int(probes * 0.99) - 1] < CHECK_TIMEOUT, again[-10:]
    assert live_statuses == Counter({200: probes})
    assert live[int(probes * 0.99) - 1] < 0.5, live[-10:]


def test_uwsgi_post_fork_hook_runs_after_the_one_set_before() -> None:
    """uwsgidecorators' @postfork, or a user's own hook, still runs, first."""
    from django_connhealth.servers.uwsgi import after_fork_in_workers

    ran: list[str] = []
    uwsgi = types.SimpleNamespace(post_fork_hook=lambda: ran.append("theirs"))
    after_fork_in_workers(lambda: ran.append("ours"), uwsgi)
    uwsgi.post_fork_hook()
    assert ran == ["theirs", "ours"]
    bare = types.SimpleNamespace()
    after_fork_in_workers(lambda: ran.append("alone"), bare)
    bare.post_fork_hook()
    assert ran == ["theirs", "ours", "alone"]
