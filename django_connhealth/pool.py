"""The pool class ``sized_caches`` installs: a blocking pool that counts its use.

Counters live on the pool's queue of free slots and are updated under the
queue's own lock, so they cost the hot path one comparison; a forked child's
pool resets them with the queue (redis-py calls ``reset()`` in a child on
first use). Work that must happen now and then (publishing the figures) is a
hook the pool calls after a release when it is due: the pool knows when, not what.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import threading
import time
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ImproperlyConfigured
from redis.backoff import EqualJitterBackoff
from redis.connection import BlockingConnectionPool
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.retry import Retry

from django_connhealth import defaults
from django_connhealth.conf import client_host
from django_connhealth.connect import on_connect
from django_connhealth.errors import (
    PoolTimeoutError as PoolTimeoutError,  # re-exported: callers catch it from here
)
from django_connhealth.naming import client_name
from django_connhealth.redispy import (
    forget_connection,
    is_open,
    own_pool,
    real_connection,
    set_client_name,
)
from django_connhealth.slots import CountingQueue as CountingQueue  # re-exported

if TYPE_CHECKING:
    from collections.abc import Callable

    #: Called with a pool when it is due; returns the seconds until it is due again.
    DueHook = Callable[["SizedConnectionPool"], float]

logger = logging.getLogger("django_connhealth")


@dataclass(frozen=True)
class PoolFigures:
    """One reading of a pool's counters."""

    max_connections: int
    #: connects (a connection that reconnects counts again)
    created: int
    #: connects of a connection that had been connected before (churn)
    reconnects: int
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
    #: Whether a readiness ping may run in the probing request's own thread:
    #: its checkout does no I/O that the probe's deadline cannot bound.
    pings_inline = True

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
        #: whether this pool names its connections (not when the user gave a client_name)
        self.owns_names = "client_name" not in connection_kwargs
        self._name_connections = self.owns_names
        self.name_refused = False
        # The pool held weakly: the registry must see a dropped pool go.
        connection_kwargs["redis_connect_func"] = functools.partial(
            on_connect, weakref.ref(self), connection_kwargs.get("redis_connect_func")
        )
        super().__init__(
            max_connections=max_connections,
            timeout=timeout,
            queue_class=queue_class,
            **connection_kwargs,
        )
        registry.add(self)

    @property
    def slots(self) -> CountingQueue:
        """The queue of free slots (redis-py calls it ``pool``)."""
        return self.pool

    def reset(self) -> None:
        super().reset()
        # reset() runs at creation and, in a forked child, on the pool's first
        # use there: a new queue, new counters, and the hook is due at once.
        self._hook_lock = threading.Lock()
        self.slots.alias = self.alias
        self.slots.on_due = self.run_due_hook
        self.slots.due_at = 0.0 if _due_hook is not None else math.inf

    def run_due_hook(self) -> None:
        """Call the due hook if it is due, once for all the threads that found it due."""
        if not self._hook_lock.acquire(blocking=False):
            return  # another thread is calling it right now
        try:
            if time.monotonic() < self.slots.due_at:
                return  # one that held the lock just now has called it
            hook = _due_hook
            self.slots.due_at = math.inf if hook is None else time.monotonic() + hook(self)
        finally:
            self._hook_lock.release()

    @property
    def publishes(self) -> bool:
        """Whether this pool publishes its figures to its server (a replica refuses writes)."""
        return True

    @property
    def names_connections(self) -> bool:
        """Whether new connections are named (not once the server refused a name)."""
        return self._name_connections

    def names_refused(self, exc: ResponseError) -> None:
        """The server refused ``CLIENT SETNAME``: open every later connection unnamed."""
        self._name_connections = False
        self.name_refused = True
        if registry.first_refusal():
            logger.warning(
                "connhealth: the Redis server of cache %r refused CLIENT SETNAME (%s): its "
                "connections work unnamed, and `manage.py connhealth` cannot tell this "
                "process's connections from others'. Grant the ACL user +client|setname "
                "to have them named.",
                self.alias,
                str(exc).splitlines()[0][:200],
            )

    def connected(self, connection: Any) -> None:
        """Count a connect of ``connection``: every one, and those after its first."""
        real = real_connection(connection)
        with self.slots.mutex:
            self.slots.created += 1
            if getattr(real, "connhealth_connected", False):
                self.slots.reconnects += 1
        real.connhealth_connected = True

    def client_name(self) -> str:
        """The server-side name of a connection this process opens now."""
        return client_name(self.host, os.getpid(), self.alias)

    def make_connection(self) -> Any:
        connection = super().make_connection()
        connection.connhealth_held = (time.monotonic(), threading.get_ident())  # see slots.get
        if self._name_connections:
            # Named here, not in connection_kwargs: a worker forked from a
            # --preload master must carry its own pid.
            set_client_name(connection, self.client_name())
        return connection

    def checkout(self, deadline: float) -> Any:
        """A free connection, not necessarily connected, waiting until ``deadline`` at most.

        For callers that must answer in time (``deadline`` is a ``time.monotonic()``
        moment; "now" never waits): ``get_connection`` without redis-py's per-call
        extras (a poll for unread data, metrics hooks). The caller tells a dead or
        dirty connection by itself. Give it back with :meth:`checkin`.
        """
        own_pool(self)
        slot = self.slots.get_by(deadline, self.timeout)
        if slot is not None:
            slot.connhealth_held = None  # the app's own: no leak report
            return slot
        try:
            connection = self.make_connection()
            connection.connhealth_held = None
            return connection
        except BaseException:
            self.slots.put(None)  # the room to open one stays free
            raise

    def checkin(self, connection: Any) -> None:
        """Give back a connection that :meth:`checkout` handed out.

        One the pool no longer owns (a Sentinel pool's, to a server that is
        no longer the master) is closed, and its slot freed.
        """
        if self.owns_connection(connection):
            self.slots.put(connection)
            return
        connection.disconnect()
        forget_connection(self, connection)
        self.slots.put(None)

    def release(self, connection: Any) -> None:
        connection.connhealth_held = None  # free, whatever happens next
        owned = self.owns_connection(connection)
        super().release(connection)  # closes one it does not own, and frees its slot
        if not owned:  # redis-py's blocking pool would keep it listed for good
            forget_connection(self, connection)

    def disconnect(self, inuse_connections: bool = True) -> None:
        """Close every connection, or with ``inuse_connections=False`` only the free ones
        (redis-py 5's blocking pool takes no argument; its Sentinel pool passes it)."""
        if inuse_connections:
            super().disconnect()
            return
        own_pool(self)
        with self.slots.mutex:  # held: none of them can be handed out meanwhile
            for connection in self.slots.queue:
                if connection is not None:
                    connection.disconnect()

    def can_ping_inline(self) -> bool:
        """Whether a probe may ping in its own thread: no I/O but the PING's, on an idle
        connection (a hint: others may take it)."""
        return self.pings_inline and any(is_open(slot) for slot in list(self.slots.queue))

    def figures(self) -> PoolFigures:
        """A consistent reading of this pool's counters, in this process."""
        own_pool(self)
        queue = self.slots
        with queue.mutex:
            return PoolFigures(
                max_connections=queue.maxsize,
                created=queue.created,
                reconnects=queue.reconnects,
                in_use=queue.maxsize - len(queue.queue),
                idle=sum(1 for slot in queue.queue if is_open(slot)),
                peak_in_use=queue.peak_in_use,
                waits=queue.waits,
                wait_seconds=queue.wait_seconds,
                timeouts=queue.timeouts,
            )

    def restart_peak(self) -> None:
        """Start the peak afresh from the current use: the next reading gives the peak since."""
        queue = self.slots
        with queue.mutex:
            queue.peak_in_use = queue.maxsize - len(queue.queue)


