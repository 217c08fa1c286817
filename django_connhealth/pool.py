"""The pool class ``sized_caches`` installs: a blocking pool that counts its use.

Counters live on the pool's queue and are updated under the queue's own lock,
so they cost the hot path one comparison; a forked child's pool resets them
with the queue (redis-py calls ``reset()`` in a child on first use).
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from contextlib import contextmanager
from dataclasses import dataclass
from queue import Empty, Full, LifoQueue
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ImproperlyConfigured
from redis.backoff import EqualJitterBackoff
from redis.connection import BlockingConnectionPool
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.retry import Retry

from django_connhealth import defaults
from django_connhealth.naming import client_host, client_name

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

#: Seconds between looks at CONNHEALTH_PUBLISH_SECONDS while publishing is off.
PUBLISH_OFF_RECHECK = 5.0


class PoolTimeoutError(RedisConnectionError):
    """No connection came free within the pool's wait timeout (or a caller's deadline).

    A subclass of redis-py's ConnectionError, so django-redis handles it as it
    handles any connection failure (``DJANGO_REDIS_IGNORE_EXCEPTIONS`` included).
    """


_caller = threading.local()


@contextmanager
def wait_until(deadline: float) -> Iterator[None]:
    """Make this thread give up waiting for a free connection at ``deadline``.

    ``deadline`` is a ``time.monotonic()`` value. A health probe uses it so that
    a saturated pool makes it answer in time rather than after the pool's own
    wait timeout. It costs the hot path nothing: only a caller that has to wait
    reads it.
    """
    _caller.deadline = deadline
    try:
        yield
    finally:
        del _caller.deadline


class CountingQueue(LifoQueue[Any]):
    """The pool's queue of free slots, counting how callers fare.

    A slot is a connection or ``None`` (room to open one), so
    ``maxsize - len(queue)`` is the number of connections in use. ``get`` and
    ``put`` are written out rather than inherited: the pool only ever puts
    without blocking, so the fast paths need the lock but none of
    ``Condition``'s bookkeeping, and the counting costs a comparison.
    """

    def __init__(self, maxsize: int = 0) -> None:
        super().__init__(maxsize)
        self.created = 0
        self.peak_in_use = 0
        self.waits = 0
        self.wait_seconds = 0.0
        self.timeouts = 0
        #: callers blocked in get(); put() wakes one only when there are some
        self.waiting = 0
        #: set by the pool: named in errors, and told when figures are due
        self.alias = ""
        self.next_publish = 0.0
        self.publish_due: Callable[[], None] | None = None

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        with self.mutex:
            if 0 < self.maxsize <= len(self.queue):
                raise Full
            self.queue.append(item)
            self.unfinished_tasks += 1
            if self.waiting:
                self.not_empty.notify()
        # The hot path's whole share of publishing: one clock read per release.
        if time.monotonic() >= self.next_publish and self.publish_due is not None:
            self.publish_due()

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        with self.mutex:
            if self.queue:
                return self._take()
        if not block:
            raise Empty
        return self._wait(timeout)

    def _take(self) -> Any:
        """Pop a slot and note the peak; the caller holds ``self.mutex``."""
        item = self.queue.pop()
        in_use = self.maxsize - len(self.queue)
        if in_use > self.peak_in_use:
            self.peak_in_use = in_use
        return item

    def _wait(self, timeout: float | None) -> Any:
        started = time.monotonic()
        deadline: float | None = getattr(_caller, "deadline", None)
        limited = deadline is not None and (timeout is None or deadline - started < timeout)
        if limited:
            timeout = deadline - started  # type: ignore[operator]
            if timeout <= 0:  # a caller that would rather not wait at all
                raise PoolTimeoutError(self._timeout_message(timeout, limited))
        end = None if timeout is None else started + timeout
        with self.not_empty:
            self.waiting += 1
            try:
                while not self.queue:
                    remaining = None if end is None else end - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        if not limited:  # a caller giving up early is not the pool timing out
                            self.timeouts += 1
                        raise PoolTimeoutError(self._timeout_message(timeout, limited))
                    self.not_empty.wait(remaining)
                return self._take()
            finally:
                self.waiting -= 1
                self.waits += 1
                self.wait_seconds += time.monotonic() - started

    def _timeout_message(self, timeout: float | None, limited: bool) -> str:
        if limited:
            return f"No free Redis connection for cache {self.alias!r} by the caller's deadline."
        return (
            f"No free Redis connection for cache {self.alias!r} within {timeout} s: "
            f"all {self.maxsize} connections of this process's pool are in use. "
            f"Raise CONNHEALTH_POOL_HEADROOM or max_connections, or find what holds "
            f"connections with `manage.py connhealth`."
        )


@dataclass(frozen=True)
class PoolStats:
    """One reading of a pool's figures."""

    max_connections: int
    created: int
    in_use: int
    idle: int
    peak_in_use: int
    waits: int
    wait_seconds: float
    timeouts: int

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)  # dataclasses.asdict deep-copies: slow, and not needed


def build_retry(retries: int) -> Retry:
    """Retry commands whose connection broke, with jittered backoff; never timeouts."""
    backoff = EqualJitterBackoff(cap=defaults.RETRY_BACKOFF_CAP, base=defaults.RETRY_BACKOFF_BASE)
    return Retry(backoff, retries, supported_errors=(RedisConnectionError,))


