"""The fault suite: real faults of Redis under load, with real gunicorn.

testproject runs under gunicorn gthread, 4 workers x 8 threads, with wrk at 64
connections on ``/work`` (3 cache calls) throughout (tests/faults.py). The
faults: Redis killed and started again, its clients killed every second,
stopped, paused (SIGSTOP), behind 200 ms of added latency (tests/proxy.py),
losing 30 % of its packets (tests/netns.py), and its maxclients squeezed.
Probes go to the probe listener (``CONNHEALTH_PROBE_PORT``), as README
recommends deploying them.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import time
from typing import TYPE_CHECKING, NamedTuple

import pytest
import redis
from django.test import override_settings

from django_connhealth.factory import ConnectionFactory
from testproject.supervisor import free_port
from testproject.traffic import get
from tests.faults import (
    RECOVERY,
    WARM_SECONDS,
    Run,
    Served,
    every,
    named_connections,
    outage,
    reset_connections,
    run_fault,
)
from tests.helpers import (
    BOUND,
    CHECK_TIMEOUT,
    connhealth,
    gunicorn,
    redis_caches,
    report_json,
    wait_for,
)
from tests.netns import LossyNetwork, Unavailable
from tests.proxy import LatencyProxy
from tests.sampling import Wrk
from tests.servers import child_env

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from tests.redis_server import RedisServer

pytestmark = pytest.mark.gunicorn

WORKERS, THREADS = 4, 8
ARGS = ["-k", "gthread", "-w", str(WORKERS), "--threads", str(THREADS)]
#: Each pool's size: threads + the default headroom (2).
POOL = THREADS + 2
#: What a liveness answer may take; a readiness answer: BOUND (the check timeout + 0.5 s).
LIVE_BOUND = 0.5
#: Seconds Redis is down in a restart, and any fault lasts in the probes' tests.
RESTART_OUTAGE, PROBE_OUTAGE = 2.0, 5.0
#: How much longer than the outage requests may fail.
ERROR_MARGIN = 2.0


class Fleet(NamedTuple):
    """testproject under gunicorn: its base URL, its probe listener's, and what serves it."""

    base: str
    probes: str
    served: Served

    @property
    def probe_urls(self) -> dict[str, str]:
        """The listener's paths that README points Kubernetes' probes at."""
        return {"live": f"{self.probes}/live", "ready": f"{self.probes}/ready"}


@contextlib.contextmanager
def fleet(url: str, tmp_path: Path, **env: str) -> Iterator[Fleet]:
    """testproject under gunicorn (4 x 8 gthread) on the Redis at ``url``, probe listener on."""
    probe_port = free_port()
    env = child_env(
        REDIS_URL=url,
        TESTPROJECT_VAR_DIR=str(tmp_path),
        CONNHEALTH_PROBE_PORT=str(probe_port),
        CONNHEALTH_CHECK_TIMEOUT=str(CHECK_TIMEOUT),
        **env,
    )
    with gunicorn(ARGS, env, tmp_path / "gunicorn.log", workers=WORKERS) as (base, master, _):
        port = int(base.rsplit(":", 1)[1])
        probes = f"http://127.0.0.1:{probe_port}"
        # Every worker starts its listener once it has loaded the application.
        wait_for(lambda: get(f"{probes}/live")[0] == 200, what="the probe listener")
        yield Fleet(base, probes, Served(master.pid, port, THREADS))


def assert_probes_bounded(run: Run) -> None:
    """Every liveness answer 200 within LIVE_BOUND, every readiness answer within BOUND."""
    live, ready = run.probes["live"], run.probes["ready"]
    slow_live = [s for s in live if s.status != 200 or s.seconds > LIVE_BOUND]
    slow_ready = [s for s in ready if s.status not in (200, 503) or s.seconds > BOUND]
    assert (slow_live, slow_ready) == ([], []), (
        f"live: {len(slow_live)} of {len(live)} late or failed, p99/max {run.latency('live')}; "
        f"ready: {len(slow_ready)} of {len(ready)}, p99/max {run.latency('ready')}"
    )
    # Probed throughout: from before the fault to well after it (each probe waits
    # for the last one's answer, so a slow answer delays the next).
    for samples in (live, ready):
        assert samples[0].at <= run.fault_at
        assert samples[-1].at >= run.back_at + RECOVERY / 2


