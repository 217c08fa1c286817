"""Readiness probes: PING every pool of every Redis alias, in bounded time.

Each pool is pinged through the process's own pool (no new connection when one
is idle), all pools at once on a small thread pool, and the answer is collected
at a deadline: a ping still running then is reported, not waited for.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import threading
import time
import weakref
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as futures_wait
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from django.conf import settings
from redis.exceptions import RedisError

from django_connhealth import defaults
from django_connhealth.adapters.registry import probe_targets
from django_connhealth.ping import bounded_ping
from django_connhealth.pool import PoolTimeoutError, SizedConnectionPool
from django_connhealth.redact import redact_url, scrub
from django_connhealth.redispy import Moment

if TYPE_CHECKING:
    from collections.abc import Iterable

    from redis import ConnectionPool

    from django_connhealth.adapters.base import AliasPool, Unpinged

PASS, WARN, FAIL = "pass", "warn", "fail"
_RANK = {PASS: 0, WARN: 1, FAIL: 2}


def worst(statuses: Iterable[str]) -> str:
    return max(statuses, key=_RANK.__getitem__, default=PASS)


@dataclass
class Result:
    """The outcome of pinging one pool.

    What only detail shows (the redacted location, scrubbed error text, the
    time) is worked out when asked for: anonymous probes never pay for it.
    """

    alias: str
    url: str
    status: str
    wall_time: float
    response_ms: float | None = None
    raw_output: str = ""
    sized_pool: SizedConnectionPool | None = None
    secrets: tuple[str, ...] = ()

    @property
    def figures(self) -> dict[str, Any]:
        """The pool's figures (empty for a pool class of the user's)."""
        return {} if self.sized_pool is None else self.sized_pool.figures().as_dict()

    @property
    def location(self) -> str:
        return redact_url(self.url)

    @property
    def output(self) -> str:
        return scrub(self.raw_output, self.secrets) if self.raw_output else ""

    @property
    def time(self) -> str:
        moment = datetime.fromtimestamp(self.wall_time, timezone.utc)
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Targets:
    """The pools to ping, found once per process and per CACHES setting."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # The CACHES object itself, not its id(): a dict freed after an
        # override_settings can hand its id to the next one.
        self._key: tuple[int, object] | None = None
        self._targets: list[AliasPool] = []
        self._unchecked: list[Unpinged] = []

    def get(self) -> list[AliasPool]:
        """The pools of every Redis alias an adapter handles, sized or not."""
        return self._current()[0]

    def unchecked(self) -> list[Unpinged]:
        """Each Redis-backed alias readiness cannot ping."""
        return self._current()[1]

    def _current(self) -> tuple[list[AliasPool], list[Unpinged]]:
        caches = getattr(settings, "CACHES", {})
        with self._lock:
            if self._key is None or self._key[0] != os.getpid() or self._key[1] is not caches:
                key = (os.getpid(), caches)
                self._targets, self._unchecked = probe_targets(caches)
                self._key = key
            return self._targets, self._unchecked

    def clear(self) -> None:
        """Find the pools afresh on the next probe."""
        with self._lock:
            self._key = None

    def after_fork(self) -> None:
        """:meth:`clear` in a forked child, where a parent's thread may have held the lock."""
        self._lock = threading.Lock()
        self._key = None


targets = Targets()

Pending = list[tuple["AliasPool", "Future[Result]"]]