class SizedConnectionPool(BlockingConnectionPool):
    """A ``redis.BlockingConnectionPool`` that counts its use and names its connections.

    Extra keyword arguments (all set by ``sized_caches``):

    ``connhealth_alias``
        the cache alias, the last part of each connection's server-side name.
    ``connhealth_host``
        the host part of that name (default: this machine's hostname).
    ``connhealth_retries``
        build a ``retry`` for connections unless one is given.
    """

    queue_class: type[CountingQueue]
    pool: CountingQueue

    def __init__(
        self,
        max_connections: int = 50,
        timeout: float | None = 20,
        *,
        connhealth_alias: str = "default",
        connhealth_host: str | None = None,
        connhealth_retries: int | None = None,
        **connection_kwargs: Any,
    ) -> None:
        queue_class = connection_kwargs.pop("queue_class", CountingQueue)
        if not (isinstance(queue_class, type) and issubclass(queue_class, CountingQueue)):
            raise ImproperlyConfigured(
                f"queue_class={queue_class!r} is not valid for {type(self).__name__}: "
                f"remove it from CONNECTION_POOL_KWARGS (the pool counts through its own queue)."
            )
        if connhealth_retries is not None and "retry" not in connection_kwargs:
            connection_kwargs["retry"] = build_retry(connhealth_retries)
            # redis-py 5.x retries a failed command only for errors listed in the
            # connection's retry_on_error (empty by default), whatever the Retry supports.
            connection_kwargs.setdefault("retry_on_error", [RedisConnectionError])
        self.alias = connhealth_alias
        self.host = connhealth_host or client_host({})
        self._name_connections = "client_name" not in connection_kwargs
        super().__init__(
            max_connections=max_connections,
            timeout=timeout,
            queue_class=queue_class,
            **connection_kwargs,
        )
        _register(self)

    def reset(self) -> None:
        super().reset()
        # reset() runs at creation and, in a forked child, on the pool's first
        # use there: a new queue, new counters, and the child publishes its own
        # figures on its own schedule.
        self.publishing = threading.Lock()
        self.pool.alias = self.alias
        self.pool.publish_due = self._publish_due

    def _publish_due(self) -> None:
        if not self.publishing.acquire(blocking=False):
            return  # another thread is publishing this pool right now
        if time.monotonic() < self.pool.next_publish:
            self.publishing.release()  # one that held the lock just now has published
            return
        from django_connhealth import publish

        interval = publish.interval_now()
        self.pool.next_publish = time.monotonic() + (interval or PUBLISH_OFF_RECHECK)
        if interval:
            publish.publish_in_background(self, interval)  # releases self.publishing
        else:
            self.publishing.release()

    def client_name(self) -> str:
        """The server-side name of a connection this process opens now."""
        return client_name(self.host, os.getpid(), self.alias)

    def make_connection(self) -> Any:
        connection = super().make_connection()
        with self.pool.mutex:
            self.pool.created += 1
        if self._name_connections:
            # Named here, not in connection_kwargs: a worker forked from a
            # --preload master must carry its own pid.
            target = getattr(connection, "_conn", connection)  # redis-py 8 cache proxy
            target.client_name = self.client_name()
        return connection

    def checkout(self, deadline: float) -> Any:
        """A free connection, not necessarily connected, waiting until ``deadline`` at most.

        The health probe's checkout (``deadline`` is a ``time.monotonic()``
        moment): ``get_connection`` without redis-py's per-call extras (a poll
        for unread data, metrics hooks). The probe tells a dead or dirty
        connection by its parser's buffer and by its reply, and replaces it.
        Give it back with :meth:`checkin`.
        """
        self._checkpid()
        with wait_until(deadline):
            slot = self.pool.get(block=True, timeout=self.timeout)
        if slot is not None:
            return slot
        try:
            return self.make_connection()
        except BaseException:
            self.pool.put(None)  # the room to open one stays free
            raise

    def checkin(self, connection: Any) -> None:
        """Give back a connection that :meth:`checkout` handed out."""
        self.pool.put(connection)

    def has_idle_connection(self) -> bool:
        """Whether an open connection is free right now (a hint: others may take it)."""
        return any(_connected(slot) for slot in list(self.pool.queue))

    def stats(self, *, reset_peak: bool = False) -> PoolStats:
        """A consistent reading of this pool's figures, in this process.

        With ``reset_peak`` the peak restarts from the current use, so the next
        reading gives the peak since this one.
        """
        self._checkpid()
        queue = self.pool
        with queue.mutex:
            in_use = queue.maxsize - len(queue.queue)
            stats = PoolStats(
                max_connections=queue.maxsize,
                created=queue.created,
                in_use=in_use,
                idle=sum(1 for slot in queue.queue if _connected(slot)),
                peak_in_use=queue.peak_in_use,
                waits=queue.waits,
                wait_seconds=queue.wait_seconds,
                timeouts=queue.timeouts,
            )
            if reset_peak:
                queue.peak_in_use = in_use
        return stats


def _connected(slot: Any) -> bool:
    """A free slot holding an open connection (not room for one, not a closed one)."""
    connection = getattr(slot, "_conn", slot)  # redis-py 8 cache proxy
    return getattr(connection, "_sock", None) is not None


# -- the registry of this process's pools ------------------------------------------

_live_pools: weakref.WeakSet[SizedConnectionPool] = weakref.WeakSet()
_live_pools_lock = threading.Lock()


def _register(pool: SizedConnectionPool) -> None:
    with _live_pools_lock:
        _live_pools.add(pool)


def live_pools() -> list[SizedConnectionPool]:
    """The sized pools alive in this process (held weakly: a dropped pool goes)."""
    with _live_pools_lock:
        return list(_live_pools)
