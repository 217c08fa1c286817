"""One fault under load, for the fault suite and bench/faults.py, and what it did.

``run_fault()`` runs a fault (a function that returns once it is over) while
wrk loads ``/work`` (3 cache calls) and samplers record the error timeline and
the probes' answers (tests/sampling.py), and returns a ``Run`` with what the
tests assert and the benchmark tabulates; it can count the server's named
connections at full concurrency before and after. The faults' tools live in
tests/proxy.py (latency, freeze) and tests/netns.py (packet loss). Nothing
here imports pytest: the benchmarks use it too.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

from django_connhealth.naming import parse_client_name
from testproject.sockets import ESTABLISHED, sockets_of, tcp_connections
from testproject.supervisor import processes
from tests.sampling import Sample, Sampler, Wrk, failed, percentile

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from tests.redis_server import RedisServer

#: Seconds of load before anything is measured: every worker has its pool and its share.
WARM_SECONDS = 2.0
#: Seconds of load, all samplers running, before the fault.
BASELINE_SECONDS = 1.0
#: Seconds of load after the fault, all samplers running.
RECOVERY = 2.0
#: Longest pause of Redis to bring every busy request thread into a cache call at
#: once (less than a command's socket timeout, 1 s), and how often it is tried.
SATURATE_SECONDS, SATURATE_TRIES = 0.8, 5
#: Seconds after the pause for the requests it held to finish.
SETTLE_SECONDS = 0.5
#: Clients of the error timeline of ``/work``, and how long one of its requests may take.
TIMELINE_CLIENTS, TIMELINE_TIMEOUT = 2, 10.0


def named_connections(server: RedisServer) -> int:
    """Connections to ``server`` that this app named (``connhealth:<host>:<pid>:<alias>``)."""
    return sum(named_by_pid(server).values())


def named_by_pid(server: RedisServer) -> dict[int, int]:
    """Connections to ``server`` that this app named, by the pid in their names."""
    found: dict[int, int] = {}
    for client in server.client_list():
        name = parse_client_name(client["name"])
        if name is not None:
            found[name.pid] = found.get(name.pid, 0) + 1
    return found


# -------------------------------------------------------------------------- a run


@dataclass
class Run:
    """One fault under load: when it began and ended, and what the load and the probes saw."""

    fault_at: float
    back_at: float
    #: wrk's figures over the whole run (testproject.wrk)
    load: dict[str, float]
    #: every request of the error timeline of ``/work``
    work: list[Sample]
    #: each probe's answers from the baseline until the end of the recovery
    probes: dict[str, list[Sample]] = field(default_factory=dict)
    #: the server's named connections at full concurrency before and after (``count``)
    before: Count | None = None
    after: Count | None = None
    #: the server's connections without a name once the load has stopped (``server``)
    unnamed: int | None = None

    @property
    def outage(self) -> float:
        return self.back_at - self.fault_at

    @property
    def errors(self) -> list[Sample]:
        return failed(self.work)

    @property
    def error_window(self) -> float:
        """Seconds from the start of the first failed request to the end of the last; 0: none."""
        errors = self.errors
        return max(s.end for s in errors) - min(s.at for s in errors) if errors else 0.0

    def latency(self, probe: str) -> tuple[float, float]:
        """p99 and max seconds of a probe's answers."""
        seconds = [sample.seconds for sample in self.probes[probe]]
        return percentile(seconds, 0.99), max(seconds, default=math.nan)


class Served(NamedTuple):
    """testproject under a server: its master's pid, its port, the threads of each worker."""

    master: int
    port: int
    threads: int


def waiting(server: RedisServer, served: Served) -> dict[int, tuple[int, int]]:
    """Per worker: its connections with a command waiting at ``server``, and its busy threads.

    Busy: as many threads as it has HTTP connections (each has a request in
    flight under wrk), at most its threads. Both ends of a loopback connection
    are in the kernel's tables (Linux /proc): the server's end tells whether a
    command waits there unread, the worker's which worker sent it.
    """
    table = tcp_connections()
    http = {c.socket for c in table if c.state == ESTABLISHED and c.local_port == served.port}
    to_redis = {c.socket: c.local_port for c in table if c.remote_port == server.port}
    unread = {c.remote_port for c in table if c.local_port == server.port and c.unread}
    found = {}
    for pid in processes(parent=served.master):
        held = sockets_of(pid)
        busy = min(served.threads, len(held & http))
        found[pid] = (sum(to_redis[s] in unread for s in held & to_redis.keys()), busy)
    return found