def ready_during(run: Run) -> set[int | str]:
    """What readiness answered while the fault had lasted a probe's bound and had a bound to go."""
    during = [s for s in run.probes["ready"] if run.fault_at + BOUND <= s.at < run.back_at - BOUND]
    assert during, run.probes["ready"]
    return {sample.status for sample in during}


# ----------------------------------------------------------------------- restart


def test_restart_under_load_fails_requests_only_during_the_outage(
    fresh_redis: RedisServer, tmp_path: Path
) -> None:
    with fleet(fresh_redis.url, tmp_path, CONNHEALTH_PUBLISH_SECONDS="3600") as f:
        run = run_fault(
            f.base,
            lambda: outage(fresh_redis.kill, fresh_redis.restart, RESTART_OUTAGE),
            server=fresh_redis,
            count=f.served,
        )
    assert RESTART_OUTAGE <= run.outage < RESTART_OUTAGE + 1.0
    assert run.load["non2xx"] > 0  # the outage was seen
    assert run.load["socket_errors"] == 0
    errors = run.errors
    assert errors, "no request of the timeline failed"
    # Failures end once the outage has begun, and at most ERROR_MARGIN after it ends.
    assert min(s.end for s in errors) >= run.fault_at
    assert max(s.end for s in errors) <= run.back_at + ERROR_MARGIN
    assert run.error_window <= run.outage + ERROR_MARGIN
    # Back to as many connections as before, at full concurrency: no leak, no lost pool.
    assert run.before is not None
    assert run.after is not None
    assert THREADS <= run.before.total <= WORKERS * POOL
    assert run.after.total == run.before.total, (run.before, run.after)
    assert run.unnamed == 0


def test_client_kill_every_second_fails_no_request(
    fresh_redis: RedisServer, tmp_path: Path
) -> None:
    killed: list[int] = []
    with fleet(fresh_redis.url, tmp_path, CONNHEALTH_PUBLISH_SECONDS="3600") as f:
        run = run_fault(
            f.base,
            lambda: every(1.0, 8, lambda: killed.append(reset_connections(fresh_redis))),
            server=fresh_redis,
            count=f.served,
        )
    assert len(killed) == 8
    assert min(killed) >= 1  # every kill found connections the pools had opened again
    assert run.load["requests"] > 1000
    assert (run.load["non2xx"], run.load["socket_errors"]) == (0, 0)
    assert run.errors == []
    assert run.before is not None
    assert run.after is not None
    assert run.after.total == run.before.total, (run.before, run.after)
    assert run.unnamed == 0


# ---------------------------------------------------------------- probes' bounds


def test_probes_with_redis_stopped(fresh_redis: RedisServer, tmp_path: Path) -> None:
    with fleet(fresh_redis.url, tmp_path) as f:
        run = run_fault(
            f.base,
            lambda: outage(fresh_redis.kill, fresh_redis.restart, PROBE_OUTAGE),
            server=fresh_redis,
            probes=f.probe_urls,
        )
    assert_probes_bounded(run)
    assert run.unnamed == 0  # every connection the pools opened again is named
    assert ready_during(run) == {503}


def test_probes_with_redis_paused(fresh_redis: RedisServer, tmp_path: Path) -> None:
    with fleet(fresh_redis.url, tmp_path) as f:
        run = run_fault(
            f.base,
            lambda: outage(fresh_redis.pause, fresh_redis.resume, PROBE_OUTAGE),
            server=fresh_redis,
            probes=f.probe_urls,
        )
    assert_probes_bounded(run)
    assert run.unnamed == 0  # every connection the pools opened again is named
    assert ready_during(run) == {503}


def test_probes_with_200_ms_of_latency(fresh_redis: RedisServer, tmp_path: Path) -> None:
    with (
        LatencyProxy((fresh_redis.host, fresh_redis.port)) as proxy,
        fleet(proxy.url_for(0), tmp_path) as f,
    ):
        run = run_fault(
            f.base,
            lambda: outage(
                lambda: proxy.set_latency(0.1), lambda: proxy.set_latency(0.0), PROBE_OUTAGE
            ),
            server=fresh_redis,
            probes=f.probe_urls,
        )
    assert_probes_bounded(run)
    assert run.unnamed == 0  # every connection the pools opened again is named
    # The latency is seen: a request made under it, with time left for 3 round trips
    # of 200 ms before it ends, takes them all (or waits for its turn until then).
    under = [s for s in run.work if run.fault_at < s.at <= run.back_at - 0.7]
    assert under
    assert min(s.seconds for s in under) >= 0.6


