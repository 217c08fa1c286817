"""Benchmark 6 of ``make bench``: the fault suite's faults once each, as a table for RESULTS.md.

The faults and their load are tests/test_faults.py's (tests/faults.py runs
them): testproject under gunicorn gthread 4 x 8, wrk at 64 connections on
``/work``. Each fault runs twice, on fresh servers: once for the load's figures
and the server's connections counted at full concurrency before and after
(no probe may run then: a readiness probe holds a connection), once with
probes every 0.1 s through the probe listener and through the app's own port.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bench.harness import CHILDREN, ROOT, WORK, Gunicorn, base_env, table
from testproject.supervisor import free_port
from tests.faults import (
    WARM_SECONDS,
    Run,
    Served,
    every,
    named_connections,
    outage,
    reset_connections,
    run_fault,
)
from tests.netns import LossyNetwork, Unavailable
from tests.proxy import LatencyProxy
from tests.sampling import Wrk

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from bench.run import Section
    from tests.redis_server import RedisServer

WORKERS, THREADS = 4, 8
CHECK_TIMEOUT = 1.0
LIVE_BOUND, READY_BOUND = 0.5, CHECK_TIMEOUT + 0.5
RESTART_OUTAGE, OUTAGE = 2.0, 5.0
PROBES = ("live", "ready")
#: Clients of each probe, each probing every 0.1 s: over 100 answers, so that p99 is not the max.
PROBE_CLIENTS = 2
METHOD = (
    f"The fault suite's faults (tests/test_faults.py, run by tests/faults.py), once each: "
    f"testproject (`testproject.settings`, sized pools with the defaults, "
    f"`CONNHEALTH_CHECK_TIMEOUT={CHECK_TIMEOUT:g}`) under gunicorn gthread, {WORKERS} workers x "
    f"{THREADS} threads, no `--preload`; wrk (2 threads, 64 keep-alive connections) on `/work` "
    f"(3 cache calls) from 2 s before the fault until 2 s after it; a fresh redis-server on "
    f"loopback for every run. Each fault runs twice. The load's run gives `requests` and "
    f"`failed` (wrk's non-2xx answers and socket errors over the whole run), the error "
    f"window (from the start of the first failed request to the end of the last, of 2 "
    f"clients requesting `/work` back to back on keep-alive connections) and the server's "
    f"connections named by this app counted at full concurrency before the fault and after "
    f"its recovery: Redis is paused until every busy request thread of every worker waits "
    f"in a cache call (never 0.8 s), so the pools hold the most the load makes them hold, "
    f"each time from fresh connections (`CLIENT KILL TYPE normal` before, the fault after); "
    f"`CONNHEALTH_PUBLISH_SECONDS=3600` there, so no publication holds one more. Through the "
    f"proxy and in the namespace a worker's connections cannot be told apart on the server: "
    f"not counted. `unnamed after`: the server's connections without a name once each run's "
    f"load has stopped (the load's run / the probes' run). The probes' run adds probes "
    f"({PROBE_CLIENTS} clients of each, each every 0.1 s) on a fresh connection each (5 s "
    f"timeout), from 1 s before the fault to 2 s after it, through the probe listener "
    f"(`CONNHEALTH_PROBE_PORT`) and through the app's own port; p99 is nearest-rank over "
    f"all their answers. The outage is the time from the fault's start to its end (for a "
    f"restart: until the new server answers PING)."
)
#: The answers each probe may give (anything else, or no answer, is a failed probe).
ANSWERS = {"live": {200}, "ready": {200, 503}}


@dataclass
class Stage:
    """Where a fault happens: the Redis the app uses, and the tools between them."""

    redis: RedisServer
    url: str
    proxy: LatencyProxy | None = None
    network: LossyNetwork | None = None


@dataclass(frozen=True)
class Fault:
    name: str
    stage: str  # "loopback", "proxy" or "netns"
    act: Callable[[Stage], None]
    #: counted at full concurrency (tests/faults.py can tell a worker's
    #: connections only on loopback, where both ends are in one table)
    counted: bool
    #: what must hold: "window" (errors end within 2 s of the outage's end, the
    #: connections come back), "no errors", or "probes" (the probes' bounds)
    target: str


FAULTS = [
    Fault(
        f"Redis restarted (SIGKILL, started again {RESTART_OUTAGE:g} s later)",
        "loopback",
        lambda s: outage(s.redis.kill, s.redis.restart, RESTART_OUTAGE),
        counted=True,
        target="window",
    ),
    Fault(
        "`CLIENT KILL TYPE normal` every second, 8 times",
        "loopback",
        lambda s: every(1.0, 8, lambda: reset_connections(s.redis)),
        counted=True,
        target="no errors",
    ),
    Fault(
        f"Redis stopped {OUTAGE:g} s (SIGKILL, then started again)",
        "loopback",
        lambda s: outage(s.redis.kill, s.redis.restart, OUTAGE),
        counted=True,
        target="probes",
    ),
    Fault(
        f"Redis paused {OUTAGE:g} s (SIGSTOP)",
        "loopback",
        lambda s: outage(s.redis.pause, s.redis.resume, OUTAGE),
        counted=True,
        target="probes",
    ),
    Fault(
        f"200 ms added to every round trip, {OUTAGE:g} s (TCP proxy)",
        "proxy",
        lambda s: _latency(s, 0.1),
        counted=False,
        target="probes",
    ),
    Fault(
        f"30 % packet loss, {OUTAGE:g} s (nftables in a network namespace)",
        "netns",
        lambda s: _loss(s, 30),
        counted=False,
        target="probes",
    ),
]


def _latency(stage: Stage, one_way: float) -> None:
    proxy = stage.proxy
    assert proxy is not None
    outage(lambda: proxy.set_latency(one_way), lambda: proxy.set_latency(0.0), OUTAGE)


def _loss(stage: Stage, percent: int) -> None:
    network = stage.network
    assert network is not None
    port = stage.redis.port
    outage(lambda: network.drop(percent, port), network.heal, OUTAGE)


@contextlib.contextmanager
def staged(kind: str, tag: str) -> Iterator[Stage]:
    """A fresh redis-server for one run, with a proxy or in a namespace of its own."""
    if kind == "netns":
        with LossyNetwork() as network:
            server = network.redis(WORK / f"redis-faults-{tag}")
            server.die_with_parent = True
            with server:
                yield Stage(server, server.url, network=network)
        return
    redis = CHILDREN.redis(WORK / f"redis-faults-{tag}")
    try:
        if kind == "proxy":
            with LatencyProxy((redis.host, redis.port)) as proxy:
                yield Stage(redis, proxy.url_for(0), proxy=proxy)
        else:
            yield Stage(redis, redis.url)
    finally:
        CHILDREN.stop_redis(redis)


@contextlib.contextmanager
def serving(stage: Stage, tag: str, **env: str) -> Iterator[tuple[Gunicorn, int]]:
    """testproject under gunicorn 4 x 8 on the stage's Redis; also its probe listener's port."""
    probe_port = free_port()
    server = Gunicorn(
        f"faults-{tag}", settings="testproject.settings", redis_url=stage.url,
        workers=WORKERS, threads=THREADS, preload=False,
        CONNHEALTH_PROBE_PORT=str(probe_port), CONNHEALTH_CHECK_TIMEOUT=str(CHECK_TIMEOUT),
        **env,
    )  # fmt: skip
    with server:
        yield server, probe_port


def run_twice(fault: Fault, number: int) -> tuple[Run, Run]:
    """The load's run (counted when it can be) and the probes' run of one fault."""
    with (
        staged(fault.stage, f"{number}-load") as stage,
        serving(stage, f"{number}-load", CONNHEALTH_PUBLISH_SECONDS="3600") as (server, _),
    ):
        assert server.child is not None
        served = Served(server.child.pid, server.port, THREADS)
        load = run_fault(
            server.base,
            lambda: fault.act(stage),
            server=stage.redis,
            count=served if fault.counted else None,
            die_with_parent=True,
        )
    with (
        staged(fault.stage, f"{number}-probes") as stage,
        serving(stage, f"{number}-probes") as (server, probe_port),
    ):
        listener = f"http://127.0.0.1:{probe_port}"
        probes = {
            **{f"listener {p}": f"{listener}/{p}" for p in PROBES},
            **{f"app {p}": f"{server.base}/health/{p}" for p in PROBES},
        }
        probed = run_fault(
            server.base,
            lambda: fault.act(stage),
            server=stage.redis,
            probes=probes,
            probe_clients=PROBE_CLIENTS,
            die_with_parent=True,
        )
    return load, probed


def probe_cell(run: Run, probe: str) -> str:
    """p99 / max seconds of a probe's answers, and how many probes got no good answer."""
    samples = run.probes[probe]
    bad = [s for s in samples if s.status not in ANSWERS[probe.split()[-1]]]
    p99, worst = run.latency(probe)
    cell = f"{p99:.2f} / {worst:.2f}"
    return f"{cell} ({len(bad)} of {len(samples)} failed)" if bad else cell


