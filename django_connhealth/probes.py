"""Readiness checks: PING every pool of every sized alias, in bounded time.

Each pool is pinged through the process's own pool (no new connection when one
is idle), all pools at once on a small thread pool, and the answer is collected
at a deadline: a check still running then is reported, not waited for.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import os
import socket
import threading
import time
import weakref
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as futures_wait
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver
from django_redis.pool import get_connection_factory
from redis import ConnectionPool
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from django_connhealth import defaults
from django_connhealth.caches import is_django_redis, is_sentinel, locations
from django_connhealth.pool import PoolTimeoutError, SizedConnectionPool, wait_until
from django_connhealth.redact import redact_url, scrub, secrets_of

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from redis import Redis

PASS, WARN, FAIL = "pass", "warn", "fail"
_RANK = {PASS: 0, WARN: 1, FAIL: 2}
# The checkout gives up this much before the answer is due, so a saturated
# pool is reported as such rather than as a check that did not finish.
CHECKOUT_MARGIN = 0.05


def worst(statuses: Iterable[str]) -> str:
    return max(statuses, key=_RANK.__getitem__, default=PASS)


@dataclass
class Target:
    """One pool of one alias: what a check pings."""

    alias: str
    url: str
    client: Redis
    secrets: tuple[str, ...] = ()

    @property
    def pool(self) -> ConnectionPool:
        return self.client.connection_pool


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
    def pool(self) -> dict[str, Any]:
        """The pool's figures (empty for a pool class of the user's)."""
        return {} if self.sized_pool is None else self.sized_pool.stats().as_dict()

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


def sized_aliases() -> dict[str, Mapping[str, Any]]:
    caches: Mapping[str, Mapping[str, Any]] = getattr(settings, "CACHES", {})
    return {
        alias: config
        for alias, config in caches.items()
        if is_django_redis(config)
        and not is_sentinel(config.get("OPTIONS") or {})
        and defaults.OPTIONS_KEY in (config.get("OPTIONS") or {})
    }


def connection_factory(options: Mapping[str, Any]) -> Any:
    """The django-redis connection factory an alias with ``options`` uses."""
    # options= by name: django-redis before 7 takes (path=None, options=None).
    return get_connection_factory(options=dict(options))


class Targets:
    """The pools to ping, built once per process and per CACHES setting."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # The CACHES object itself, not its id(): a dict freed after an
        # override_settings can hand its id to the next one.
        self._key: tuple[int, object] | None = None
        self._targets: list[Target] = []

    def get(self) -> list[Target]:
        caches = getattr(settings, "CACHES", {})
        with self._lock:
            if self._key is None or self._key[0] != os.getpid() or self._key[1] is not caches:
                key = (os.getpid(), caches)
                self._targets = [
                    Target(
                        alias,
                        url,
                        connection_factory(config.get("OPTIONS") or {}).connect(url),
                        secrets_of(url, config.get("OPTIONS") or {}),
                    )
                    for alias, config in sized_aliases().items()
                    for url in locations(config)
                ]
                self._key = key
            return self._targets

    def clear(self) -> None:
        with self._lock:
            self._key = None
            self._targets = []


targets = Targets()


def _checkout_args() -> tuple[str, ...]:
    # redis-py before 5.3 wants a command name; later versions warn when given one.
    parameter = inspect.signature(ConnectionPool.get_connection).parameters.get("command_name")
    return ("PING",) if parameter is not None and parameter.default is parameter.empty else ()


_CHECKOUT_ARGS = _checkout_args()


class Deadline:
    """A ``time.monotonic()`` moment that a later probe sharing the check may extend."""

    __slots__ = ("at",)

    def __init__(self, at: float) -> None:
        self.at = at


PING = b"*1\r\n$4\r\nPING\r\n"
PONG = b"+PONG\r\n"


class UnexpectedReply(RedisConnectionError):
    """The server answered a PING with something else: an error, or stale data."""