@pytest.fixture
def lossy_network() -> Iterator[LossyNetwork]:
    network = LossyNetwork()
    try:
        network.start()
    except Unavailable as missing:
        pytest.skip(f"no network namespace with nftables here: {missing}")
    try:
        yield network
    finally:
        network.stop()
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    assert network.name not in listed.stdout


def test_probes_with_30_percent_packet_loss(lossy_network: LossyNetwork, tmp_path: Path) -> None:
    with (
        lossy_network.redis(tmp_path / "redis") as server,
        fleet(server.url, tmp_path) as f,
    ):
        dropped: list[int] = []
        run = run_fault(
            f.base,
            lambda: outage(
                lambda: lossy_network.drop(30, server.port),
                lambda: dropped.append(lossy_network.heal()),
                PROBE_OUTAGE,
            ),
            server=server,
            probes=f.probe_urls,
        )
    assert_probes_bounded(run)
    assert run.unnamed == 0  # every connection the pools opened again is named
    assert dropped[0] > 0


# ---------------------------------------------------------------------- maxclients


def test_command_says_maxclients_is_reached_when_it_is(
    fresh_redis: RedisServer, tmp_path: Path
) -> None:
    with (
        fleet(fresh_redis.url, tmp_path) as f,
        Wrk(f"{f.base}/work"),
        override_settings(CACHES=redis_caches(fresh_redis.url)),
    ):
        time.sleep(WARM_SECONDS)
        seen, code = report_json()  # before: the fleet's budget, as --watch would see it
        assert code == 0
        budget, server = seen["caches"]["default"]["fleet"], seen["caches"]["default"]["server"]
        held = named_connections(fresh_redis)
        squeezed = held // 2  # fewer than the fleet holds: no connection it needs can open
        assert THREADS <= held <= budget["max_connections"]
        ConnectionFactory.disconnect_all()  # the command's own pool lets go of its connection
        with fresh_redis.client() as client:
            client.config_set("maxclients", squeezed)
        report, code = report_json()
        out, _, text_code = connhealth(no_color=True)
    assert (code, text_code) == (1, 1)
    [note] = report["caches"]["default"]["notes"]
    where = f"redis://{fresh_redis.host}:{fresh_redis.port}/0"
    refused = f"{where} refused the connection: its maxclients is reached"
    assert note.startswith(f"{refused}: ConnectionError: max number of clients reached. "), note
    assert re.search(
        rf"Fix: raise maxclients .* or make the fleet's pools fit under it \(at \d\d:\d\d:\d\d "
        rf"UTC, its {budget['processes']} processes' pools could open "
        rf"{budget['max_connections']} connections against maxclients {server['maxclients']}\)",
        note,
    ), note
    assert f"  {note}" in out.splitlines()
    assert "unreachable" not in note + out


# ------------------------------------------------------------------------ the tools


def test_proxy_adds_latency_each_way_keeps_order_and_freezes(fresh_redis: RedisServer) -> None:
    with (
        LatencyProxy((fresh_redis.host, fresh_redis.port), up=0.05, down=0.05) as proxy,
        redis.Redis.from_url(proxy.url_for(0), socket_timeout=0.5) as client,
    ):
        started = time.monotonic()
        assert client.ping()  # connects (a round trip for HELLO or none) and pings
        connect_and_ping = time.monotonic() - started
        started = time.monotonic()
        assert client.ping()
        rtt = time.monotonic() - started
        with client.pipeline(transaction=False) as pipe:
            for _ in range(2000):
                pipe.incr("proxy:order")
            assert pipe.execute() == list(range(1, 2001))
        proxy.freeze()
        with pytest.raises(redis.TimeoutError):
            client.ping()
        # Frozen, not closed: the server still holds the proxy's connection.
        assert len(fresh_redis.client_list()) == 1
        proxy.thaw()
        assert client.ping()  # on a new connection: redis-py dropped the timed-out one
        assert proxy.accepted == 2
    assert 0.1 <= rtt < 0.2
    assert connect_and_ping >= rtt