def figures(load: Run, probed: Run) -> list[Any]:
    """One row of the table."""
    return [
        load.outage,
        int(load.load["requests"]),
        int(load.load["errors"]),
        load.error_window,
        "-" if load.before is None else load.before.total,
        "-" if load.after is None else load.after.total,
        f"{load.unnamed} / {probed.unnamed}",
        *(probe_cell(probed, f"{where} {p}") for where in ("listener", "app") for p in PROBES),
    ]


def bench_faults(section: Section, say: Callable[[str], None]) -> None:
    """Run every fault; fill ``section`` with the table, the targets and notes."""
    rows = []
    for number, fault in enumerate(FAULTS, 1):
        try:
            load, probed = run_twice(fault, number)
        except Unavailable as missing:
            section.notes.append(f"- {fault.name}: not run ({missing}).")
            continue
        rows.append([fault.name, *figures(load, probed)])
        say(f"  [6] {fault.name}: {figures(load, probed)}")
        say(f"      connections per worker (named, busy threads): {load.before} -> {load.after}")
        targets(section, fault, load, probed)
    section.tables.append(
        table(
            ["fault", "outage s", "requests", "failed", "error window s", "conns before",
             "conns after", "unnamed after", "live p99 / max s (listener)",
             "ready p99 / max s (listener)", "live p99 / max s (app port)",
             "ready p99 / max s (app port)"],
            rows,
        )
    )  # fmt: skip
    section.notes.append(maxclients_note(say))