def bounded_ping(pool: ConnectionPool, deadline: Deadline) -> None:
    """PING through ``pool``, giving up at ``deadline`` whatever the socket timeout.

    ``deadline.at`` is read when each wait starts, so a probe that joins a
    running check extends it. A sized pool's checkout gives up just before it
    (PoolTimeoutError); the reply is awaited only until it.

    Through a sized pool the PING goes straight to the socket: a readiness
    probe runs every few seconds on every pod, and redis-py's checkout and
    parser would double its cost. A connection reused from the pool that
    turns out broken or dirty (the server restarted, or closed it while idle)
    gets one retry on a new connection, as redis-py's own checkout does; a
    timeout does not.
    """
    if not isinstance(pool, SizedConnectionPool):
        _ping_through_redis_py(pool, deadline)
        return
    connection = pool.checkout(deadline.at - CHECKOUT_MARGIN)
    try:
        reused = getattr(connection, "_sock", None) is not None
        if reused and holds_unread_reply(connection):
            connection.disconnect()
            reused = False
        try:
            _ping(connection, deadline)
        except RedisTimeoutError:
            raise
        except (RedisConnectionError, OSError):
            if not reused:
                raise
            connection.disconnect()
            _ping(connection, deadline)
    except BaseException:
        connection.disconnect()  # a late reply must never meet the next command
        raise
    finally:
        pool.checkin(connection)


def holds_unread_reply(connection: Any) -> bool:
    """Whether redis-py's parser on ``connection`` holds a reply nobody has read.

    ``can_read()`` moves a waiting reply into the parser (redis-py's own
    parsers always, hiredis before redis-py 8), and redis-py 8 with RESP3 no
    longer looks for one at checkout: the next command would read it as its
    own. The probe never reads through the parser, so it drops such a
    connection instead of handing it back.
    """
    parser = getattr(connection, "_parser", None)
    unread_bytes = getattr(getattr(parser, "_buffer", None), "unread_bytes", None)
    if unread_bytes is not None:  # redis-py's own parsers
        return bool(unread_bytes())
    reader = getattr(parser, "_reader", None)
    if reader is None:
        return False
    if getattr(reader, "has_data", lambda: False)():
        return True
    # redis-py 5's hiredis parser keeps a reply it has already parsed aside.
    parsed = getattr(parser, "_next_response", _NOTHING_PARSED)
    return parsed is not _NOTHING_PARSED and parsed is not False


def _nothing_parsed() -> object:
    """The sentinel of redis-py 5's hiredis parser for "no reply parsed yet".

    From redis-py's private parser module, looked up so that a redis-py
    without it (8 has no such sentinel) still imports this module.
    """
    try:
        from redis._parsers import hiredis
    except ImportError:  # pragma: no cover - every supported redis-py has the module
        return object()
    return getattr(hiredis, "NOT_ENOUGH_DATA", object())


_NOTHING_PARSED = _nothing_parsed()


def _ping(connection: Any, deadline: Deadline) -> None:
    """One PING on ``connection`` (connecting it if need be), answered by ``deadline``."""
    connection.connect()  # nothing to do when connected; bounded by the connect timeout
    sock = getattr(connection, "_sock", None)
    if not isinstance(sock, socket.socket):  # a redis-py 8 cache proxy: its own I/O
        _send_and_read(connection, deadline)
        return
    reply = b""
    try:
        sock.settimeout(_remaining(deadline))
        sock.sendall(PING)
        while not reply.endswith(b"\r\n"):
            sock.settimeout(_remaining(deadline))
            chunk = sock.recv(4096)
            if not chunk:
                raise RedisConnectionError("Connection closed by server.")
            reply += chunk
    except TimeoutError:  # socket.timeout
        raise RedisTimeoutError("no answer in time") from None
    finally:
        sock.settimeout(connection.socket_timeout)
    if reply != PONG:
        text = reply[1:].strip() if reply.startswith(b"-") else reply[:80]
        raise UnexpectedReply(f"PING answered with {text.decode(errors='replace')!r}")