class Prober:
    """Runs pings on a per-process thread pool and collects them at a deadline."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self._pid = 0
        # wait timeouts seen at the last probe, per pool, for "timeouts since the last probe"
        self._timeouts_seen: weakref.WeakKeyDictionary[ConnectionPool, int]
        self._timeouts_seen = weakref.WeakKeyDictionary()
        # the ping under way for each pool
        self._running: weakref.WeakKeyDictionary[ConnectionPool, tuple[Future[Result], Moment]]
        self._running = weakref.WeakKeyDictionary()

    def _this_process(self) -> None:
        """Forget a parent's pings (never to finish here); the caller holds ``self._lock``."""
        if self._pid != os.getpid():
            self._executor = None
            self._pid = os.getpid()
            self._timeouts_seen = weakref.WeakKeyDictionary()
            self._running = weakref.WeakKeyDictionary()

    def executor(self) -> ThreadPoolExecutor:
        with self._lock:
            self._this_process()
            if self._executor is None:
                self._executor = ThreadPoolExecutor(
                    defaults.PROBE_THREADS, thread_name_prefix="connhealth"
                )
            return self._executor

    def shutdown(self) -> None:
        """Stop this process's ping threads and forget the pings under way."""
        with self._lock:
            executor, self._executor = self._executor, None
            self._pid = 0  # the next use starts afresh, as in a new process
        if executor is not None:
            executor.shutdown(wait=True)

    def after_fork(self) -> None:
        """Forget the parent's threads and pings in a forked child; the lock is made anew."""
        self._lock = threading.Lock()
        self._executor = None
        self._pid = 0

    def start(self, timeout: float, *, inline: bool = False) -> tuple[float, Pending]:
        """Start a ping of every pool; a pool whose ping still runs is not pinged twice.

        So a stuck server holds at most one thread and one connection per pool,
        however many probes arrive, and aliases sharing a pool share its ping;
        concurrent probes of a process share one PING.
        With ``inline``, a single pool with an idle connection is pinged in the
        calling thread: the ping is bounded by the deadline all the same, and
        the common probe saves two thread switches.
        """
        deadline = time.monotonic() + timeout
        current = targets.get()
        if inline and len(current) == 1:
            started = self._start_inline(current[0], deadline)
            if started is not None:
                return deadline, [started]
        executor = self.executor()
        pending = []
        with self._lock:
            for target in current:
                running = self._join(target.pool, deadline)
                if running is None:
                    shared = Moment(deadline)
                    running = executor.submit(self.ping, target, shared)
                    self._running[target.pool] = (running, shared)
                pending.append((target, running))
        return deadline, pending

    def _join(self, pool: ConnectionPool, deadline: float) -> Future[Result] | None:
        """The ping of ``pool`` under way, its deadline moved to this probe's; caller holds lock.

        So a server that answers again is not reported by a ping whose own deadline passed.
        """
        running = self._running.get(pool)
        if running is None or running[0].done():
            return None
        future, shared = running
        shared.at = max(shared.at, deadline)
        return future

    def _start_inline(
        self, target: AliasPool, deadline: float
    ) -> tuple[AliasPool, Future[Result]] | None:
        """Join the ping of ``target`` under way, or run one in this thread; None: neither.

        A ping run here answers by this probe's deadline: a probe that joins
        it cannot extend it (the Moment it sees is not the one pinged with).
        """
        pool = target.pool
        with self._lock:
            self._this_process()
            joined = self._join(pool, deadline)
            if joined is not None:
                return target, joined
            if not (isinstance(pool, SizedConnectionPool) and pool.can_ping_inline()):
                return None
            future: Future[Result] = Future()
            self._running[pool] = (future, Moment(deadline))
        try:
            result = self.ping(target, Moment(deadline))
        except BaseException as exc:  # never leave a ping that others wait for unfinished
            future.set_exception(exc)
            raise
        future.set_result(result)
        return target, future

    def ping(self, target: AliasPool, answer_by: Moment) -> Result:
        started = time.monotonic()
        try:
            bounded_ping(target.pool, answer_by)
        except PoolTimeoutError:
            return self.result(target, WARN, output="no free connection in the pool in time")
        except (RedisError, OSError) as exc:
            return self.result(target, FAIL, output=f"{type(exc).__name__}: {exc}")
        elapsed = (time.monotonic() - started) * 1000
        return self.result(target, PASS, response_ms=round(elapsed, 3))

    def result(
        self, target: AliasPool, status: str, *, response_ms: float | None = None, output: str = ""
    ) -> Result:
        pool = target.pool
        sized = pool if isinstance(pool, SizedConnectionPool) else None
        if sized is not None:
            timeouts = sized.slots.timeouts  # the one figure every probe needs
            with self._lock:
                seen = self._timeouts_seen.get(pool, timeouts)
                self._timeouts_seen[pool] = timeouts
            if timeouts > seen and status == PASS:
                status = WARN
                output = f"{timeouts - seen} wait timeouts since the last probe"
        return Result(
            alias=target.alias,
            url=target.url,
            status=status,
            wall_time=time.time(),
            response_ms=response_ms,
            raw_output=output,
            sized_pool=sized,
            secrets=target.secrets,
        )

    def collect(self, timeout: float, pending: Pending) -> list[Result]:
        results = []
        for target, future in pending:
            if future.done():
                result = future.result()
                if result.alias != target.alias:
                    # a pool shared by aliases is pinged once, and reported for each
                    result = dataclasses.replace(result, alias=target.alias)
                results.append(result)
            else:
                results.append(self.result(target, FAIL, output=f"no answer within {timeout:g} s"))
        # Never a silent pass for an alias readiness could not check.
        results += [
            Result(alias, url, FAIL if broken else WARN, time.time(), raw_output=reason)
            for alias, url, reason, broken in targets.unchecked()
        ]
        return results


prober = Prober()


class Readiness:
    """Readiness results, optionally reused for ``CONNHEALTH_CACHE_SECONDS``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cached: tuple[float, int, list[Result]] | None = None

    def _fresh(self, ttl: float) -> list[Result] | None:
        with self._lock:
            cached = self._cached
        if ttl and cached and cached[1] == os.getpid() and time.monotonic() - cached[0] < ttl:
            return cached[2]
        return None

    def _store(self, ttl: float, results: list[Result]) -> list[Result]:
        if ttl:
            with self._lock:
                self._cached = (time.monotonic(), os.getpid(), results)
        return results

    def clear(self) -> None:
        """Forget the reused results."""
        with self._lock:
            self._cached = None

    def after_fork(self) -> None:
        """:meth:`clear` in a forked child, where a parent's thread may have held the lock."""
        self._lock = threading.Lock()
        self._cached = None

    def results(self, timeout: float, ttl: float) -> list[Result]:
        """Ping every pool, answering within ``timeout`` seconds."""
        cached = self._fresh(ttl)
        if cached is not None:
            return cached
        deadline, pending = prober.start(timeout, inline=True)
        waiting = [future for _, future in pending if not future.done()]
        if waiting:  # none after a ping in this thread: the common probe
            futures_wait(waiting, timeout=max(0.0, deadline - time.monotonic()))
        return self._store(ttl, prober.collect(timeout, pending))

    async def aresults(self, timeout: float, ttl: float) -> list[Result]:
        """:meth:`results` for an event loop: waiting never blocks the loop."""
        cached = self._fresh(ttl)
        if cached is not None:
            return cached
        deadline, pending = prober.start(timeout)
        if pending:
            waiting = [asyncio.wrap_future(future) for _, future in pending]
            await asyncio.wait(waiting, timeout=max(0.0, deadline - time.monotonic()))
        return self._store(ttl, prober.collect(timeout, pending))


readiness = Readiness()