def targets(section: Section, fault: Fault, load: Run, probed: Run) -> None:
    name = fault.name.split(" (")[0]
    if fault.target == "window":
        section.target(
            f"{name}: error window <= outage + 2 s",
            f"{load.error_window:.2f} s for an outage of {load.outage:.2f} s",
            load.error_window <= load.outage + 2.0,
        )
        before, after = load.before, load.after
        section.target(
            f"{name}: connections back to the pre-fault count",
            f"{before and before.total} -> {after and after.total}",
            before is not None and after is not None and before.total == after.total,
        )
    elif fault.target == "no errors":
        failed = int(load.load["errors"]) + len(load.errors)
        section.target(f"{name}: 0 failed requests", str(failed), failed == 0)
    else:
        for probe, bound in (("live", LIVE_BOUND), ("ready", READY_BOUND)):
            samples = probed.probes[f"listener {probe}"]
            late = [s for s in samples if s.status not in ANSWERS[probe] or s.seconds > bound]
            section.target(
                f"{name}: every {probe} answer within {bound:g} s (probe listener)",
                f"max {probed.latency(f'listener {probe}')[1]:.2f} s, "
                f"{len(late)} of {len(samples)} late or failed",
                bool(samples) and not late,
            )


def maxclients_note(say: Callable[[str], None]) -> str:
    """Squeeze maxclients below the fleet's connections under load; what the command says."""
    with (
        staged("loopback", "maxclients") as stage,
        serving(stage, "maxclients") as (server, _),
        Wrk(f"{server.base}/work", die_with_parent=True) as load,
    ):
        time.sleep(WARM_SECONDS)
        held = named_connections(stage.redis)
        with stage.redis.client() as client:
            client.config_set("maxclients", held // 2)
        env = base_env(DJANGO_SETTINGS_MODULE="testproject.settings", REDIS_URL=stage.url)
        done = subprocess.run(
            [sys.executable, "-m", "django", "connhealth", "--format", "json"],
            env=env, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        figures = load.result()
    notes = json.loads(done.stdout)["caches"]["default"]["notes"] if done.stdout else []
    say(f"  [6] maxclients: exit {done.returncode}, {notes}, {done.stderr.strip()}")
    return (
        f"- maxclients squeezed to {held // 2} under the same load (the fleet held {held} "
        f"named connections; wrk: {int(figures['errors'])} of {int(figures['requests'])} "
        f"requests failed): `manage.py connhealth --format json` exited {done.returncode}, "
        f"its note: {' '.join(notes)!r}; its stderr: {done.stderr.strip()!r}."
    )