def _remaining(deadline: Deadline) -> float:
    remaining = deadline.at - time.monotonic()
    if remaining <= 0:
        raise RedisTimeoutError("no answer in time")
    return remaining


def _send_and_read(connection: Any, deadline: Deadline) -> None:
    connection.send_command("PING", check_health=False)
    remaining = deadline.at - time.monotonic()
    if remaining <= 0 or not connection.can_read(timeout=remaining):
        raise RedisTimeoutError("no answer in time")
    connection.read_response()


def _ping_through_redis_py(pool: ConnectionPool, deadline: Deadline) -> None:
    """:func:`bounded_ping` for a pool class of the user's: redis-py's checkout."""
    with wait_until(deadline.at - CHECKOUT_MARGIN):
        connection = pool.get_connection(*_CHECKOUT_ARGS)
    try:
        _send_and_read(connection, deadline)
    except BaseException:
        connection.disconnect()
        raise
    finally:
        pool.release(connection)


class Checker:
    """Runs checks on a per-process thread pool and collects them at a deadline."""

    #: Threads per process for checks; a stuck check holds one until its socket times out.
    max_workers = 8

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self._pid = 0
        # wait timeouts seen at the last probe, per pool, for "timeouts since the last probe"
        self._timeouts_seen: weakref.WeakKeyDictionary[ConnectionPool, int]
        self._timeouts_seen = weakref.WeakKeyDictionary()
        # the check under way for each pool
        self._running: weakref.WeakKeyDictionary[ConnectionPool, tuple[Future[Result], Deadline]]
        self._running = weakref.WeakKeyDictionary()

    def _this_process(self) -> None:
        """Forget a parent's state in a forked child; the caller holds ``self._lock``.

        A child inherits the objects but not the threads: a check the parent
        had under way would never finish here.
        """
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
                    self.max_workers, thread_name_prefix="connhealth"
                )
            return self._executor

    def shutdown(self) -> None:
        """Stop this process's check threads (tests; before a fork in tests)."""
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True)

    def start(
        self, timeout: float, *, inline: bool = False
    ) -> tuple[float, list[tuple[Target, Future[Result]]]]:
        """Start a check of every pool; a pool whose check still runs is not checked twice.

        So a stuck server holds at most one thread and one connection per pool,
        however many probes arrive, and aliases sharing a pool share its check;
        concurrent probes of a process share one PING.
        With ``inline``, a single pool with an idle connection is checked in the
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
                    shared = Deadline(deadline)
                    running = executor.submit(self.ping, target, shared)
                    self._running[target.pool] = (running, shared)
                pending.append((target, running))
        return deadline, pending

    def _join(self, pool: ConnectionPool, deadline: float) -> Future[Result] | None:
        """The check of ``pool`` under way, given this probe's time too; the caller holds the lock.

        A server that answers again must not be reported by a check whose own
        deadline has passed.
        """
        running = self._running.get(pool)
        if running is None or running[0].done():
            return None
        future, shared = running
        shared.at = max(shared.at, deadline)
        return future

    def _start_inline(
        self, target: Target, deadline: float
    ) -> tuple[Target, Future[Result]] | None:
        """Join the check of ``target`` under way, or run one in this thread; None: neither.

        A check run here answers by this probe's deadline: a probe that joins
        it cannot extend it (the Deadline it sees is not the one pinged with).
        """
        pool = target.pool
        with self._lock:
            self._this_process()
            joined = self._join(pool, deadline)
            if joined is not None:
                return target, joined
            if not (isinstance(pool, SizedConnectionPool) and pool.has_idle_connection()):
                return None
            future: Future[Result] = Future()
            self._running[pool] = (future, Deadline(deadline))
        try:
            result = self.ping(target, Deadline(deadline))
        except BaseException as exc:  # never leave a check that others wait for unfinished
            future.set_exception(exc)
            raise
        future.set_result(result)
        return target, future

    def ping(self, target: Target, deadline: Deadline) -> Result:
        started = time.monotonic()
        try:
            bounded_ping(target.pool, deadline)
        except PoolTimeoutError:
            return self.result(target, WARN, output="no free connection in the pool in time")
        except (RedisError, OSError) as exc:
            return self.result(target, FAIL, output=f"{type(exc).__name__}: {exc}")
        elapsed = (time.monotonic() - started) * 1000
        return self.result(target, PASS, response_ms=round(elapsed, 3))

    def result(
        self, target: Target, status: str, *, response_ms: float | None = None, output: str = ""
    ) -> Result:
        pool = target.pool
        sized = pool if isinstance(pool, SizedConnectionPool) else None
        if sized is not None:
            timeouts = sized.pool.timeouts  # the one figure every probe needs
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

    def collect(self, timeout: float, pending: list[tuple[Target, Future[Result]]]) -> list[Result]:
        results = []
        for target, future in pending:
            if future.done():
                result = future.result()
                if result.alias != target.alias:
                    # a pool shared by aliases is checked once, and reported for each
                    result = dataclasses.replace(result, alias=target.alias)
                results.append(result)
            else:
                results.append(self.result(target, FAIL, output=f"no answer within {timeout:g} s"))
        return results


checker = Checker()


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
        with self._lock:
            self._cached = None

    def results(self, timeout: float, ttl: float) -> list[Result]:
        """Check every pool, answering within ``timeout`` seconds."""
        cached = self._fresh(ttl)
        if cached is not None:
            return cached
        deadline, pending = checker.start(timeout, inline=True)
        waiting = [future for _, future in pending if not future.done()]
        if waiting:  # none after a check in this thread: the common probe
            futures_wait(waiting, timeout=max(0.0, deadline - time.monotonic()))
        return self._store(ttl, checker.collect(timeout, pending))

    async def aresults(self, timeout: float, ttl: float) -> list[Result]:
        """:meth:`results` for an event loop: waiting never blocks the loop."""
        cached = self._fresh(ttl)
        if cached is not None:
            return cached
        deadline, pending = checker.start(timeout)
        if pending:
            waiting = [asyncio.wrap_future(future) for _, future in pending]
            await asyncio.wait(waiting, timeout=max(0.0, deadline - time.monotonic()))
        return self._store(ttl, checker.collect(timeout, pending))


readiness = Readiness()


@receiver(setting_changed)
def _forget_checks(*, setting: str, **kwargs: Any) -> None:
    """Results and pools of the old CACHES answer nothing about the new one."""
    if setting == "CACHES":
        targets.clear()
        readiness.clear()
    elif setting == "CONNHEALTH_CACHE_SECONDS":
        readiness.clear()


def health_document(results: list[Result], *, detail: bool) -> dict[str, Any]:
    """An ``application/health+json`` body (draft-inadarei-api-health-check).

    Without ``detail`` it names failing checks only, with their status: no
    numbers, hosts or error text.
    """
    document: dict[str, Any] = {"status": worst(result.status for result in results)}
    checks: dict[str, list[dict[str, Any]]] = {}
    for result in results:
        key = f"redis.{result.alias}:responseTime"
        if not detail:
            if result.status != PASS:
                entry = checks.setdefault(key, [{"status": result.status}])[0]
                entry["status"] = worst((entry["status"], result.status))
            continue
        entry = {
            "componentId": result.location,
            "componentType": "datastore",
            "observedValue": result.response_ms,
            "observedUnit": "ms",
            "status": result.status,
            "time": result.time,
        }
        if result.output:
            entry["output"] = result.output
        checks.setdefault(key, []).append(entry)
        figures = result.pool
        if figures:
            checks.setdefault(f"redis.{result.alias}:connections", []).append(
                {
                    "componentId": result.location,
                    "componentType": "datastore",
                    "observedValue": figures["in_use"],
                    "observedUnit": "connections",
                    "status": WARN if result.status == WARN else PASS,
                    "time": result.time,
                    **figures,
                }
            )
    if checks:
        document["checks"] = checks
    return document