# -- the hook and the registry of this process's pools -------------------------------

_due_hook: DueHook | None = None


def set_due_hook(hook: DueHook | None) -> None:
    """Have every sized pool call ``hook`` after a release once it is due.

    ``hook(pool)`` returns the seconds until it is due again; it runs in the
    releasing thread, so it must be quick and must not raise. The app installs
    its publisher here in ``AppConfig.ready()``.
    """
    global _due_hook
    _due_hook = hook
    for pool in registry.pools():
        pool.slots.due_at = 0.0 if hook is not None else math.inf


class Registry:
    """The sized pools alive in this process, held weakly: a dropped pool goes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pools: weakref.WeakSet[SizedConnectionPool] = weakref.WeakSet()
        self._refused = False

    def add(self, pool: SizedConnectionPool) -> None:
        with self._lock:
            self._pools.add(pool)

    def pools(self) -> list[SizedConnectionPool]:
        with self._lock:
            return list(self._pools)

    def clear(self) -> None:
        with self._lock:
            self._pools = weakref.WeakSet()
            self._refused = False

    def first_refusal(self) -> bool:
        """True the first time in this process a server refuses a connection's name."""
        with self._lock:
            first, self._refused = not self._refused, True
            return first

    def after_fork(self) -> None:
        """In a forked child: the pools stay, the lock a parent's thread held is made anew."""
        self._lock = threading.Lock()
        self._refused = False  # the child says it again, under its own pid


registry = Registry()

#: The sized pools alive in this process.
live_pools = registry.pools
