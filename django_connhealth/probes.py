"""Readiness probes: PING every pool of every Redis alias, in bounded time.

Each pool is pinged through the process's own pool (no new connection when one
is idle), all pools at once on a small thread pool, and the answer is collected
at a deadline: a ping still running then is reported, not waited for.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
import weakref
from concurrent.futures import Future, ThreadPoolExecutor
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
        # when each pool's last check failed: answered at once for a timeout after
        self._failed: weakref.WeakKeyDictionary[ConnectionPool, float]
        self._failed = weakref.WeakKeyDictionary()

    def _this_process(self) -> None:
        """Forget a parent's pings (never to finish here); the caller holds ``self._lock``."""
        if self._pid != os.getpid():
            self._executor = None
            self._pid = os.getpid()
            self._timeouts_seen = weakref.WeakKeyDictionary()
            self._running = weakref.WeakKeyDictionary()
            self._failed = weakref.WeakKeyDictionary()

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
        concurrent probes of a process share one PING. A probe that joins a
        ping under way waits no later than that ping's deadline, and a pool
        that failed within the last ``timeout`` seconds is answered at once
        with that failure: a storm of probes against a stuck server costs each
        probe at most one timeout, most of them nothing.
        With ``inline``, a single pool with an idle connection is pinged in the
        calling thread: the ping is bounded by the deadline all the same, and
        the common probe saves two thread switches.

        Returns the moment by which every pending ping answers or is reported.
        """
        now = time.monotonic()
        deadline = now + timeout
        current = targets.get()
        if inline and len(current) == 1:
            started = self._start_inline(current[0], now, deadline)
            if started is not None:
                return started
        executor = self.executor()
        pending: Pending = []
        answer_by = now
        with self._lock:
            for target in current:
                running = self._recent(target.pool, now, deadline)
                if running is None:
                    check = Moment(deadline)
                    future = executor.submit(self.ping, target, check)
                    running = self._running[target.pool] = (future, check)
                answer_by = max(answer_by, running[1].at)
                pending.append((target, running[0]))
        return answer_by, pending

    def _recent(
        self, pool: ConnectionPool, now: float, deadline: float
    ) -> tuple[Future[Result], Moment] | None:
        """The ping under way for ``pool``, or its failure seen since ``now - timeout``.

        The caller holds ``self._lock``. A ping under way keeps its own deadline
        (never this probe's), so a probe that joins it answers no later than it.
        """
        running = self._running.get(pool)
        if running is None:
            return None
        future = running[0]
        if not future.done():
            return running
        timeout = deadline - now
        failed_at = self._failed.get(pool)
        if failed_at is not None and now - failed_at < timeout:
            # answered with the finished ping's failure, not waited for
            return future, Moment(now)
        return None

    def _start_inline(
        self, target: AliasPool, now: float, deadline: float
    ) -> tuple[float, Pending] | None:
        """Join the ping of ``target`` under way, or run one in this thread; None: neither."""
        pool = target.pool
        with self._lock:
            self._this_process()
            running = self._recent(pool, now, deadline)
            if running is not None:
                return running[1].at, [(target, running[0])]
            if not (isinstance(pool, SizedConnectionPool) and pool.can_ping_inline()):
                return None
            future: Future[Result] = Future()
            check = Moment(deadline)
            self._running[pool] = (future, check)
        try:
            result = self.ping(target, check)
        except BaseException as exc:  # never leave a ping that others wait for unfinished
            future.set_exception(exc)
            raise
        future.set_result(result)
        return deadline, [(target, future)]

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
        with self._lock:
            if status == FAIL:
                self._failed[pool] = time.monotonic()
            else:
                self._failed.pop(pool, None)
            if sized is not None:
                timeouts = sized.slots.timeouts  # the one figure every probe needs
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