@dataclass(frozen=True)
class Count:
    """The server's named connections at full concurrency, in all and per worker."""

    total: int
    #: per worker pid: its named connections, and its busy threads then
    workers: dict[int, tuple[int, int]]


def saturated_connections(server: RedisServer, served: Served) -> Count:
    """The server's named connections once every busy request thread has held one at once.

    A connection a pool opened stays open while idle, so what the server counts
    is the most the pools held at once since their connections last broke.
    Redis is paused until every busy request thread of every worker waits in a
    cache call (each on a connection of its own): the most the load makes the
    pools hold. Never longer than SATURATE_SECONDS, less than a command's
    socket timeout, so no request fails; tried again when that was too short.
    """
    for _ in range(SATURATE_TRIES):
        server.pause()
        try:
            deadline = time.monotonic() + SATURATE_SECONDS
            while True:
                state = waiting(server, served)
                full = all(pending >= busy for pending, busy in state.values())
                if full or time.monotonic() > deadline:
                    break
                time.sleep(0.01)
        finally:
            server.resume()
        time.sleep(SETTLE_SECONDS)
        if full:
            named = named_by_pid(server)
            per_worker = {pid: (named.pop(pid, 0), busy) for pid, (_, busy) in state.items()}
            per_worker.update({pid: (count, 0) for pid, count in named.items()})
            return Count(sum(count for count, _ in per_worker.values()), per_worker)
    raise AssertionError(
        f"in none of {SATURATE_TRIES} pauses of {SATURATE_SECONDS} s did every busy request "
        f"thread wait in a cache call (per worker, waiting and busy: {waiting(server, served)})"
    )


def reset_connections(server: RedisServer) -> int:
    """``CLIENT KILL TYPE normal``: every pool reconnects, as after a restart; the count."""
    with server.client() as client:
        return int(client.execute_command("CLIENT", "KILL", "TYPE", "normal"))


def run_fault(
    base: str,
    fault: Callable[[], None],
    *,
    server: RedisServer | None = None,
    probes: Mapping[str, str] | None = None,
    probe_clients: int = 1,
    count: Served | None = None,
    recovery: float = RECOVERY,
    die_with_parent: bool = False,
) -> Run:
    """``fault()`` (it returns once the fault is over) under wrk's load on ``base/work``.

    ``server``: the Redis the app uses (where the connections are looked at).
    ``probes``: name to URL, each probed from the baseline to the end of the
    recovery by ``probe_clients`` clients (each every PROBE_INTERVAL).
    ``count``: what serves testproject, to count the server's named
    connections at full concurrency (``saturated_connections``) before and
    after. Each time the connections are fresh (``reset_connections`` before,
    the fault after), so the two figures count the same thing, and no probe
    runs then (a readiness probe holds one too). ``die_with_parent``: wrk's
    (see ``Wrk``).
    """
    assert count is None or server is not None, "counting needs the server"
    timeline = Sampler(
        f"{base}/work", interval=0, timeout=TIMELINE_TIMEOUT, clients=TIMELINE_CLIENTS, fresh=False
    )
    with Wrk(f"{base}/work", die_with_parent=die_with_parent) as load, timeline:
        time.sleep(WARM_SECONDS)
        before = after = None
        if server is not None and count is not None:
            reset_connections(server)
            time.sleep(recovery)
            before = saturated_connections(server, count)
        with contextlib.ExitStack() as stack:
            samplers = {
                name: stack.enter_context(Sampler(url, clients=probe_clients))
                for name, url in (probes or {}).items()
            }
            time.sleep(BASELINE_SECONDS)
            fault_at = time.monotonic()
            fault()
            back_at = time.monotonic()
            time.sleep(recovery)
        if server is not None and count is not None:
            after = saturated_connections(server, count)
        figures = load.result()
    unnamed = None if server is None else sum(not c["name"] for c in server.client_list())
    return Run(
        fault_at=fault_at,
        back_at=back_at,
        load=figures,
        work=timeline.samples,
        probes={name: sampler.samples for name, sampler in samplers.items()},
        before=before,
        after=after,
        unnamed=unnamed,
    )


def every(seconds: float, times: int, action: Callable[[], object]) -> None:
    """``action()`` ``times`` times, one every ``seconds`` (on a fixed schedule)."""
    started = time.monotonic()
    for number in range(times):
        time.sleep(max(0.0, started + number * seconds - time.monotonic()))
        action()


def outage(begin: Callable[[], object], end: Callable[[], object], seconds: float) -> None:
    """``begin()``, ``seconds`` later ``end()``, even when interrupted."""
    begin()
    try:
        time.sleep(seconds)
    finally:
        end()
