"""The liveness watchdog (``django_connhealth.watchdog``): stuck fails liveness, busy does not.

The counts come from Django's request signals; the real test runs gunicorn
gthread 1 x 2 with the probe listener, whose answers never wait for a thread.
"""

from __future__ import annotations

import json
import threading
import time
from typing import TYPE_CHECKING, Any

import pytest
from django.test import Client, override_settings

from django_connhealth.watchdog import Stall, Watchdog
from testproject.supervisor import free_port
from testproject.traffic import get
from tests.helpers import TOKEN, ask, gunicorn, health, wait_for
from tests.servers import child_env

if TYPE_CHECKING:
    from pathlib import Path

    from tests.conftest import RedisDB
    from tests.redis_server import RedisServer

pytestmark = pytest.mark.usefixtures("isolated_probes")

WATCHDOG_SECONDS = 1.0


def watchdog_of(threads: int) -> Watchdog:
    dog = Watchdog()
    dog._threads = threads  # as sizing would find for this process
    return dog


def test_all_threads_stuck_past_the_limit_is_a_stall() -> None:
    dog = watchdog_of(2)
    dog.request_started()
    dog.request_started()
    assert dog.stall(0.05) is None  # not for long enough yet
    time.sleep(0.1)
    stall = dog.stall(0.05)
    assert stall is not None
    assert (stall.in_flight, stall.threads) == (2, 2)
    assert stall.seconds >= 0.1
    assert dog.stall(0) is None  # 0: off
    dog.request_finished()  # progress: a thread is free again
    assert dog.stall(0.05) is None


def test_busy_threads_that_finish_requests_are_no_stall() -> None:
    dog = watchdog_of(1)
    dog.request_started()
    for _ in range(5):
        time.sleep(0.03)
        dog.request_finished()
        dog.request_started()
        assert dog.stall(0.05) is None  # always busy, never stuck


def test_stall_counts_from_the_moment_every_thread_became_busy() -> None:
    """A process idle for long, then stuck at once, is not stalled before the limit."""
    dog = watchdog_of(2)
    time.sleep(0.1)  # idle: no request finished meanwhile
    dog.request_started()
    dog.request_started()
    assert dog.stall(0.05) is None


def test_more_threads_than_requests_is_no_stall() -> None:
    dog = watchdog_of(3)
    dog.request_started()
    dog.request_started()
    time.sleep(0.1)
    assert dog.stall(0.05) is None
    dog.request_finished()
    dog.request_finished()
    dog.request_finished()  # never below zero
    dog.request_started()
    assert dog.stall(0.01) is None


def test_describe() -> None:
    assert Stall(9, 8, 31.25).describe() == (
        "all 8 request threads busy (9 requests in flight) and no request finished for 31.2 s"
    )


def test_views_count_requests_through_the_signals(fresh_redis: RedisServer) -> None:
    from django_connhealth.watchdog import watchdog

    with health(fresh_redis.url):
        watchdog._threads = 1
        watchdog.request_started()  # a request stuck in the only thread
        with override_settings(CONNHEALTH_WATCHDOG_SECONDS=0.05, CONNHEALTH_TOKEN=TOKEN):
            time.sleep(0.1)
            response = Client().get("/health/live")
            assert response.status_code == 503
            assert json.loads(response.content) == {
                "status": "fail",
                "checks": {"connhealth:watchdog": [{"status": "fail"}]},
            }
            time.sleep(0.1)  # that probe finished: stuck for the limit again
            detail = Client().get("/health/live", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
            [check] = json.loads(detail.content)["checks"]["connhealth:watchdog"]
            assert check["output"].startswith("all 1 request threads busy (")
            assert check["observedUnit"] == "s"
            # each probe was a request that finished: progress, for a moment
            assert Client().get("/health/live").status_code == 200
        watchdog.request_finished()
        with override_settings(CONNHEALTH_WATCHDOG_SECONDS="soon"):
            response = Client().get("/health/live")
            assert response.status_code == 503  # a malformed setting fails, by name
            assert "connhealth:configuration" in json.loads(response.content)["checks"]


def _hold(base: str, seconds: float, results: list[Any]) -> None:
    results.append(get(f"{base}/hold?seconds={seconds}", timeout=seconds + 30))


@pytest.mark.gunicorn
def test_stuck_worker_fails_liveness_and_a_busy_one_does_not(
    redis_db: RedisDB, tmp_path: Path
) -> None:
    port = free_port()
    env = child_env(
        REDIS_URL=redis_db.url,
        TESTPROJECT_VAR_DIR=str(tmp_path),
        CONNHEALTH_PROBE_PORT=str(port),
        CONNHEALTH_PROBE_HOST="127.0.0.1",
        CONNHEALTH_WATCHDOG_SECONDS=str(WATCHDOG_SECONDS),
        CONNHEALTH_TOKEN=TOKEN,
    )
    address = ("127.0.0.1", port)
    args = ["-k", "gthread", "-w", "1", "--threads", "2"]
    with gunicorn(args, env, tmp_path / "gunicorn.log", workers=1) as (base, _, _pids):
        wait_for(lambda: ask(address, "/live")[0] == 200, what="the probe listener")

        # Busy: 4 clients on 2 threads, each request 0.3 s, for 3 watchdog periods.
        results: list[Any] = []
        ends = time.monotonic() + 3 * WATCHDOG_SECONDS

        def client() -> None:
            while time.monotonic() < ends:
                _hold(base, 0.3, results)

        clients = [threading.Thread(target=client) for _ in range(4)]
        for thread in clients:
            thread.start()
        busy = []
        while time.monotonic() < ends:
            busy.append(ask(address, "/live")[0])
            time.sleep(0.1)
        for thread in clients:
            thread.join()
        assert len(busy) >= 20, busy
        assert set(busy) == {200}, busy
        assert {status for status, _ in results} == {200}

        # Stuck: both threads held past the watchdog's time, one more request queued.
        held: list[Any] = []
        stuck = [
            threading.Thread(target=_hold, args=(base, 4 * WATCHDOG_SECONDS, held))
            for _ in range(3)
        ]
        for thread in stuck:
            thread.start()
        try:
            wait_for(lambda: ask(address, "/live")[0] == 503, 3 * WATCHDOG_SECONDS, "a stall")
            status, _, body, elapsed = ask(address, "/live", Authorization=f"Bearer {TOKEN}")
            assert status == 503
            assert elapsed < 0.5, elapsed
            [check] = json.loads(body)["checks"]["connhealth:watchdog"]
            assert check["output"].startswith("all 2 request threads busy (")
            assert check["observedValue"] > WATCHDOG_SECONDS
        finally:
            for thread in stuck:
                thread.join()
        assert [status for status, _ in held] == [200, 200, 200]
        # the held requests finished: alive again, without a restart
        assert ask(address, "/live")[0] == 200
